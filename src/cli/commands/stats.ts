import { ids } from '../../ids.ts'
import type { Command, Io } from '../command.ts'
import { UsageError } from '../errors.ts'
import { json, table } from '../format.ts'
import { confirm } from '../prompt.ts'

import type { StatsView } from '../../stats/service.ts'

const printStats = (io: Io, rows: StatsView[], withDid: boolean) => {
  const header = [
    ...(withDid ? ['did'] : []),
    'repository',
    'pulls',
    'pushes',
    'last pull',
    'last push',
  ]
  for (const line of table(
    header,
    rows.map((s) => [
      ...(withDid ? [s.did] : []),
      s.repository,
      s.pullCount,
      s.pushCount,
      s.lastPull ?? '-',
      s.lastPush ?? '-',
    ]),
  )) {
    io.out(line)
  }
}

export const statsGet: Command = {
  name: 'stats get',
  args: '<did> <repo>',
  summary: 'pull and push counts of one repository (io.atcr.hold.getStats)',
  json: true,
  run: async ({ io, args: [did, repo], opts, client }) => {
    const s = await client().xrpc<StatsView>(ids.HoldGetStats, {
      did,
      repo,
    })
    if (opts.json) return io.out(json(s))
    printStats(io, [s], true)
  },
}

export const statsList: Command = {
  name: 'stats list',
  args: '<did>',
  summary:
    'counts of every repository of a DID on this hold (io.atcr.hold.listStats)',
  json: true,
  run: async ({ io, args: [did], opts, client }) => {
    const all: StatsView[] = []
    let cursor: string | undefined
    do {
      const page = await client().xrpc<{ stats: StatsView[]; cursor?: string }>(
        ids.HoldListStats,
        { did, limit: 100, cursor },
      )
      all.push(...page.stats)
      cursor = page.cursor
    } while (cursor)
    if (opts.json) return io.out(json({ did, stats: all }))
    if (all.length === 0) return io.out(`no stats for ${did}`)
    printStats(io, all, false)
    const pulls = all.reduce((n, s) => n + s.pullCount, 0)
    const pushes = all.reduce((n, s) => n + s.pushCount, 0)
    io.out(`${all.length} repositories, ${pulls} pulls, ${pushes} pushes`)
  },
}

export const statsTop: Command = {
  name: 'stats top',
  args: '',
  summary: 'the repositories with the most pulls on this hold (admin)',
  options: {
    limit: {
      type: 'string',
      value: 'N',
      description: 'how many, 1-1000 (default 20)',
    },
  },
  json: true,
  run: async ({ io, opts, client }) => {
    const raw = (opts.limit as string | undefined) ?? '20'
    const limit = Number(raw)
    if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) {
      throw new UsageError(
        `--limit must be a whole number from 1 to 1000, got "${raw}"`,
      )
    }
    const { stats } = await client().adminGet<{ stats: StatsView[] }>(
      'stats/top',
      { limit },
    )
    if (opts.json) return io.out(json({ stats }))
    if (stats.length === 0) return io.out('no stats on this hold yet')
    printStats(io, stats, true)
  },
}

export const statsReset: Command = {
  name: 'stats reset',
  args: '<did> [<repo>]',
  summary:
    "zero a DID's counts (all its repositories, or one) and delete their records (admin)",
  help:
    'For spam clean-up and account deletion: the counters, any imported baselines and the ' +
    'io.atcr.hold.stats records of the DID (or of the one pair) are removed. Counts arriving ' +
    'later start from zero. Asks for confirmation unless --yes is given.',
  options: {
    yes: {
      type: 'boolean',
      short: 'y',
      description: 'do not ask for confirmation',
    },
  },
  json: true,
  run: async ({ io, args: [did, repository], opts, client }) => {
    const what = repository
      ? `${did} ${repository}`
      : `every repository of ${did}`
    if (!opts.yes) {
      await confirm(io, `Reset the stats of ${what} and delete their records?`)
    }
    const r = await client().adminPost<{
      pairs: number
      records: number
      commits: number
    }>('stats/reset', { did, repository })
    if (opts.json) return io.out(json({ did, repository, ...r }))
    io.out(
      `reset ${what}: ${r.pairs} counters removed, ${r.records} records deleted in ${r.commits} commits`,
    )
  },
}
