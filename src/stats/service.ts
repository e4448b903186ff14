import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import { MAX_OPS_PER_COMMIT, type RepoWriter } from '../repo/writer.ts'
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
}

/**
 * What the request path calls to count; StatsService in production, which never returns a
 * promise. A counter that returns one (the benchmark's model of the seed design) is awaited.
 */
export interface Counter {
  countPull(did: string, repository: string): void | Promise<void>
  countPush(did: string, repository: string): void | Promise<void>
}

export type FlushResult = { records: number; commits: number; ms: number }

const keyOf = (did: string, repository: string) => `${did} ${repository}`
const iso = (ms: number) => new Date(ms).toISOString()

/**
 * Pull and push counters. A count is a map update in memory (no I/O on the request path);
 * every `persistMs` the pending deltas go into the `stats_counter` table in one transaction
 * (the durability point); every `flushMs` changed counters become `io.atcr.hold.stats` records
 * through the repo's single writer, at most 200 per commit. Reads merge the table with what is
 * still pending, so a count is visible as soon as it is accepted.
 */
export class StatsService implements Counter {
  private pending = new Map<string, Delta>()
  private persistTimer: NodeJS.Timeout | undefined
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<FlushResult> | undefined
  private stopped = false
  private readonly upsertStmt: StatementSync
  private readonly getStmt: StatementSync
  private readonly listStmt: StatementSync
  private readonly dirtyStmt: StatementSync
  private readonly markStmt: StatementSync
  private readonly pendingCountStmt: StatementSync
  readonly totals = { pulls: 0, pushes: 0, commits: 0, flushedRecords: 0 }

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
    this.getStmt = db.prepare(
      'SELECT * FROM stats_counter WHERE did = ? AND repository = ?',
    )
    this.listStmt = db.prepare(
      'SELECT * FROM stats_counter WHERE did = ? AND repository > ? ORDER BY repository LIMIT ?',
    )
    this.dirtyStmt = db.prepare(`
      SELECT * FROM stats_counter
      WHERE version > record_version AND (did, repository) > (?, ?)
      ORDER BY did, repository LIMIT ?`)
    this.markStmt = db.prepare(
      'UPDATE stats_counter SET record_version = ? WHERE did = ? AND repository = ?',
    )
    this.pendingCountStmt = db.prepare(
      'SELECT count(*) AS n FROM stats_counter WHERE version > record_version',
    )
  }

  countPull(did: string, repository: string, now = Date.now()): void {
    const d = this.delta(did, repository, now)
    d.pulls++
    d.lastPull = now
    this.totals.pulls++
  }

  countPush(did: string, repository: string, now = Date.now()): void {
    const d = this.delta(did, repository, now)
    d.pushes++
    d.lastPush = now
    this.totals.pushes++
  }

  private delta(did: string, repository: string, now: number): Delta {
    const key = keyOf(did, repository)
    let d = this.pending.get(key)
    if (!d) {
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
    try {
      this.database.transaction(() => {
        for (const d of batch.values()) {
          const last = Math.max(d.lastPull, d.lastPush, d.first)
          this.upsertStmt.run(
            d.did,
            d.repository,
            d.pulls,
            d.pushes,
            d.lastPull ? iso(d.lastPull) : null,
            d.lastPush ? iso(d.lastPush) : null,
            iso(last),
          )
        }
      })
    } catch (err) {
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
      pullCount: (row?.pull_count ?? 0) + (d?.pulls ?? 0),
      pushCount: (row?.push_count ?? 0) + (d?.pushes ?? 0),
    }
    const lastPull = d?.lastPull ? iso(d.lastPull) : row?.last_pull
    const lastPush = d?.lastPush ? iso(d.lastPush) : row?.last_push
    if (lastPull) view.lastPull = lastPull
    if (lastPush) view.lastPush = lastPush
    return view
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
      const rows = this.dirtyStmt.all(
        after[0],
        after[1],
        MAX_OPS_PER_COMMIT,
      ) as CounterRow[]
      if (rows.length === 0) break
      const last = rows[rows.length - 1]
      after = [last.did, last.repository]
      const commit = await this.writer.putRecords(
        rows.map((row) => ({
          collection: ids.HoldStats,
          rkey: statsRecordKey(row.did, row.repository),
          record: toRecord(row),
        })),
        () => {
          for (const row of rows) {
            this.markStmt.run(row.version, row.did, row.repository)
          }
        },
      )
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
    return { records, commits, ms }
  }

  start(): void {
    this.persistTimer = setInterval(() => {
      try {
        this.persist()
      } catch (err) {
        this.log.error({ err }, 'persisting stats failed; will retry')
      }
    }, this.opts.persistMs)
    this.scheduleFlush()
  }

  private scheduleFlush(): void {
    if (this.stopped) return
    this.flushTimer = setTimeout(() => {
      this.flush()
        .catch((err) =>
          this.log.error({ err }, 'stats flush failed; will retry'),
        )
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

const toRecord = (row: CounterRow) => {
  const record: Record<string, string | number> = {
    $type: ids.HoldStats,
    did: row.did,
    ownerDid: row.did,
    repository: row.repository,
    pullCount: row.pull_count,
    pushCount: row.push_count,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
  if (row.last_pull) record.lastPull = row.last_pull
  if (row.last_push) record.lastPush = row.last_push
  return record
}
