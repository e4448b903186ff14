import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import { MAX_OPS_PER_COMMIT, type RepoWriter } from '../repo/writer.ts'
import type { Baseline } from './baseline.ts'
import { statsRecordKey } from './rkey.ts'

export type StatsView = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}

type Delta = {
  did: string
  repository: string
  pulls: number
  pushes: number
  lastPull: number
  lastPush: number
  first: number
}

type CounterRow = {
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

type BaselineRow = {
  pull_count: number
  push_count: number
  last_pull: string | null
  last_push: string | null
}

export type ImportResult = { changed: number; unchanged: number }
export type ResetResult = { pairs: number; records: number; commits: number }

/**
 * What the request path calls to count; StatsService in production, which never returns a
 * promise. A counter that returns one (the benchmark's model of the seed design) is awaited.
 */
export interface Counter {
  countPull(did: string, repository: string): void | Promise<void>
  countPush(did: string, repository: string): void | Promise<void>
  /** Whether the pair was counted before: only a new pair meets HOLD_NEW_PAIRS_PER_HOUR. */
  has(did: string, repository: string): boolean
}

export type FlushResult = { records: number; commits: number; ms: number }

/**
 * Pairs kept in memory while the counter table cannot be written (a full disk): counts for
 * these go on adding up; a count for any other pair is dropped (`unrecorded`).
 */
export const MAX_PENDING_PAIRS = 100_000
/** While writes fail, how often pending counts are tried again (instead of every persist). */
const FAILING_RETRY_MS = 1000

const keyOf = (did: string, repository: string) => `${did} ${repository}`
/** Pairs remembered as having a counter row, so most checks for a new pair never reach SQLite. */
const KNOWN_PAIRS = 50_000
const iso = (ms: number) => new Date(ms).toISOString()
/** The later of ISO timestamps (all written with ms and Z, so they compare as strings). */
const latest = (...values: (string | null | undefined)[]) =>
  values.reduce<string | undefined>(
    (a, b) => (b && (!a || b > a) ? b : a),
    undefined,
  )

// A counter with its baseline: the hold's own counts plus what was imported.
const COUNTER_SELECT = `
  SELECT c.*, b.pull_count AS base_pull, b.push_count AS base_push,
         b.last_pull AS base_last_pull, b.last_push AS base_last_push
  FROM stats_counter c
  LEFT JOIN stats_baseline b ON b.did = c.did AND b.repository = c.repository`

/** The hold's totals, kept by triggers (the status page reads them at every refresh). */
export const TOTALS_SQL =
  'SELECT pairs, pulls, pushes FROM stats_total WHERE id = 1'

/** The most pulled pairs, own and imported counts added: a sort of the whole table. */
const TOP_SQL = `${COUNTER_SELECT}
  ORDER BY c.pull_count + c.baseline_pull DESC, c.push_count + c.baseline_push DESC,
           c.did, c.repository
  LIMIT ?`

/** How many of the most pulled pairs are kept in memory (top() up to this many is free). */
export const TOP_KEPT = 100

/** A pair's place among the most pulled: own and imported counts added. */
type Ranked = {
  key: string
  did: string
  repository: string
  pulls: number
  pushes: number
}

/** Negative when a ranks before b: more pulls, then more pushes, then by DID and repository. */
const rank = (a: Ranked, b: Ranked): number =>
  b.pulls - a.pulls ||
  b.pushes - a.pushes ||
  (a.did < b.did ? -1 : a.did > b.did ? 1 : 0) ||
  (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0)

/**
 * The TOP_KEPT most pulled pairs, read once with TOP_SQL and then kept by persist(): counts
 * only grow there, so a pair outside the set can only enter it by passing the set's last,
 * which persist sees as it writes the pair. Imports and resets can lower counts: they drop it.
 */
type TopSet = {
  byKey: Map<string, Ranked>
  /** The set's last pair, or undefined when it must be looked for again. */
  last: Ranked | undefined
}

/**
 * Pull and push counters. A count is a map update in memory (no I/O on the request path);
 * every `persistMs` the pending deltas go into the `stats_counter` table in one transaction
 * (the durability point); every `flushMs` changed counters become `io.atcr.hold.stats` records
 * through the repo's single writer, at most 200 per commit. Reads merge the table with what is
 * still pending, so a count is visible as soon as it is accepted.
 *
 * Imported counts (`stats_baseline`, one row per pair) are added to the hold's own in every
 * read and record; lastPull/lastPush are the later of the two. Changing a baseline marks the
 * pair's counter changed, creating it when the pair has none, so the next flush writes it.
 */
export class StatsService implements Counter {
  private pending = new Map<string, Delta>()
  private persistTimer: NodeJS.Timeout | undefined
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<FlushResult> | undefined
  private stopped = false
  private readonly upsertStmt: StatementSync
  /** The upsert, answering the pair's counts: used while the most pulled pairs are kept. */
  private readonly upsertRankedStmt: StatementSync
  private topSet: TopSet | undefined
  /** How many times the most pulled pairs were read from the whole table (tests). */
  topReads = 0
  private readonly getStmt: StatementSync
  private readonly listStmt: StatementSync
  private readonly dirtyStmt: StatementSync
  private readonly markStmt: StatementSync
  private readonly pendingCountStmt: StatementSync
  private readonly topStmt: StatementSync
  private readonly getBaselineStmt: StatementSync
  private readonly putBaselineStmt: StatementSync
  private readonly touchStmt: StatementSync
  private readonly pairsStmt: StatementSync
  private readonly deleteCountersStmt: StatementSync
  private readonly deleteBaselinesStmt: StatementSync
  private readonly rewriteStmt: StatementSync
  private readonly summaryStmt: StatementSync
  private readonly hasRecordStmt: StatementSync
  private readonly hasCounterStmt: StatementSync
  private readonly known = new Set<string>()
  readonly totals = { pulls: 0, pushes: 0, commits: 0, flushedRecords: 0 }
  /** Counts dropped because MAX_PENDING_PAIRS pairs were waiting for the table already. */
  unrecorded = 0
  private lastPersistTry = 0
  private readonly flushListeners: ((result: FlushResult) => void)[] = []
  private readonly totalsStmt: StatementSync

  private readonly database: Database
  private readonly writer: RepoWriter
  private readonly log: Logger
  private readonly opts: { persistMs: number; flushMs: number }

  constructor(
    database: Database,
    writer: RepoWriter,
    log: Logger,
    opts: { persistMs: number; flushMs: number },
  ) {
    this.database = database
    this.writer = writer
    this.log = log
    this.opts = opts
    const { db } = database
    this.upsertStmt = db.prepare(`
      INSERT INTO stats_counter
        (did, repository, pull_count, push_count, last_pull, last_push, created_at, updated_at)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
      ON CONFLICT (did, repository) DO UPDATE SET
        pull_count = pull_count + excluded.pull_count,
        push_count = push_count + excluded.push_count,
        last_pull = CASE WHEN excluded.last_pull IS NOT NULL AND (last_pull IS NULL OR excluded.last_pull > last_pull)
                    THEN excluded.last_pull ELSE last_pull END,
        last_push = CASE WHEN excluded.last_push IS NOT NULL AND (last_push IS NULL OR excluded.last_push > last_push)
                    THEN excluded.last_push ELSE last_push END,
        updated_at = CASE WHEN excluded.updated_at > updated_at THEN excluded.updated_at ELSE updated_at END,
        version = version + 1`)
    this.upsertRankedStmt = db.prepare(`${this.upsertStmt.sourceSQL}
      RETURNING pull_count + baseline_pull AS pulls, push_count + baseline_push AS pushes`)
    this.getStmt = db.prepare(
      `${COUNTER_SELECT} WHERE c.did = ? AND c.repository = ?`,
    )
    this.listStmt = db.prepare(
      `${COUNTER_SELECT} WHERE c.did = ? AND c.repository > ? ORDER BY c.repository LIMIT ?`,
    )
    this.dirtyStmt = db.prepare(`${COUNTER_SELECT}
      WHERE c.version > c.record_version AND (c.did, c.repository) > (?, ?)
      ORDER BY c.did, c.repository LIMIT ?`)
    this.markStmt = db.prepare(
      'UPDATE stats_counter SET record_version = ? WHERE did = ? AND repository = ?',
    )
    this.pendingCountStmt = db.prepare(
      'SELECT count(*) AS n FROM stats_counter WHERE version > record_version',
    )
    this.topStmt = db.prepare(TOP_SQL)
    this.totalsStmt = db.prepare(TOTALS_SQL)
    this.getBaselineStmt = db.prepare(
      'SELECT pull_count, push_count, last_pull, last_push FROM stats_baseline WHERE did = ? AND repository = ?',
    )
    this.putBaselineStmt = db.prepare(`
      INSERT INTO stats_baseline
        (did, repository, pull_count, push_count, last_pull, last_push, imported_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (did, repository) DO UPDATE SET
        pull_count = excluded.pull_count, push_count = excluded.push_count,
        last_pull = excluded.last_pull, last_push = excluded.last_push,
        imported_at = excluded.imported_at`)
    this.touchStmt = db.prepare(`
      INSERT INTO stats_counter (did, repository, created_at, updated_at)
      VALUES (?1, ?2, ?3, ?3)
      ON CONFLICT (did, repository) DO UPDATE SET
        updated_at = CASE WHEN excluded.updated_at > updated_at THEN excluded.updated_at ELSE updated_at END,
        version = version + 1`)
    this.pairsStmt = db.prepare(`
      SELECT did, repository FROM stats_counter WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
      UNION
      SELECT did, repository FROM stats_baseline WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
      ORDER BY repository`)
    this.deleteCountersStmt = db.prepare(
      'DELETE FROM stats_counter WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
    )
    this.deleteBaselinesStmt = db.prepare(
      'DELETE FROM stats_baseline WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
    )
    this.rewriteStmt = db.prepare(
      'UPDATE stats_counter SET record_version = 0 WHERE did = ? AND repository = ?',
    )
    this.summaryStmt = db.prepare(`
      SELECT (SELECT count(*) FROM stats_counter) AS counters,
             (SELECT count(*) FROM stats_baseline) AS baselines`)
    this.hasRecordStmt = db.prepare(
      'SELECT 1 FROM record WHERE collection = ? AND rkey = ?',
    )
    this.hasCounterStmt = db.prepare(
      'SELECT 1 FROM stats_counter WHERE did = ? AND repository = ?',
    )
  }

  countPull(did: string, repository: string, now = Date.now()): void {
    const d = this.delta(did, repository, now)
    if (!d) return
    d.pulls++
    d.lastPull = now
    this.totals.pulls++
  }

  countPush(did: string, repository: string, now = Date.now()): void {
    const d = this.delta(did, repository, now)
    if (!d) return
    d.pushes++
    d.lastPush = now
    this.totals.pushes++
  }

  private delta(
    did: string,
    repository: string,
    now: number,
  ): Delta | undefined {
    const key = keyOf(did, repository)
    let d = this.pending.get(key)
    if (!d) {
      if (this.pending.size >= MAX_PENDING_PAIRS) {
        this.unrecorded++
        return undefined
      }
      d = {
        did,
        repository,
        pulls: 0,
        pushes: 0,
        lastPull: 0,
        lastPush: 0,
        first: now,
      }
      this.pending.set(key, d)
    }
    return d
  }

  /**
   * Whether (did, repository) has been counted before (or has imported counts): pending in
   * memory, remembered, or in the counter table. Only a miss in memory asks SQLite.
   */
  has(did: string, repository: string): boolean {
    const key = keyOf(did, repository)
    if (this.pending.has(key) || this.known.has(key)) return true
    if (!this.hasCounterStmt.get(did, repository)) return false
    if (this.known.size >= KNOWN_PAIRS) {
      // The oldest entry first: Sets iterate in insertion order.
      this.known.delete(this.known.values().next().value!)
    }
    this.known.add(key)
    return true
  }

  /** Called after every flush that completes (metrics). */
  onFlush(listener: (result: FlushResult) => void): void {
    this.flushListeners.push(listener)
  }

  /** Pairs, pulls and pushes across the hold, own and imported counts added (status page). */
  overall(): { pairs: number; pulls: number; pushes: number } {
    this.persistIfWritable()
    return this.totalsStmt.get() as {
      pairs: number
      pulls: number
      pushes: number
    }
  }

  /** Pairs counted in memory and not yet in the counter table. */
  get pendingPairs(): number {
    return this.pending.size
  }

  /** Counters whose record in the repo is behind the table. */
  dirtyCounters(): number {
    return (this.pendingCountStmt.get() as { n: number }).n
  }

  /** Moves pending deltas into the counter table, in one transaction. */
  persist(): number {
    if (this.pending.size === 0) return 0
    const batch = this.pending
    this.pending = new Map()
    const top = this.topSet
    try {
      this.database.transaction(() => {
        for (const [key, d] of batch) {
          const last = Math.max(d.lastPull, d.lastPush, d.first)
          const args = [
            d.did,
            d.repository,
            d.pulls,
            d.pushes,
            d.lastPull ? iso(d.lastPull) : null,
            d.lastPush ? iso(d.lastPush) : null,
            iso(last),
          ] as const
          if (!top) {
            this.upsertStmt.run(...args)
            continue
          }
          const counts = this.upsertRankedStmt.get(...args) as {
            pulls: number
            pushes: number
          }
          this.rankPersisted(top, key, d, counts)
        }
      })
    } catch (err) {
      // The kept most pulled pairs may hold counts the rollback took back.
      this.topSet = undefined
      // Put the deltas back so nothing is lost; the next persist retries them.
      for (const [key, d] of batch) {
        const cur = this.pending.get(key)
        if (!cur) this.pending.set(key, d)
        else {
          cur.pulls += d.pulls
          cur.pushes += d.pushes
          cur.lastPull = Math.max(cur.lastPull, d.lastPull)
          cur.lastPush = Math.max(cur.lastPush, d.lastPush)
          cur.first = Math.min(cur.first, d.first)
        }
      }
      throw err
    }
    return batch.size
  }

  /** persist(), for a read that can do without: a disk failure leaves the counts pending. */
  private persistIfWritable(): void {
    try {
      this.persist()
    } catch (err) {
      if (!this.database.writeFailure) throw err
    }
  }

  get(did: string, repository: string): StatsView {
    const row = this.getStmt.get(did, repository) as CounterRow | undefined
    return this.merge(
      row ?? null,
      this.pending.get(keyOf(did, repository)),
      did,
      repository,
    )
  }

  list(
    did: string,
    limit: number,
    after = '',
  ): { stats: StatsView[]; cursor?: string } {
    const rows = this.listStmt.all(did, after, limit) as CounterRow[]
    const byRepo = new Map<string, StatsView>()
    for (const row of rows) {
      byRepo.set(
        row.repository,
        this.merge(
          row,
          this.pending.get(keyOf(did, row.repository)),
          did,
          row.repository,
        ),
      )
    }
    // Pairs counted since the last persist may not be in the table yet.
    for (const d of this.pending.values()) {
      if (d.did === did && d.repository > after && !byRepo.has(d.repository)) {
        const row = this.getStmt.get(did, d.repository) as
          CounterRow | undefined
        byRepo.set(d.repository, this.merge(row ?? null, d, did, d.repository))
      }
    }
    const stats = [...byRepo.values()]
      .sort((a, b) => (a.repository < b.repository ? -1 : 1))
      .slice(0, limit)
    const more = rows.length === limit || byRepo.size > limit
    return {
      stats,
      cursor:
        more && stats.length > 0
          ? stats[stats.length - 1].repository
          : undefined,
    }
  }

  private merge(
    row: CounterRow | null,
    d: Delta | undefined,
    did: string,
    repository: string,
  ): StatsView {
    const view: StatsView = {
      did,
      repository,
      pullCount:
        (row?.pull_count ?? 0) + (row?.base_pull ?? 0) + (d?.pulls ?? 0),
      pushCount:
        (row?.push_count ?? 0) + (row?.base_push ?? 0) + (d?.pushes ?? 0),
    }
    const lastPull = latest(
      d?.lastPull ? iso(d.lastPull) : undefined,
      row?.last_pull,
      row?.base_last_pull,
    )
    const lastPush = latest(
      d?.lastPush ? iso(d.lastPush) : undefined,
      row?.last_push,
      row?.base_last_push,
    )
    if (lastPull) view.lastPull = lastPull
    if (lastPush) view.lastPush = lastPush
    return view
  }

  /**
   * The pairs with the most pulls (then pushes) on this hold, own and imported counts added.
   * Up to TOP_KEPT of them come from memory (one read of the whole table first, and again after
   * an import or a reset); more are a sort of the table.
   */
  top(limit: number): StatsView[] {
    this.persistIfWritable()
    if (limit > TOP_KEPT) {
      const rows = this.topStmt.all(limit) as CounterRow[]
      return rows.map((row) =>
        this.merge(row, undefined, row.did, row.repository),
      )
    }
    this.topSet ??= this.readTop()
    return [...this.topSet.byKey.values()]
      .sort(rank)
      .slice(0, limit)
      .map((p) => {
        const row = this.getStmt.get(p.did, p.repository) as CounterRow
        return this.merge(row, undefined, p.did, p.repository)
      })
  }

  private readTop(): TopSet {
    this.topReads++
    const byKey = new Map<string, Ranked>()
    for (const row of this.topStmt.all(TOP_KEPT) as (CounterRow & {
      baseline_pull: number
      baseline_push: number
    })[]) {
      const key = keyOf(row.did, row.repository)
      byKey.set(key, {
        key,
        did: row.did,
        repository: row.repository,
        pulls: row.pull_count + row.baseline_pull,
        pushes: row.push_count + row.baseline_push,
      })
    }
    return { byKey, last: undefined }
  }

  /** A pair's counts as persist() wrote them, for the kept most pulled pairs. */
  private rankPersisted(
    top: TopSet,
    key: string,
    d: Delta,
    counts: { pulls: number; pushes: number },
  ): void {
    const kept = top.byKey.get(key)
    if (kept) {
      kept.pulls = counts.pulls
      kept.pushes = counts.pushes
      // Counts only grow here: the last pair may have moved up, nobody else down.
      if (kept === top.last) top.last = undefined
      return
    }
    const pair: Ranked = {
      key,
      did: d.did,
      repository: d.repository,
      ...counts,
    }
    if (top.byKey.size < TOP_KEPT) {
      // A set not yet full holds every pair there is (and has not looked for its last).
      top.byKey.set(key, pair)
      return
    }
    top.last ??= [...top.byKey.values()].reduce((a, b) =>
      rank(a, b) > 0 ? a : b,
    )
    if (rank(pair, top.last) >= 0) return
    top.byKey.delete(top.last.key)
    top.byKey.set(key, pair)
    top.last = undefined
  }

  /** Counter and baseline totals, and what is not yet in the table or the repo. */
  summary(): {
    counters: number
    baselines: number
    pendingPairs: number
    dirtyCounters: number
  } {
    const { counters, baselines } = this.summaryStmt.get() as {
      counters: number
      baselines: number
    }
    return {
      counters,
      baselines,
      pendingPairs: this.pendingPairs,
      dirtyCounters: this.dirtyCounters(),
    }
  }

  /**
   * Sets the baselines of the pairs given (replacing what an earlier import set), in one
   * transaction. A pair whose baseline changes is marked for the next flush; an identical one
   * is left alone, so importing the same data twice writes nothing.
   */
  importBaselines(rows: Baseline[], now = Date.now()): ImportResult {
    const at = iso(now)
    let changed = 0
    this.database.transaction(() => {
      for (const b of rows) {
        const cur = this.getBaselineStmt.get(b.did, b.repository) as
          BaselineRow | undefined
        if (
          cur &&
          cur.pull_count === b.pullCount &&
          cur.push_count === b.pushCount &&
          cur.last_pull === (b.lastPull ?? null) &&
          cur.last_push === (b.lastPush ?? null)
        ) {
          continue
        }
        this.putBaselineStmt.run(
          b.did,
          b.repository,
          b.pullCount,
          b.pushCount,
          b.lastPull ?? null,
          b.lastPush ?? null,
          at,
        )
        this.touchStmt.run(b.did, b.repository, at)
        changed++
      }
    })
    if (changed > 0) {
      // A baseline may have gone down: the kept most pulled pairs are read again.
      this.topSet = undefined
      this.log.info({ changed, rows: rows.length }, 'imported stats baselines')
    }
    return { changed, unchanged: rows.length - changed }
  }

  /**
   * Zeroes a DID's counters and baselines (all its repositories, or one) and deletes their
   * records: spam clean-up, account deletion. Counts arriving afterwards start from zero.
   */
  async reset(did: string, repository?: string): Promise<ResetResult> {
    const repo = repository ?? null
    // A reset pair is new again, and may have been among the most pulled.
    this.known.clear()
    this.topSet = undefined
    for (const [key, d] of this.pending) {
      if (d.did === did && (repo === null || d.repository === repo)) {
        this.pending.delete(key)
      }
    }
    const pairs = this.database.transaction(() => {
      const found = this.pairsStmt.all(did, repo) as {
        did: string
        repository: string
      }[]
      this.deleteCountersStmt.run(did, repo)
      this.deleteBaselinesStmt.run(did, repo)
      return found
    })
    // A flush reads the table inside the writer's turn, so none can write these records again
    // once the rows are gone; a pair counted again before its delete commits is rewritten.
    let records = 0
    let commits = 0
    for (let i = 0; i < pairs.length; i += MAX_OPS_PER_COMMIT) {
      const chunk = pairs.slice(i, i + MAX_OPS_PER_COMMIT)
      const paths = chunk.map((p) => ({
        collection: ids.HoldStats,
        rkey: statsRecordKey(p.did, p.repository),
      }))
      const existing = paths.filter((p) =>
        this.hasRecordStmt.get(p.collection, p.rkey),
      ).length
      const commit = await this.writer.deleteRecords(paths, () => {
        for (const p of chunk) this.rewriteStmt.run(p.did, p.repository)
      })
      if (commit) {
        commits++
        records += existing
      }
    }
    this.log.info(
      { did, repository, pairs: pairs.length, records },
      'reset stats',
    )
    return { pairs: pairs.length, records, commits }
  }

  /**
   * Writes every counter whose record is behind into the repo, at most 200 records per commit.
   * Each changed counter is visited once per flush, so sustained traffic cannot keep a flush
   * going forever. Concurrent calls share one flush.
   */
  flush(): Promise<FlushResult> {
    if (!this.flushing) {
      this.flushing = this.flushNow().finally(() => {
        this.flushing = undefined
      })
    }
    return this.flushing
  }

  private async flushNow(): Promise<FlushResult> {
    const started = performance.now()
    this.persist()
    let after: [string, string] = ['', '']
    let records = 0
    let commits = 0
    for (;;) {
      // Cheap look first, so an idle flush never queues behind other writes.
      if (this.dirtyStmt.all(after[0], after[1], 1).length === 0) break
      await this.database.walRoom()
      // The rows are read inside the writer's turn: a reset that deleted them before it
      // cannot see them written back.
      let rows: CounterRow[] = []
      const commit = await this.writer.putRecordsFrom(
        () => {
          rows = this.dirtyStmt.all(
            after[0],
            after[1],
            MAX_OPS_PER_COMMIT,
          ) as CounterRow[]
          return rows.map((row) => ({
            collection: ids.HoldStats,
            rkey: statsRecordKey(row.did, row.repository),
            record: toRecord(row),
          }))
        },
        () => {
          for (const row of rows) {
            this.markStmt.run(row.version, row.did, row.repository)
          }
        },
      )
      if (rows.length === 0) break
      const last = rows[rows.length - 1]
      after = [last.did, last.repository]
      records += rows.length
      if (commit) commits++
      if (rows.length < MAX_OPS_PER_COMMIT) break
    }
    const ms = performance.now() - started
    this.totals.commits += commits
    this.totals.flushedRecords += records
    if (records > 0) {
      this.log.debug({ records, commits, ms }, 'flushed stats')
    }
    for (const listener of this.flushListeners) {
      listener({ records, commits, ms })
    }
    return { records, commits, ms }
  }

  start(): void {
    this.persistTimer = setInterval(() => {
      // While the disk refuses writes, a retry every persist would only burn CPU.
      const now = Date.now()
      if (
        this.database.writeFailure &&
        now - this.lastPersistTry < FAILING_RETRY_MS
      ) {
        return
      }
      this.lastPersistTry = now
      try {
        this.persist()
      } catch (err) {
        this.logFailure(err, 'persisting stats failed; will retry')
      }
    }, this.opts.persistMs)
    this.scheduleFlush()
  }

  /** A disk failure is logged by the database (at most once a minute); anything else here. */
  private logFailure(err: unknown, msg: string): void {
    if (!this.database.writeFailure) this.log.error({ err }, msg)
  }

  private scheduleFlush(): void {
    if (this.stopped) return
    this.flushTimer = setTimeout(() => {
      this.flush()
        .catch((err) => this.logFailure(err, 'stats flush failed; will retry'))
        .finally(() => this.scheduleFlush())
    }, this.opts.flushMs)
  }

  /** Stops the timers and writes everything pending into the table and the repo. */
  async stop(): Promise<FlushResult> {
    this.stopped = true
    clearInterval(this.persistTimer)
    clearTimeout(this.flushTimer)
    await this.flushing?.catch(() => undefined)
    return this.flush()
  }
}

/**
 * Marks every counter's record as missing, so the next flush writes them all: after the repo was
 * rebuilt without its stats records (a new DID). Returns how many.
 */
export const rewriteAllStats = (database: Database): number =>
  Number(
    database.db.prepare('UPDATE stats_counter SET record_version = 0').run()
      .changes,
  )

const toRecord = (row: CounterRow) => {
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
