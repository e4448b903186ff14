import { prepareAll, type Database, type Statements } from '../db.ts'
import { dayString, type HistoryDay } from './days.ts'

/** A day row of the export: the pair, the day, its counts. */
export type ExportRow = HistoryDay & { did: string; repository: string }
/** Where an export page ends. */
export type ExportPosition = { did: string; repository: string; day: number }

type PairDay = ExportPosition & { pulls: number; pushes: number }

const compare = (a: ExportPosition, b: ExportPosition): number =>
  a.did < b.did
    ? -1
    : a.did > b.did
      ? 1
      : a.repository < b.repository
        ? -1
        : a.repository > b.repository
          ? 1
          : a.day - b.day

const SQL = {
  closed: `
    SELECT did, repository, day, pulls, pushes FROM stats_day
    WHERE day >= ?1 AND (did, repository, day) > (?2, ?3, ?4)
    ORDER BY did, repository, day LIMIT ?5`,
  /** The open days of the pairs in an export page's key range (`?5`/`?6`: its last pair). */
  open: `
    SELECT did, repository, open_day AS day, open_pulls AS pulls, open_pushes AS pushes
    FROM stats_counter
    WHERE (did, repository) >= (?2, ?3) AND (?5 IS NULL OR (did, repository) <= (?5, ?6))
      AND open_day >= ?1 AND (did, repository, open_day) > (?2, ?3, ?4)
      AND (open_pulls <> 0 OR open_pushes <> 0)
    ORDER BY did, repository LIMIT ?7`,
  dayClients: `
    SELECT estimate FROM stats_day_clients WHERE did = ? AND repository = ? AND day = ?`,
}

/**
 * The CLI's export of the day rows: pages of stats_day merged with the counter rows' open
 * days (see History), by pair and day.
 */
export class DayExport {
  private readonly sql: Statements<keyof typeof SQL>

  constructor(database: Database) {
    this.sql = prepareAll(database.db, SQL)
  }

  /**
   * Day rows from `since` on, by pair and day, after the position `after`: a page of stats_day
   * merged with the counter rows' open days (at most `limit` of each).
   */
  page(
    since: number,
    limit: number,
    after: ExportPosition | undefined,
  ): { rows: ExportRow[]; more: boolean } {
    const from = [after?.did ?? '', after?.repository ?? '', after?.day ?? -1]
    const closed = this.sql.closed.all(since, ...from, limit) as PairDay[]
    const closedEnd =
      closed.length === limit ? closed[closed.length - 1] : undefined
    const open = this.sql.open.all(
      since,
      ...from,
      closedEnd?.did ?? null,
      closedEnd?.repository ?? null,
      limit,
    ) as PairDay[]
    // Both lists are complete up to their last row when full: the page ends at the earlier.
    const openEnd = open.length === limit ? open[open.length - 1] : undefined
    const end =
      closedEnd && openEnd
        ? compare(closedEnd, openEnd) < 0
          ? closedEnd
          : openEnd
        : (closedEnd ?? openEnd)
    const byKey = new Map<string, ExportRow & { n: number }>()
    for (const r of [...closed, ...open]) {
      // Past the page's end, a row belongs to the next page.
      if (end && compare(r, end) > 0) continue
      const key = `${r.did} ${r.repository} ${r.day}`
      const cur = byKey.get(key)
      if (cur) {
        cur.pulls += r.pulls
        cur.pushes += r.pushes
        continue
      }
      byKey.set(key, {
        did: r.did,
        repository: r.repository,
        day: dayString(r.day),
        n: r.day,
        pulls: r.pulls,
        pushes: r.pushes,
      })
    }
    const sorted = [...byKey.values()].sort((a, b) =>
      compare(
        { did: a.did, repository: a.repository, day: a.n },
        { did: b.did, repository: b.repository, day: b.n },
      ),
    )
    // Complete up to `end`, so a page cut at `limit` goes on from its last row.
    const rows = sorted.slice(0, limit).map(({ n, ...row }) => {
      const c = this.sql.dayClients.get(row.did, row.repository, n) as
        { estimate: number | null } | undefined
      return c?.estimate == null ? row : { ...row, uniqueClients: c.estimate }
    })
    return { rows, more: end !== undefined || sorted.length > limit }
  }
}
