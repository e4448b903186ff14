import type { Command } from '../command.ts'
import { json } from '../format.ts'

export type StatusView = {
  did: string
  handle: string
  publicUrl: string
  version: string
  owner: string | null
  public: boolean | null
  allowAllCrew: boolean | null
  head: { rev: string; cid: string }
  records: Record<string, number>
  stats: {
    counters: number
    baselines: number
    pendingPairs: number
    dirtyCounters: number
  }
}

const yesNo = (v: boolean | null) => (v === null ? 'unknown' : v ? 'yes' : 'no')

export const status: Command = {
  name: 'status',
  args: '',
  summary:
    'the hold: DID, owner, public, head commit, record and pending counts',
  json: true,
  run: async ({ io, opts, client }) => {
    const s = await client().adminGet<StatusView>('status')
    if (opts.json) return io.out(json(s))
    const records = Object.entries(s.records)
    io.out(`hold            ${s.did}`)
    io.out(`url             ${s.publicUrl} (version ${s.version})`)
    io.out(`owner           ${s.owner ?? 'none'}`)
    io.out(`public          ${yesNo(s.public)}`)
    io.out(`allow all crew  ${yesNo(s.allowAllCrew)}`)
    io.out(`head            rev ${s.head.rev}, cid ${s.head.cid}`)
    io.out(
      `records         ${records.length ? records.map(([c, n]) => `${c} ${n}`).join(', ') : 'none'}`,
    )
    io.out(
      `stats           ${s.stats.counters} counters, ${s.stats.baselines} with imported baselines`,
    )
    io.out(
      `pending         ${s.stats.pendingPairs} pairs counted in memory, ${s.stats.dirtyCounters} counters not yet in the repo`,
    )
  },
}
