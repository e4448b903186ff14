import { ids } from '../lexicons.ts'

/** A pair's counts as getStats and listStats answer them. */
export type StatsView = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}

/** A row of stats_counter with its baseline (stats_baseline), as COUNTER_SELECT reads it. */
export type CounterRow = {
  did: string
  repository: string
  pull_count: number
  push_count: number
  last_pull: string | null
  last_push: string | null
  created_at: string
  updated_at: string
  version: number
  /** From stats_baseline (imported counts), null when the pair has none. */
  base_pull: number | null
  base_push: number | null
  base_last_pull: string | null
  base_last_push: string | null
}

/** Counts taken in memory and not yet in the table (times in ms, 0 for none). */
export type PendingCounts = {
  pulls: number
  pushes: number
  lastPull: number
  lastPush: number
}

const COUNTER_COLUMNS = `c.*, b.pull_count AS base_pull, b.push_count AS base_push,
  b.last_pull AS base_last_pull, b.last_push AS base_last_push`
const BASELINE_JOIN =
  'LEFT JOIN stats_baseline b ON b.did = c.did AND b.repository = c.repository'

// A counter with its baseline: the hold's own counts plus what was imported.
export const COUNTER_SELECT = `
  SELECT ${COUNTER_COLUMNS}
  FROM stats_counter c
  ${BASELINE_JOIN}`

/** What a view needs of a counter row: its counts and times, own and imported. */
export type ViewRow = Pick<
  CounterRow,
  | 'repository'
  | 'pull_count'
  | 'push_count'
  | 'last_pull'
  | 'last_push'
  | 'base_pull'
  | 'base_push'
  | 'base_last_pull'
  | 'base_last_push'
>

const VIEW_COLUMNS =
  'c.repository, c.pull_count, c.push_count, c.last_pull, c.last_push'

/**
 * A ViewRow from a row of VIEW_SELECT read as an array (db.ts, returnArrays: as row objects, a
 * listStats page of ten rows left ~1 KB a request to a mark-compact), in the columns' order;
 * the baseline's are absent from `VIEW_SELECT.own`.
 */
export const viewRowOf = (row: unknown[]): ViewRow => ({
  repository: row[0] as string,
  pull_count: row[1] as number,
  push_count: row[2] as number,
  last_pull: row[3] as string | null,
  last_push: row[4] as string | null,
  base_pull: (row[5] ?? null) as number | null,
  base_push: (row[6] ?? null) as number | null,
  base_last_pull: (row[7] ?? null) as string | null,
  base_last_push: (row[8] ?? null) as string | null,
})

/**
 * A counter as getStats and listStats read it (the columns of a view), with its baseline; and
 * the same without the join, for when no pair has a baseline.
 */
export const VIEW_SELECT = {
  withBaselines: `
  SELECT ${VIEW_COLUMNS}, b.pull_count AS base_pull, b.push_count AS base_push,
    b.last_pull AS base_last_pull, b.last_push AS base_last_push
  FROM stats_counter c
  ${BASELINE_JOIN}`,
  own: `SELECT ${VIEW_COLUMNS} FROM stats_counter c`,
}

// The counters whose records are behind (stats_dirty), the few pairs read first.
export const DIRTY_COUNTER_SELECT = `
  SELECT ${COUNTER_COLUMNS}
  FROM stats_dirty d
  CROSS JOIN stats_counter c ON c.did = d.did AND c.repository = d.repository
  ${BASELINE_JOIN}`

/** The key of a pair in memory. */
export const keyOf = (did: string, repository: string) => `${did} ${repository}`

/** The last second formatted, and its start: counts taken in one second share the prefix. */
let isoSecond = NaN
let isoPrefix = ''
/** Years 0 to 9999, which toISOString writes with four digits. */
const MAX_ISO_MS = 253402300800000

/** The ISO 8601 form of a time in ms, as Date.toISOString writes it (a persist writes many). */
export const iso = (ms: number): string => {
  if (!Number.isInteger(ms) || ms < 0 || ms >= MAX_ISO_MS) {
    return new Date(ms).toISOString()
  }
  const second = Math.floor(ms / 1000)
  if (second !== isoSecond) {
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20)
    isoSecond = second
  }
  const frac = ms - second * 1000
  return `${isoPrefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`
}

/** The later of ISO timestamps (all written with ms and Z, so they compare as strings). */
export const latest = (...values: (string | null | undefined)[]) =>
  values.reduce<string | undefined>(
    (a, b) => (b && (!a || b > a) ? b : a),
    undefined,
  )

/** A pair's counts: its row (own and imported counts added) and what is still pending. */
export const toView = (
  row: ViewRow | null,
  pending: PendingCounts | undefined,
  did: string,
  repository: string,
): StatsView => {
  const view: StatsView = {
    did,
    repository,
    pullCount:
      (row?.pull_count ?? 0) + (row?.base_pull ?? 0) + (pending?.pulls ?? 0),
    pushCount:
      (row?.push_count ?? 0) + (row?.base_push ?? 0) + (pending?.pushes ?? 0),
  }
  const lastPull = latest(
    pending?.lastPull ? iso(pending.lastPull) : undefined,
    row?.last_pull,
    row?.base_last_pull,
  )
  const lastPush = latest(
    pending?.lastPush ? iso(pending.lastPush) : undefined,
    row?.last_push,
    row?.base_last_push,
  )
  if (lastPull) view.lastPull = lastPull
  if (lastPush) view.lastPush = lastPush
  return view
}

/** The io.atcr.hold.stats record of a counter row. */
export const toRecord = (row: CounterRow) => {
  const record: Record<string, string | number> = {
    $type: ids.HoldStats,
    did: row.did,
    ownerDid: row.did,
    repository: row.repository,
    pullCount: row.pull_count + (row.base_pull ?? 0),
    pushCount: row.push_count + (row.base_push ?? 0),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
  const lastPull = latest(row.last_pull, row.base_last_pull)
  const lastPush = latest(row.last_push, row.base_last_push)
  if (lastPull) record.lastPull = lastPull
  if (lastPush) record.lastPush = lastPush
  return record
}
