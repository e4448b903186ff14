import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import { DayExport, type ExportPosition, type ExportRow } from './day-export.ts'
import { Sketch } from './hll.ts'
import { TrendingLoad } from './trending-load.ts'
import { TrendingWindows } from './trending.ts'
import {
  dayOf,
  dayString,
  type DayCounts,
  type DayCarrier,
  daysOf,
  type HistoryDay,
} from './days.ts'

/** listTrending's longest window, in days: the trending table keeps one row per window. */
export const TRENDING_MAX_DAYS = 30
/** getStatsHistory's longest range, in days. */
export const HISTORY_MAX_DAYS = 366
/** Day rows folded into stats_day_pruned per transaction, so pruning never holds the writer long. */
const PRUNE_BATCH = 2000
const MAINTAIN_MS = 60_000
/** Day sketches kept between persists (emptied when full; the table has them all). */
const SKETCHES_KEPT = 20_000
/** Pairs remembered as having today as their open day (past this, forgotten and learnt again). */
const OPEN_KEYS_KEPT = 200_000

/** A pair the history is written for: a delta of the counter store. */
export type HistoryDelta = DayCarrier & { did: string; repository: string }

export type TrendingRow = {
  did: string
  repository: string
  /** Pulls in the window. */
  pulls: number
  pullCount: number
  pushCount: number
}

/** Where a trending page ends: the last row's window pulls, DID and repository. */
export type TrendingCursor = { pulls: number; did: string; repository: string }

/** What a delta adds to its counter row's open day (CounterStore's persist writes it). */
export type OpenPart = {
  day: number
  pulls: number
  pushes: number
  /** The row's open day may be another: the upsert moves it (its old counts are folded). */
  roll: boolean
}

const NOTHING_OPEN: OpenPart = { day: 0, pulls: 0, pushes: 0, roll: false }

/** A pair's counts of one day as a read returns them (closed and open parts summed by the caller). */
type DayRow = { day: number; pulls: number; pushes: number }

export const HISTORY_SQL = {
  upsertDay: `
    INSERT INTO stats_day (did, repository, day, pulls, pushes) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (did, repository, day) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  /** A pair's open day, when it is not `?3`, into stats_day (before the upsert moves it). */
  fold: `
    INSERT INTO stats_day (did, repository, day, pulls, pushes)
    SELECT did, repository, open_day, open_pulls, open_pushes FROM stats_counter
    WHERE did = ?1 AND repository = ?2 AND open_day <> ?3
      AND (open_pulls <> 0 OR open_pushes <> 0)
    ON CONFLICT (did, repository, day) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  clientsOf:
    'SELECT sketch FROM stats_day_clients WHERE did = ? AND repository = ? AND day = ?',
  putClients: `
    INSERT INTO stats_day_clients (did, repository, day, estimate, sketch) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (did, repository, day) DO UPDATE SET
      estimate = excluded.estimate, sketch = excluded.sketch`,
  upsertTotal: `
    INSERT INTO stats_day_total (day, pulls, pushes) VALUES (?, ?, ?)
    ON CONFLICT (day) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  totals: `
    SELECT day, pulls, pushes FROM stats_day_total WHERE day >= ? AND day <= ? ORDER BY day`,
  forgetTotals: `
    UPDATE stats_day_total SET pulls = stats_day_total.pulls - d.pulls,
      pushes = stats_day_total.pushes - d.pushes
    FROM (SELECT day, sum(pulls) AS pulls, sum(pushes) AS pushes FROM (
            SELECT day, pulls, pushes FROM stats_day
            WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
            UNION ALL
            SELECT open_day, open_pulls, open_pushes FROM stats_counter
            WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
              AND (open_pulls <> 0 OR open_pushes <> 0))
          GROUP BY day) AS d
    WHERE stats_day_total.day = d.day`,
  pruneTotals: 'DELETE FROM stats_day_total WHERE day < ?',
  range: `
    SELECT day, pulls, pushes FROM stats_day
    WHERE did = ?1 AND repository = ?2 AND day >= ?3 AND day <= ?4
    UNION ALL
    SELECT open_day, open_pulls, open_pushes FROM stats_counter
    WHERE did = ?1 AND repository = ?2 AND open_day >= ?3 AND open_day <= ?4
      AND (open_pulls <> 0 OR open_pushes <> 0)`,
  rangeClients: `
    SELECT day, estimate FROM stats_day_clients
    WHERE did = ? AND repository = ? AND day >= ? AND day <= ? AND estimate IS NOT NULL`,
  /** Sketches without their estimate (moved from the day rows by the upgrade). */
  unestimated: `
    SELECT rowid AS id, sketch FROM stats_day_clients WHERE estimate IS NULL LIMIT 1000`,
  setEstimate: 'UPDATE stats_day_clients SET estimate = ? WHERE rowid = ?',
  dropSketch: 'DELETE FROM stats_day_clients WHERE rowid = ?',
  totalsOf: `
    SELECT pull_count + baseline_pull AS pullCount, push_count + baseline_push AS pushCount
    FROM stats_counter WHERE did = ? AND repository = ?`,
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
  /**
   * Open days past the kept days (pairs not counted since) are pruned too. Found through the
   * index of open days with counts (stats_counter_open_idx, whose condition this repeats), so
   * the pairs closed before are not read again every minute.
   */
  staleOpen: `
    SELECT did, repository, open_pulls AS pulls, open_pushes AS pushes FROM stats_counter
    WHERE open_day < ?1 AND (open_pulls <> 0 OR open_pushes <> 0) LIMIT ${PRUNE_BATCH}`,
  prunedAdd: `
    INSERT INTO stats_day_pruned (did, repository, pulls, pushes) VALUES (?, ?, ?, ?)
    ON CONFLICT (did, repository) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes`,
  closeOpen: `
    UPDATE stats_counter SET open_pulls = 0, open_pushes = 0
    WHERE did = ? AND repository = ?`,
  pruneClients: `
    DELETE FROM stats_day_clients WHERE rowid IN (
      SELECT rowid FROM stats_day_clients WHERE day < ?1 LIMIT ${PRUNE_BATCH})`,
  forgetDays:
    'DELETE FROM stats_day WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
  forgetClients:
    'DELETE FROM stats_day_clients WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
  forgetPruned:
    'DELETE FROM stats_day_pruned WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
}

/**
 * Per-day counts of each (DID, repository). The days before a pair's latest are rows of
 * `stats_day`; its latest day (the open day) rides in its counter row (`open_day`,
 * `open_pulls`, `open_pushes`), written by the same upsert as its totals, and is folded into
 * `stats_day` when a later day is first counted for the pair. So a persist writes one row per
 * pair, the days of a pair always add up to its own counts (less those of days pruned past
 * HOLD_STATS_HISTORY_DAYS, kept summed in `stats_day_pruned`), and every read sums both parts.
 * The hold's own per day is `stats_day_total`; unique-client sketches are `stats_day_clients`,
 * each with its estimate. Each pair's pulls of its last 30 days are also kept in memory
 * (TrendingWindows), added to when a persist commits, for listTrending.
 */
export class History {
  readonly keepDays: number
  private readonly database: Database
  private readonly sql: Statements<keyof typeof HISTORY_SQL>
  private readonly log: Logger
  private readonly trend = new TrendingWindows()
  /** The windows' first read, from a snapshot of the table at start. */
  private readonly load: TrendingLoad
  private readonly dayExport: DayExport
  /**
   * The latest day counted, and the pairs whose counter row has it as its open day (written
   * by a committed persist of this process): their upserts need not move the open day. A
   * hint only: a pair missing here takes the longer way, which is right for any row.
   */
  private openDay: number
  private openKeys = new Set<string>()
  /** Pairs whose open day a persist under way moved, and to which day. */
  private rolled: { key: string; day: number }[] = []
  /** Each day's pulls and pushes of the persist under way (stats_day_total). */
  private dayTotals = new Map<number, { pulls: number; pushes: number }>()
  /**
   * The day sketches of pairs counted lately, as the table has them: a persist merges a delta's
   * sketch into its day's here and writes the bytes only when a register changed.
   */
  private sketches = new Map<string, { day: number; sketch: Sketch }>()
  private timer: NodeJS.Timeout | undefined
  /** Resolves once the trending windows hold every recent day (listTrending waits for it). */
  readonly ready: Promise<void>

  constructor(database: Database, keepDays: number, log: Logger) {
    this.database = database
    this.keepDays = keepDays
    this.log = log
    this.sql = prepareAll(database.db, HISTORY_SQL)
    this.openDay = dayOf(Date.now())
    this.dayExport = new DayExport(database)
    this.estimateMoved()
    this.load = new TrendingLoad(
      database,
      this.trend,
      dayOf(Date.now()) - TRENDING_MAX_DAYS - 1,
      log,
    )
    this.ready = this.load.done
  }

  /** Gives the sketches the upgrade moved out of the day rows their estimates (once). */
  private estimateMoved(): void {
    for (;;) {
      const rows = this.sql.unestimated.all() as {
        id: number
        sketch: Uint8Array
      }[]
      if (rows.length === 0) return
      this.database.transaction(() => {
        for (const r of rows) {
          const estimate = Sketch.estimateOf(r.sketch)
          // Bytes that are no sketch estimate nothing: the row goes.
          if (estimate === undefined) this.sql.dropSketch.run(r.id)
          else this.sql.setEstimate.run(estimate, r.id)
        }
      })
    }
  }

  /**
   * Where a persist's delta goes by day, called inside its transaction for each delta: days
   * before the latest counted go straight into stats_day; the delta's own day is returned, for
   * the counter row's open day. A pair whose row may hold an older open day has it folded into
   * stats_day first.
   */
  open(d: HistoryDelta): OpenPart {
    const days = daysOf(d)
    const key = `${d.did} ${d.repository}`
    for (let i = 0; i < days.length - 1; i++) this.closed(d, key, days[i])
    const own = days[days.length - 1]
    this.sumDay(own)
    if (own.clients) this.putClients(d, key, own.day, own.clients)
    if (own.day < this.openDay) {
      // A late count (a frontend's delayed batch, a clock set back): a closed day.
      this.upsert(d, own)
      return NOTHING_OPEN
    }
    if (own.day > this.openDay) {
      this.openDay = own.day
      this.openKeys = new Set()
    }
    const roll = !this.openKeys.has(key)
    if (roll) {
      this.sql.fold.run(d.did, d.repository, own.day)
      this.rolled.push({ key, day: own.day })
    }
    return { day: own.day, pulls: own.pulls, pushes: own.pushes, roll }
  }

  private closed(d: HistoryDelta, key: string, e: DayCounts): void {
    this.sumDay(e)
    this.upsert(d, e)
    if (e.clients) this.putClients(d, key, e.day, e.clients)
  }

  private upsert(d: HistoryDelta, e: DayCounts): void {
    if (e.pulls === 0 && e.pushes === 0) return
    this.sql.upsertDay.run(d.did, d.repository, e.day, e.pulls, e.pushes)
  }

  private sumDay(e: DayCounts): void {
    if (e.pulls === 0 && e.pushes === 0) return
    const t = this.dayTotals.get(e.day)
    if (t) {
      t.pulls += e.pulls
      t.pushes += e.pushes
    } else this.dayTotals.set(e.day, { pulls: e.pulls, pushes: e.pushes })
  }

  /**
   * The end of a persist's deltas, inside its transaction: the hold's day totals, and once it
   * commits, the trending windows and the pairs whose open day moved.
   */
  wrote(deltas: HistoryDelta[]): void {
    for (const [day, t] of this.dayTotals) {
      this.sql.upsertTotal.run(day, t.pulls, t.pushes)
    }
    this.dayTotals = new Map()
    const rolled = this.rolled
    this.rolled = []
    // The windows in memory follow the table: only what committed is added.
    this.database.afterCommit(() => {
      for (const r of rolled) {
        if (r.day === this.openDay) this.openKeys.add(r.key)
        else this.openKeys.delete(r.key)
      }
      if (this.openKeys.size > OPEN_KEYS_KEPT) this.openKeys = new Set()
      for (const d of deltas) {
        if (d.pulls === 0) continue
        for (const e of daysOf(d)) {
          if (e.pulls > 0) this.trend.add(d.did, d.repository, e.day, e.pulls)
        }
      }
    })
  }

  /** A day sketch with `clients` taken in, written (with its estimate) when a register changed. */
  private putClients(
    d: HistoryDelta,
    key: string,
    day: number,
    clients: Sketch,
  ): void {
    let kept = this.sketches.get(key)
    let changed: boolean
    if (!kept || kept.day !== day) {
      const row = this.sql.clientsOf.get(d.did, d.repository, day) as
        { sketch: Uint8Array } | undefined
      const stored = row ? Sketch.from(row.sketch) : undefined
      kept = { day, sketch: stored ?? new Sketch() }
      if (this.sketches.size >= SKETCHES_KEPT) this.sketches.clear()
      this.sketches.set(key, kept)
      kept.sketch.merge(clients)
      changed = true
    } else changed = kept.sketch.merge(clients)
    if (!changed) return
    this.sql.putClients.run(
      d.did,
      d.repository,
      day,
      kept.sketch.estimate(),
      kept.sketch.toBytes(),
    )
  }

  /** A persist rolled back: what it noted for the table is not there. */
  rolledBack(): void {
    this.sketches = new Map()
    this.rolled = []
    this.dayTotals = new Map()
  }

  /**
   * Deletes a DID's day rows (all its repositories, or one): in the reset's transaction, before
   * its counter rows (their open days) go.
   */
  forget(did: string, repository: string | null): void {
    this.sql.forgetTotals.run(did, repository)
    this.sql.forgetDays.run(did, repository)
    this.sql.forgetClients.run(did, repository)
    this.sql.forgetPruned.run(did, repository)
    this.sketches = new Map()
    this.openKeys = new Set()
    this.database.afterCommit(() => {
      this.trend.forget(did, repository)
      this.load.forget(did, repository)
    })
  }

  /** A pair's days from `since` to `until` (UTC day numbers), days without counts as zeros. */
  range(
    did: string,
    repository: string,
    since: number,
    until: number,
  ): HistoryDay[] {
    const out: HistoryDay[] = []
    for (let day = since; day <= until; day++) {
      out.push({ day: dayString(day), pulls: 0, pushes: 0 })
    }
    // A day can have a stats_day row and an open part (a late count): both are added.
    for (const r of this.sql.range.all(
      did,
      repository,
      since,
      until,
    ) as DayRow[]) {
      const view = out[r.day - since]
      view.pulls += r.pulls
      view.pushes += r.pushes
    }
    for (const c of this.sql.rangeClients.all(
      did,
      repository,
      since,
      until,
    ) as { day: number; estimate: number }[]) {
      out[c.day - since].uniqueClients = c.estimate
    }
    return out
  }

  /** The hold's pulls and pushes per day, `since` to `until`, days without counts as zeros. */
  dailyTotals(since: number, until: number): HistoryDay[] {
    const rows = this.sql.totals.all(since, until) as DayRow[]
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

  /** A page of the CLI's export: day rows from `since` on, after `after` (see DayExport). */
  exportRows(
    since: number,
    limit: number,
    after: ExportPosition | undefined,
  ): { rows: ExportRow[]; more: boolean } {
    return this.dayExport.page(since, limit, after)
  }

  /**
   * Folds the day rows older than HOLD_STATS_HISTORY_DAYS (and open days that old, of pairs not
   * counted since) into stats_day_pruned, a batch per transaction; returns how many rows went.
   */
  prune(now = Date.now()): number {
    const before = dayOf(now) - this.keepDays + 1
    let pruned = 0
    for (;;) {
      const n = this.database.transaction(() => {
        this.sql.pruneFold.run(before)
        let n = Number(this.sql.pruneDelete.run(before).changes)
        const stale = this.sql.staleOpen.all(before) as {
          did: string
          repository: string
          pulls: number
          pushes: number
        }[]
        for (const r of stale) {
          this.sql.prunedAdd.run(r.did, r.repository, r.pulls, r.pushes)
          this.sql.closeOpen.run(r.did, r.repository)
        }
        this.sql.pruneClients.run(before)
        n += stale.length
        return n
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
    this.load.stop()
    clearInterval(this.timer)
  }
}
