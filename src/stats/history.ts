import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import { Sketch } from './hll.ts'
import { TrendingWindows } from './trending.ts'

export const DAY_MS = 86_400_000
/** listTrending's longest window, in days: the trending table keeps one row per window. */
export const TRENDING_MAX_DAYS = 30
/** getStatsHistory's longest range, in days. */
export const HISTORY_MAX_DAYS = 366
/** Day rows folded into stats_day_pruned per transaction, so pruning never holds the writer long. */
const PRUNE_BATCH = 2000
const MAINTAIN_MS = 60_000
/** Day sketches kept between persists (emptied when full; the table has them all). */
const SKETCHES_KEPT = 20_000

/** The UTC day of a time in ms: days since 1970-01-01. */
export const dayOf = (ms: number): number => Math.floor(ms / DAY_MS)

/** A UTC day as YYYY-MM-DD (Hinnant's civil_from_days: no Date per day of a long range). */
export const dayString = (day: number): string => {
  const z = day + 719468
  const era = Math.floor(z / 146097)
  const doe = z - era * 146097
  const yoe = Math.floor(
    (doe -
      Math.floor(doe / 1460) +
      Math.floor(doe / 36524) -
      Math.floor(doe / 146096)) /
      365,
  )
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0)
  return `${y}-${m < 10 ? '0' : ''}${m}-${d < 10 ? '0' : ''}${d}`
}

/** The UTC day of a YYYY-MM-DD date; undefined when it is not one (2026-02-30 is not). */
export const parseDay = (value: string): number | undefined => {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return undefined
  const ms = Date.parse(`${value}T00:00:00.000Z`)
  if (Number.isNaN(ms)) return undefined
  const day = dayOf(ms)
  return dayString(day) === value ? day : undefined
}

/** A pair's counts of one UTC day, with its unique-client sketch when clients are counted. */
export type DayCounts = {
  day: number
  pulls: number
  pushes: number
  clients?: Sketch
}

/**
 * What a pending delta carries for the day rows: the day its latest counts belong to, and the
 * counts of earlier days when the delta spans a midnight (rare, so usually absent). The counts
 * of `day` are the delta's totals less those of `earlier`.
 */
export type DayCarrier = {
  pulls: number
  pushes: number
  day: number
  earlier?: DayCounts[]
  clients?: Sketch
}

const addTo = (list: DayCounts[], e: DayCounts): void => {
  if (e.pulls === 0 && e.pushes === 0 && !e.clients) return
  const cur = list.find((x) => x.day === e.day)
  if (!cur) {
    list.push({ ...e })
    return
  }
  cur.pulls += e.pulls
  cur.pushes += e.pushes
  if (e.clients) {
    if (cur.clients) cur.clients.merge(e.clients)
    else cur.clients = e.clients
  }
}

/** Every day of a delta with its counts. */
export const daysOf = (d: DayCarrier): DayCounts[] => {
  let pulls = d.pulls
  let pushes = d.pushes
  const out: DayCounts[] = []
  for (const e of d.earlier ?? []) {
    pulls -= e.pulls
    pushes -= e.pushes
    out.push(e)
  }
  out.push({ day: d.day, pulls, pushes, clients: d.clients })
  return out
}

/**
 * Moves a delta to `day`: the counts so far stay with the day they were taken on. Called by a
 * count whose day is not the delta's (a midnight passed, or the clock went back).
 */
export const rollDay = (d: DayCarrier, day: number): void => {
  const list = daysOf(d).filter((e) => e.day !== day)
  const same = d.earlier?.find((e) => e.day === day)
  d.earlier = []
  for (const e of list) addTo(d.earlier, e)
  if (d.earlier.length === 0) d.earlier = undefined
  d.day = day
  d.clients = same?.clients
}

/**
 * Adds the day counts of `from` into `into` (a failed persist's delta put back in front of one
 * counted since). The totals are added by the caller, before this.
 */
export const mergeDays = (into: DayCarrier, from: DayCarrier): void => {
  const list = into.earlier ?? []
  for (const e of daysOf(from)) {
    if (e.day === into.day) {
      if (e.clients) {
        if (into.clients) into.clients.merge(e.clients)
        else into.clients = e.clients
      }
    } else addTo(list, e)
  }
  into.earlier = list.length > 0 ? list : undefined
}

/** A pair the history is written for: a delta of the counter store. */
export type HistoryDelta = DayCarrier & { did: string; repository: string }

export type HistoryDay = {
  day: string
  pulls: number
  pushes: number
  uniqueClients?: number
}

export type TrendingRow = {
  did: string
  repository: string
  /** Pulls in the window. */
  pulls: number
  pullCount: number
  pushCount: number
}

/** A day row of the export: the pair, the day, its counts. */
export type ExportRow = HistoryDay & { did: string; repository: string }
/** Where an export page ends. */
export type ExportPosition = { did: string; repository: string; day: number }

/** Where a trending page ends: the last row's window pulls, DID and repository. */
export type TrendingCursor = { pulls: number; did: string; repository: string }

const SQL = {
  upsertDay: `
    INSERT INTO stats_day (did, repository, day, pulls, pushes, clients)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (did, repository, day) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes,
      clients = coalesce(excluded.clients, clients)`,
  clientsOf:
    'SELECT clients FROM stats_day WHERE did = ? AND repository = ? AND day = ?',
  upsertTotal: `
    INSERT INTO stats_day_total (day, pulls, pushes) VALUES (?, ?, ?)
    ON CONFLICT (day) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  totals: `
    SELECT day, pulls, pushes FROM stats_day_total WHERE day >= ? AND day <= ? ORDER BY day`,
  forgetTotals: `
    UPDATE stats_day_total SET pulls = stats_day_total.pulls - d.pulls,
      pushes = stats_day_total.pushes - d.pushes
    FROM (SELECT day, sum(pulls) AS pulls, sum(pushes) AS pushes FROM stats_day
          WHERE did = ?1 AND (?2 IS NULL OR repository = ?2) GROUP BY day) AS d
    WHERE stats_day_total.day = d.day`,
  pruneTotals: 'DELETE FROM stats_day_total WHERE day < ?',
  range: `
    SELECT day, pulls, pushes, clients FROM stats_day
    WHERE did = ? AND repository = ? AND day >= ? AND day <= ? ORDER BY day`,
  totalsOf: `
    SELECT pull_count + baseline_pull AS pullCount, push_count + baseline_push AS pushCount
    FROM stats_counter WHERE did = ? AND repository = ?`,
  recentPulls: `
    SELECT did, repository, day, pulls FROM stats_day WHERE day > ? AND pulls > 0`,
  pruneFold: `
    INSERT INTO stats_day_pruned (did, repository, pulls, pushes)
    SELECT did, repository, sum(pulls), sum(pushes) FROM (
      SELECT did, repository, pulls, pushes FROM stats_day
      WHERE day < ?1 ORDER BY day, did, repository LIMIT ${PRUNE_BATCH})
    WHERE true GROUP BY did, repository
    ON CONFLICT (did, repository) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  pruneDelete: `
    DELETE FROM stats_day WHERE (did, repository, day) IN (
      SELECT did, repository, day FROM stats_day
      WHERE day < ?1 ORDER BY day, did, repository LIMIT ${PRUNE_BATCH})`,
  forgetDays:
    'DELETE FROM stats_day WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
  forgetPruned:
    'DELETE FROM stats_day_pruned WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
  export: `
    SELECT did, repository, day, pulls, pushes, clients FROM stats_day
    WHERE day >= ?1 AND (did, repository, day) > (?2, ?3, ?4)
    ORDER BY did, repository, day LIMIT ?5`,
}

/**
 * Per-day counts of each (DID, repository): `stats_day`, written in the counter store's persist
 * transaction from the day counts its deltas carry, so the days of a pair always add up to its
 * own counts (less those of days pruned past HOLD_STATS_HISTORY_DAYS, kept summed in
 * `stats_day_pruned`), and the hold's own per day (`stats_day_total`). Each pair's pulls of its
 * last 30 days are also kept in memory (TrendingWindows), added to when a persist commits, for
 * listTrending.
 */
export class History {
  readonly keepDays: number
  private readonly database: Database
  private readonly sql: Statements<keyof typeof SQL>
  private readonly log: Logger
  private readonly trend = new TrendingWindows()
  /**
   * The day sketches of pairs counted lately, as the table has them: a persist merges a delta's
   * sketch into its day's here and writes the bytes only when a register changed.
   */
  private sketches = new Map<string, { day: number; sketch: Sketch }>()
  private timer: NodeJS.Timeout | undefined

  constructor(database: Database, keepDays: number, log: Logger) {
    this.database = database
    this.keepDays = keepDays
    this.log = log
    this.sql = prepareAll(database.db, SQL)
    const recent = this.sql.recentPulls.iterate(
      dayOf(Date.now()) - TRENDING_MAX_DAYS - 1,
    ) as Iterable<{
      did: string
      repository: string
      day: number
      pulls: number
    }>
    for (const r of recent) this.trend.add(r.did, r.repository, r.day, r.pulls)
  }

  /** Writes the day counts of a persist's deltas: called inside its transaction. */
  write(deltas: Iterable<HistoryDelta>): void {
    const totals = new Map<number, { pulls: number; pushes: number }>()
    const pulled: HistoryDelta[] = []
    for (const d of deltas) {
      for (const e of daysOf(d)) {
        if (e.pulls === 0 && e.pushes === 0 && !e.clients) continue
        this.sql.upsertDay.run(
          d.did,
          d.repository,
          e.day,
          e.pulls,
          e.pushes,
          e.clients ? this.mergedClients(d, e.day, e.clients) : null,
        )
        const t = totals.get(e.day)
        if (t) {
          t.pulls += e.pulls
          t.pushes += e.pushes
        } else totals.set(e.day, { pulls: e.pulls, pushes: e.pushes })
      }
      if (d.pulls > 0) pulled.push(d)
    }
    for (const [day, t] of totals) {
      this.sql.upsertTotal.run(day, t.pulls, t.pushes)
    }
    // The windows in memory follow the table: only what committed is added.
    this.database.afterCommit(() => {
      for (const d of pulled) {
        for (const e of daysOf(d)) {
          if (e.pulls > 0) this.trend.add(d.did, d.repository, e.day, e.pulls)
        }
      }
    })
  }

  /** The day's sketch with `clients` taken in, as bytes to write; null when nothing changed. */
  private mergedClients(
    d: HistoryDelta,
    day: number,
    clients: Sketch,
  ): Uint8Array | null {
    const key = `${d.did} ${d.repository}`
    let kept = this.sketches.get(key)
    if (!kept || kept.day !== day) {
      const row = this.sql.clientsOf.get(d.did, d.repository, day) as
        { clients: Uint8Array | null } | undefined
      const stored = row?.clients ? Sketch.from(row.clients) : undefined
      kept = { day, sketch: stored ?? new Sketch() }
      if (this.sketches.size >= SKETCHES_KEPT) this.sketches.clear()
      this.sketches.set(key, kept)
      kept.sketch.merge(clients)
      return kept.sketch.toBytes()
    }
    return kept.sketch.merge(clients) ? kept.sketch.toBytes() : null
  }

  /** A persist rolled back: the kept sketches may hold registers the table does not. */
  rolledBack(): void {
    this.sketches = new Map()
  }

  /** Deletes a DID's day rows (all its repositories, or one): in the reset's transaction. */
  forget(did: string, repository: string | null): void {
    this.sql.forgetTotals.run(did, repository)
    this.sql.forgetDays.run(did, repository)
    this.sql.forgetPruned.run(did, repository)
    this.sketches = new Map()
    this.database.afterCommit(() => this.trend.forget(did, repository))
  }

  /** A pair's days from `since` to `until` (UTC day numbers), days without counts as zeros. */
  range(
    did: string,
    repository: string,
    since: number,
    until: number,
  ): HistoryDay[] {
    const rows = this.sql.range.all(did, repository, since, until) as {
      day: number
      pulls: number
      pushes: number
      clients: Uint8Array | null
    }[]
    const out: HistoryDay[] = []
    let i = 0
    for (let day = since; day <= until; day++) {
      const row = rows[i]?.day === day ? rows[i++] : undefined
      const view: HistoryDay = {
        day: dayString(day),
        pulls: row?.pulls ?? 0,
        pushes: row?.pushes ?? 0,
      }
      if (row?.clients) {
        const estimate = Sketch.estimateOf(row.clients)
        if (estimate !== undefined) view.uniqueClients = estimate
      }
      out.push(view)
    }
    return out
  }

  /** The hold's pulls and pushes per day, `since` to `until`, days without counts as zeros. */
  dailyTotals(since: number, until: number): HistoryDay[] {
    const rows = this.sql.totals.all(since, until) as {
      day: number
      pulls: number
      pushes: number
    }[]
    const out: HistoryDay[] = []
    let i = 0
    for (let day = since; day <= until; day++) {
      const row = rows[i]?.day === day ? rows[i++] : undefined
      out.push({
        day: dayString(day),
        pulls: row?.pulls ?? 0,
        pushes: row?.pushes ?? 0,
      })
    }
    return out
  }

  /** The pairs with the most pulls in the last `days` days (today included), after `after`. */
  trending(
    days: number,
    limit: number,
    after: TrendingCursor | undefined,
    now = Date.now(),
  ): TrendingRow[] {
    return this.trend.page(days, now, limit, after).map((r) => {
      const totals = this.sql.totalsOf.get(r.did, r.repository) as
        { pullCount: number; pushCount: number } | undefined
      return {
        ...r,
        pullCount: totals?.pullCount ?? 0,
        pushCount: totals?.pushCount ?? 0,
      }
    })
  }

  /** Day rows from `since` on, by pair and day, after the position `after` (the CLI's export). */
  exportRows(
    since: number,
    limit: number,
    after: ExportPosition | undefined,
  ): ExportRow[] {
    const rows = this.sql.export.all(
      since,
      after?.did ?? '',
      after?.repository ?? '',
      after?.day ?? -1,
      limit,
    ) as {
      did: string
      repository: string
      day: number
      pulls: number
      pushes: number
      clients: Uint8Array | null
    }[]
    return rows.map((r) => {
      const view: ExportRow = {
        did: r.did,
        repository: r.repository,
        day: dayString(r.day),
        pulls: r.pulls,
        pushes: r.pushes,
      }
      const estimate = r.clients ? Sketch.estimateOf(r.clients) : undefined
      if (estimate !== undefined) view.uniqueClients = estimate
      return view
    })
  }

  /**
   * Folds the day rows older than HOLD_STATS_HISTORY_DAYS into stats_day_pruned, a batch per
   * transaction; returns how many rows went.
   */
  prune(now = Date.now()): number {
    const before = dayOf(now) - this.keepDays + 1
    let pruned = 0
    for (;;) {
      const n = this.database.transaction(() => {
        this.sql.pruneFold.run(before)
        return Number(this.sql.pruneDelete.run(before).changes)
      })
      pruned += n
      if (n < PRUNE_BATCH) {
        this.sql.pruneTotals.run(before)
        return pruned
      }
    }
  }

  /** Every minute: old days pruned. */
  start(): void {
    this.timer = setInterval(() => {
      try {
        const pruned = this.prune()
        if (pruned > 0) this.log.info({ pruned }, 'pruned stats history days')
      } catch (err) {
        if (!this.database.writeFailure) {
          this.log.error(
            { err },
            'stats history maintenance failed; will retry',
          )
        }
      }
    }, MAINTAIN_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }
}
