import type { Database } from '../db.ts'
import type { Logger } from '../logger.ts'
import type { RepoWriter } from '../repo/writer.ts'
import type { Baseline } from './baseline.ts'
import type { StatsView } from './counter-row.ts'
import { CounterStore } from './counter-store.ts'
import {
  StatsMaintenance,
  type ImportResult,
  type ResetResult,
} from './maintenance.ts'
import { StatsPublisher, type FlushResult } from './publisher.ts'
import { StatsQueries } from './queries.ts'
import { TopPairs } from './top-pairs.ts'

export type { FlushResult, ImportResult, ResetResult, StatsView }

/**
 * Pull and push counts, the way the data goes: taken in memory and persisted to the counter
 * table (CounterStore), published from the table as `io.atcr.hold.stats` records through the
 * repo's single writer (StatsPublisher), answered from the table plus what is pending
 * (StatsQueries, with the most pulled pairs kept by TopPairs), and changed by the operator
 * (StatsMaintenance: baselines, resets). This class builds them, runs their timers, and is what
 * the rest of the hold calls.
 */
export class StatsService {
  /** The request path counts here (src/stats/counting.ts). */
  readonly counters: CounterStore
  private readonly publisher: StatsPublisher
  private readonly queries: StatsQueries
  private readonly maintenance: StatsMaintenance
  private readonly topPairs: TopPairs
  private readonly opts: { persistMs: number; flushMs: number }

  constructor(
    database: Database,
    writer: RepoWriter,
    log: Logger,
    opts: { persistMs: number; flushMs: number },
  ) {
    this.opts = opts
    this.topPairs = new TopPairs(database)
    this.counters = new CounterStore(database, this.topPairs, log)
    this.publisher = new StatsPublisher(database, writer, this.counters, log)
    const parts = {
      counters: this.counters,
      top: this.topPairs,
      publisher: this.publisher,
    }
    this.queries = new StatsQueries(database, parts)
    this.maintenance = new StatsMaintenance(database, parts, log)
  }

  start(): void {
    this.counters.start(this.opts.persistMs)
    this.publisher.start(this.opts.flushMs)
  }

  /** Stops the timers and writes everything pending into the table and the repo. */
  stop(): Promise<FlushResult> {
    this.counters.stop()
    return this.publisher.stop()
  }

  countPull(did: string, repository: string, now?: number): void {
    this.counters.count('pull', did, repository, now)
  }

  countPush(did: string, repository: string, now?: number): void {
    this.counters.count('push', did, repository, now)
  }

  /** Moves pending deltas into the counter table, in one transaction. */
  persist(): number {
    return this.counters.persist()
  }

  /** Writes every counter whose record is behind into the repo. */
  flush(): Promise<FlushResult> {
    return this.publisher.flush()
  }

  /** Called after every flush that completes (metrics). */
  onFlush(listener: (result: FlushResult) => void): void {
    this.publisher.onFlush(listener)
  }

  /** Counted, flushed and dropped since the process started (metrics, tests). */
  get totals(): {
    pulls: number
    pushes: number
    commits: number
    flushedRecords: number
  } {
    return { ...this.counters.totals, ...this.publisher.totals }
  }

  /** Counts dropped because the pairs kept in memory during a write failure were at their bound. */
  get unrecorded(): number {
    return this.counters.unrecorded
  }

  /** Pairs counted in memory and not yet in the counter table. */
  get pendingPairs(): number {
    return this.counters.pendingPairs
  }

  /** Counters whose record in the repo is behind the table. */
  dirtyCounters(): number {
    return this.publisher.dirtyCounters()
  }

  /** How many times the most pulled pairs were read from the whole table (tests). */
  get topReads(): number {
    return this.topPairs.reads
  }

  get(did: string, repository: string): StatsView {
    return this.queries.get(did, repository)
  }

  list(
    did: string,
    limit: number,
    after?: string,
  ): { stats: StatsView[]; cursor?: string } {
    return this.queries.list(did, limit, after)
  }

  top(limit: number): StatsView[] {
    return this.queries.top(limit)
  }

  overall(): { pairs: number; pulls: number; pushes: number } {
    return this.queries.overall()
  }

  summary(): ReturnType<StatsQueries['summary']> {
    return this.queries.summary()
  }

  importBaselines(rows: Baseline[], now?: number): ImportResult {
    return this.maintenance.importBaselines(rows, now)
  }

  reset(did: string, repository?: string): Promise<ResetResult> {
    return this.maintenance.reset(did, repository)
  }
}
