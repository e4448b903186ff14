import { setTimeout as sleep } from 'node:timers/promises'
import { prepareAll, type Database, type Statements } from '../db.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import { MAX_OPS_PER_COMMIT, type RepoWriter } from '../repo/writer.ts'
import {
  DIRTY_COUNTER_SELECT,
  toRecord,
  type CounterRow,
} from './counter-row.ts'
import type { CounterStore } from './counter-store.ts'
import { statsRecordKey } from './rkey.ts'

export type FlushResult = { records: number; commits: number; ms: number }

/**
 * The longest a paced flush rests between two of its commits. A commit holds the event loop;
 * one turn of rest lets in only what is already at the socket, while a loaded client's backlog
 * keeps growing from commit to commit. Resting as long as the last commit took lets requests
 * catch up before the next one.
 */
const MAX_REST_MS = 250

const SQL = {
  dirty: `${DIRTY_COUNTER_SELECT}
    WHERE (d.did, d.repository) > (?, ?)
    ORDER BY d.did, d.repository LIMIT ?`,
  // A pair counted again since its row was read stays behind.
  mark: 'DELETE FROM stats_dirty WHERE did = ? AND repository = ? AND version = ?',
  dirtyCount: 'SELECT count(*) AS n FROM stats_dirty',
  rewrite: `INSERT OR REPLACE INTO stats_dirty (did, repository, version)
    SELECT did, repository, version FROM stats_counter WHERE did = ? AND repository = ?`,
}

/**
 * From the counter table to the repo: every `flushMs` the counters whose record is behind
 * (the pairs in `stats_dirty`) become `io.atcr.hold.stats` records through the repo's single
 * writer, at most 200 per commit, and each commit marks the rows it wrote in its own
 * transaction, so a crash can never leave a record and its mark apart. Deleting the records of
 * reset pairs goes the same way.
 */
export class StatsPublisher {
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<FlushResult> | undefined
  private stopped = false
  private readonly listeners: ((result: FlushResult) => void)[] = []
  /** Commits and records the flushes made since the process started. */
  readonly totals = { commits: 0, flushedRecords: 0 }
  private readonly sql: Statements<keyof typeof SQL>

  private readonly database: Database
  private readonly writer: RepoWriter
  private readonly counters: CounterStore
  private readonly log: Logger

  constructor(
    database: Database,
    writer: RepoWriter,
    counters: CounterStore,
    log: Logger,
  ) {
    this.database = database
    this.writer = writer
    this.counters = counters
    this.log = log
    this.sql = prepareAll(database.db, SQL)
  }

  /** Called after every flush that completes (metrics). */
  onFlush(listener: (result: FlushResult) => void): void {
    this.listeners.push(listener)
  }

  /** Counters whose record in the repo is behind the table. */
  dirtyCounters(): number {
    return (this.sql.dirtyCount.get() as { n: number }).n
  }

  /**
   * Writes every counter whose record is behind into the repo, at most 200 records per commit.
   * Each changed counter is visited once per flush, so sustained traffic cannot keep a flush
   * going forever. Concurrent calls share one flush. A `paced` flush (the background ones)
   * rests between its commits as long as the last commit took, so requests are never held for
   * more than about one commit, and it takes about twice as long; a stop ends the resting.
   */
  flush(opts: { paced?: boolean } = {}): Promise<FlushResult> {
    if (!this.flushing) {
      this.flushing = this.flushNow(opts.paced === true).finally(() => {
        this.flushing = undefined
      })
    }
    return this.flushing
  }

  private async flushNow(paced: boolean): Promise<FlushResult> {
    const started = performance.now()
    this.counters.persist()
    let after: [string, string] = ['', '']
    let records = 0
    let commits = 0
    let rest = 0
    for (;;) {
      // Cheap look first, so an idle flush never queues behind other writes.
      if (this.sql.dirty.all(after[0], after[1], 1).length === 0) break
      if (rest > 0 && !this.stopped) await sleep(rest)
      await this.database.walRoom()
      const commitStarted = performance.now()
      // The rows are read inside the writer's turn: a reset that deleted them before it
      // cannot see them written back.
      let rows: CounterRow[] = []
      const commit = await this.writer.putRecordsFrom(
        () => {
          rows = this.sql.dirty.all(
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
            this.sql.mark.run(row.did, row.repository, row.version)
          }
        },
      )
      if (rows.length === 0) break
      const last = rows[rows.length - 1]
      after = [last.did, last.repository]
      records += rows.length
      if (commit) commits++
      if (rows.length < MAX_OPS_PER_COMMIT) break
      if (paced) {
        rest = Math.min(performance.now() - commitStarted, MAX_REST_MS)
      }
    }
    const ms = performance.now() - started
    this.totals.commits += commits
    this.totals.flushedRecords += records
    if (records > 0) {
      this.log.debug({ records, commits, ms }, 'flushed stats')
    }
    for (const listener of this.listeners) {
      listener({ records, commits, ms })
    }
    return { records, commits, ms }
  }

  /**
   * Deletes the records of pairs whose counters are gone (a reset), at most 200 per commit.
   * A pair counted again before its delete commits is marked for rewriting in the same
   * transaction, so the next flush writes it back. Returns the records deleted and the commits.
   */
  async unpublish(
    pairs: { did: string; repository: string }[],
  ): Promise<{ records: number; commits: number }> {
    let records = 0
    let commits = 0
    for (let i = 0; i < pairs.length; i += MAX_OPS_PER_COMMIT) {
      const chunk = pairs.slice(i, i + MAX_OPS_PER_COMMIT)
      const paths = chunk.map((p) => ({
        collection: ids.HoldStats,
        rkey: statsRecordKey(p.did, p.repository),
      }))
      const existing = paths.filter(
        (p) => this.writer.records.cid(p.collection, p.rkey) !== undefined,
      ).length
      const commit = await this.writer.deleteRecords(paths, () => {
        for (const p of chunk) this.sql.rewrite.run(p.did, p.repository)
      })
      if (commit) {
        commits++
        records += existing
      }
    }
    return { records, commits }
  }

  /** Flushes every `flushMs`, each flush starting when the last has ended. */
  start(flushMs: number): void {
    const schedule = () => {
      if (this.stopped) return
      this.flushTimer = setTimeout(() => {
        this.flush({ paced: true })
          .catch((err) => {
            // A disk failure is logged by the database (at most once a minute).
            if (!this.database.writeFailure) {
              this.log.error({ err }, 'stats flush failed; will retry')
            }
          })
          .finally(schedule)
      }, flushMs)
    }
    schedule()
  }

  /** Stops the timer and writes everything the table has into the repo. */
  async stop(): Promise<FlushResult> {
    this.stopped = true
    clearTimeout(this.flushTimer)
    await this.flushing?.catch(() => undefined)
    return this.flush()
  }
}

/**
 * Marks every counter's record as missing, so the next flush writes them all: after the repo was
 * rebuilt without its stats records (a new DID, a repaired tree). Returns how many.
 */
export const rewriteAllStats = (database: Database): number =>
  Number(
    database.db
      .prepare(
        `INSERT OR REPLACE INTO stats_dirty (did, repository, version)
         SELECT did, repository, version FROM stats_counter`,
      )
      .run().changes,
  )
