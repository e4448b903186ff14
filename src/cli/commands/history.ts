import { ids } from '../../ids.ts'
import type { Command, Io } from '../command.ts'
import { UsageError } from '../errors.ts'
import { json, table } from '../format.ts'

type Day = {
  day: string
  pulls: number
  pushes: number
  uniqueClients?: number
}
type Trending = {
  did: string
  repository: string
  pulls: number
  pullCount: number
  pushCount: number
}
type ExportRow = Day & { did: string; repository: string }

const DATE = /^\d{4}-\d{2}-\d{2}$/

const dateOpt = (name: string, raw: unknown): string | undefined => {
  if (raw === undefined) return undefined
  if (typeof raw !== 'string' || !DATE.test(raw)) {
    throw new UsageError(
      `--${name} must be a UTC date as YYYY-MM-DD, got "${String(raw)}"`,
    )
  }
  return raw
}

const wholeOpt = (
  name: string,
  raw: unknown,
  def: number,
  max: number,
): number => {
  const text = (raw as string | undefined) ?? String(def)
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < 1 || n > max) {
    throw new UsageError(
      `--${name} must be a whole number from 1 to ${max}, got "${text}"`,
    )
  }
  return n
}

const daysAgo = (n: number) =>
  new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10)

export const statsHistory: Command = {
  name: 'stats history',
  args: '<did> <repo>',
  summary: 'pulls, pushes and unique clients of one repository per UTC day',
  options: {
    since: {
      type: 'string',
      value: 'YYYY-MM-DD',
      description: 'first day (default 29 days before today)',
    },
    until: {
      type: 'string',
      value: 'YYYY-MM-DD',
      description: 'last day (default today)',
    },
  },
  json: true,
  run: async ({ io, args: [did, repo], opts, client }) => {
    const since = dateOpt('since', opts.since) ?? daysAgo(29)
    const until = dateOpt('until', opts.until)
    const answer = await client().xrpc<{ days: Day[] }>(
      ids.HoldGetStatsHistory,
      {
        did,
        repo,
        since,
        until,
      },
    )
    if (opts.json) return io.out(json(answer))
    for (const line of table(
      ['day', 'pulls', 'pushes', 'unique clients'],
      answer.days.map((d) => [d.day, d.pulls, d.pushes, d.uniqueClients ?? 0]),
    )) {
      io.out(line)
    }
    const pulls = answer.days.reduce((n, d) => n + d.pulls, 0)
    const pushes = answer.days.reduce((n, d) => n + d.pushes, 0)
    io.out(`${answer.days.length} days, ${pulls} pulls, ${pushes} pushes`)
  },
}

export const statsTrending: Command = {
  name: 'stats trending',
  args: '',
  summary:
    'the repositories with the most pulls in the last days (io.atcr.hold.listTrending)',
  options: {
    days: {
      type: 'string',
      value: 'N',
      description: 'the window, 1-30 days including today (default 7)',
    },
    limit: {
      type: 'string',
      value: 'N',
      description: 'how many, 1-1000 (default 20)',
    },
  },
  json: true,
  run: async ({ io, opts, client }) => {
    const days = wholeOpt('days', opts.days, 7, 30)
    const limit = wholeOpt('limit', opts.limit, 20, 1000)
    const all: Trending[] = []
    let cursor: string | undefined
    do {
      const page = await client().xrpc<{
        repositories: Trending[]
        cursor?: string
      }>(ids.HoldListTrending, {
        days,
        limit: Math.min(100, limit - all.length),
        cursor,
      })
      all.push(...page.repositories)
      cursor = page.cursor
    } while (cursor && all.length < limit)
    if (opts.json) return io.out(json({ days, repositories: all }))
    if (all.length === 0) return io.out(`no pulls in the last ${days} days`)
    for (const line of table(
      ['did', 'repository', `pulls (${days}d)`, 'pulls', 'pushes'],
      all.map((r) => [r.did, r.repository, r.pulls, r.pullCount, r.pushCount]),
    )) {
      io.out(line)
    }
  },
}

const CSV_HEADER = 'did,repository,day,pulls,pushes,unique_clients'

const csvField = (v: string | number): string => {
  const s = String(v)
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

const writeRows = (io: Io, rows: ExportRow[], format: 'csv' | 'ndjson') => {
  for (const r of rows) {
    io.out(
      format === 'csv'
        ? [r.did, r.repository, r.day, r.pulls, r.pushes, r.uniqueClients ?? '']
            .map(csvField)
            .join(',')
        : JSON.stringify(r),
    )
  }
}

export const statsExport: Command = {
  name: 'stats export',
  args: '',
  summary: "every repository's days from a date on, as CSV or NDJSON (admin)",
  help:
    'Writes one line per (DID, repository, UTC day) with counts, ordered by DID, repository and ' +
    'day, to stdout: per-day history is served by queries and exported here, never written as ' +
    'records. unique_clients is a per-day estimate (empty when none was counted).',
  options: {
    since: {
      type: 'string',
      value: 'YYYY-MM-DD',
      description: 'first day (required)',
    },
    format: {
      type: 'string',
      value: 'csv|ndjson',
      description: 'output format (default csv)',
    },
  },
  run: async ({ io, opts, client }) => {
    const since = dateOpt('since', opts.since)
    if (!since) throw new UsageError('stats export needs --since YYYY-MM-DD')
    const format = (opts.format as string | undefined) ?? 'csv'
    if (format !== 'csv' && format !== 'ndjson') {
      throw new UsageError(`--format must be csv or ndjson, got "${format}"`)
    }
    if (format === 'csv') io.out(CSV_HEADER)
    let cursor: string | undefined
    do {
      const page = await client().adminGet<{
        rows: ExportRow[]
        cursor?: string
      }>('stats/history', { since, limit: 1000, cursor })
      writeRows(io, page.rows, format)
      cursor = page.cursor
    } while (cursor)
  },
}
