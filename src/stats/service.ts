import type { Database } from '../db.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import type { RepoWriter } from '../repo/writer.ts'
import type { Baseline } from './baseline.ts'
import type { StatsView } from './counter-row.ts'
import { CounterStore } from './counter-store.ts'
import { ClientHasher } from './hll.ts'
import { CountJournal } from './journal.ts'
import type { ExportPosition, ExportRow } from './day-export.ts'
import { History, type TrendingCursor, type TrendingRow } from './history.ts'
import { dayOf, type HistoryDay } from './days.ts'
import {
  StatsMaintenance,
  type ImportResult,
  type ResetResult,
} from './maintenance.ts'
import { StatsPublisher, type FlushResult } from './publisher.ts'
import { StatsQueries } from './queries.ts'
import { RefCounts, type RefKind, type RefView } from './refs.ts'
import { statsKeyProblem } from './rkey.ts'
import { TopPairs } from './top-pairs.ts'

export type { FlushResult, ImportResult, ResetResult, StatsView }

export type StatsOptions = {
  persistMs: number
  flushMs: number
  /** HOLD_STATS_HISTORY_DAYS; 0 or absent: no per-day counts. */
  historyDays?: number
  /** The key client addresses are hashed under for unique-client counts. */
  clientKey?: Buffer
  /**
   * The count journal's file (src/stats/journal.ts); without one, counts go into the table
   * every `persistMs`.
   */
  journalPath?: string
}

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
  /** Counts per tag and per manifest (HOLD_COUNT_SOURCE=manifest). */
  private readonly refs: RefCounts
  /** Per-day counts; undefined with HOLD_STATS_HISTORY_DAYS=0. */
  readonly history: History | undefined
  private readonly opts: StatsOptions

  constructor(
    database: Database,
    writer: RepoWriter,
    log: Logger,
    opts: StatsOptions,
  ) {
    this.opts = opts
    this.topPairs = new TopPairs(database)
    const days = opts.historyDays ?? 0
    this.history =
      days > 0 && opts.clientKey ? new History(database, days, log) : undefined
    this.refs = new RefCounts(database)
    this.counters = new CounterStore(database, this.topPairs, log, {
      history: this.history,
      clients:
        this.history && opts.clientKey
          ? new ClientHasher(opts.clientKey)
          : undefined,
      refs: this.refs,
      journal: opts.journalPath
        ? new CountJournal(opts.journalPath)
        : undefined,
    })
    this.publisher = new StatsPublisher(database, writer, this.counters, log)
    // Each stats record under its own pair's key: the record index relies on it.
    writer.keyRule(ids.HoldStats, statsKeyProblem)
    const parts = {
      counters: this.counters,
      top: this.topPairs,
      publisher: this.publisher,
      history: this.history,
      refs: this.refs,
    }
    this.queries = new StatsQueries(database, parts)
    this.maintenance = new StatsMaintenance(database, parts, log)
    this.counters.recover()
  }

  start(): void {
    this.counters.start(this.opts.persistMs)
    this.publisher.start(this.opts.flushMs)
    this.history?.start()
  }

  /** Stops the timers and writes everything pending into the table and the repo. */
  async stop(): Promise<FlushResult> {
    this.history?.stop()
    this.counters.stop()
    try {
      return await this.publisher.stop()
    } finally {
      // What the table could not take stays in the journal for the next start.
      await this.counters.close()
    }
  }

  countPull(
    did: string,
    repository: string,
    now?: number,
    client?: string,
  ): void {
    this.counters.count('pull', did, repository, now, client)
  }

  countPush(did: string, repository: string, now?: number): void {
    this.counters.count('push', did, repository, now)
  }

  /** Moves pending deltas into the counter table, in one transaction. */
  persist(): number {
    return this.counters.persist()
  }

  /**
   * Writes every counter whose record is behind into the repo; `paced` rests between commits
   * so requests keep their turns (StatsPublisher.flush).
   */
  flush(opts: { paced?: boolean } = {}): Promise<FlushResult> {
    return this.publisher.flush(opts)
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

  /**
   * A pair's days from `since` to `until` (UTC day numbers), today's counts included; undefined
   * when no history is kept.
   */
  historyOf(
    did: string,
    repository: string,
    since: number,
    until: number,
  ): HistoryDay[] | undefined {
    if (!this.history) return undefined
    this.counters.persistIfWritable()
    return this.history.range(did, repository, since, until)
  }

  /** One more pull or push of a tag or manifest digest (the pair's own is counted apart). */
  countRef(
    op: 'pull' | 'push',
    did: string,
    repository: string,
    kind: RefKind,
    ref: string,
  ): void {
    this.refs.count(op, did, repository, kind, ref)
  }

  /** A tag's or manifest's counts. */
  refStats(
    did: string,
    repository: string,
    kind: RefKind,
    ref: string,
  ): RefView {
    this.counters.persistIfWritable()
    return this.refs.get(did, repository, kind, ref)
  }

  /** A repository's tags with their counts, by tag, after `after`. */
  tagStats(
    did: string,
    repository: string,
    limit: number,
    after: string,
  ): RefView[] {
    this.counters.persistIfWritable()
    return this.refs.tags(did, repository, limit, after)
  }

  /** Every pair's days from `since` on, a page; undefined when no history is kept. */
  exportHistory(
    since: number,
    limit: number,
    after?: ExportPosition,
  ): { rows: ExportRow[]; more: boolean } | undefined {
    if (!this.history) return undefined
    this.counters.persistIfWritable()
    return this.history.exportRows(since, limit, after)
  }

  /**
   * The hold's totals per day and the given pairs' pulls per day, for the `days` days up to
   * today (the status page's sparklines); undefined when no history is kept.
   */
  recent(
    days: number,
    pairs: { did: string; repository: string }[],
    now = Date.now(),
  ): { daily: HistoryDay[]; pulls: number[][] } | undefined {
    if (!this.history) return undefined
    this.counters.persistIfWritable()
    const until = dayOf(now)
    const since = until - days + 1
    return {
      daily: this.history.dailyTotals(since, until),
      pulls: pairs.map((p) =>
        this.history!.range(p.did, p.repository, since, until).map(
          (d) => d.pulls,
        ),
      ),
    }
  }

  /** The most pulled pairs of the last `days` days; undefined when no history is kept. */
  async trending(
    days: number,
    limit: number,
    after?: TrendingCursor,
  ): Promise<TrendingRow[] | undefined> {
    if (!this.history) return undefined
    await this.history.ready
    this.counters.persistIfWritable()
    return this.history.trending(days, limit, after)
  }

  summary(): ReturnType<StatsQueries['summary']> {
    return this.queries.summary()
  }

  importBaselines(rows: Baseline[], now?: number): ImportResult {
    return this.maintenance.importBaselines(rows, now)
  }

  /**
   * io.atcr.hold.setStats: the pair shows these counts from now on, through its baseline (the
   * value less what the hold has counted itself, pending counts included), so counts taken
   * later add on top. A count not given keeps its baseline; a timestamp given replaces the
   * baseline's (what is shown is the later of it and the hold's own). Synchronous: nothing is
   * counted between the read and the write.
   */
  setStats(
    set: {
      did: string
      repository: string
      pullCount?: number
      pushCount?: number
      lastPull?: string
      lastPush?: string
    },
    now?: number,
  ): ImportResult {
    const { did, repository } = set
    const shown = this.queries.get(did, repository)
    const base = this.maintenance.baselineOf(did, repository)
    const pullCount =
      set.pullCount === undefined
        ? base.pullCount
        : set.pullCount - (shown.pullCount - base.pullCount)
    const pushCount =
      set.pushCount === undefined
        ? base.pushCount
        : set.pushCount - (shown.pushCount - base.pushCount)
    const lastPull = set.lastPull ?? base.lastPull
    const lastPush = set.lastPush ?? base.lastPush
    return this.maintenance.importBaselines(
      [
        {
          did,
          repository,
          pullCount,
          pushCount,
          ...(lastPull ? { lastPull } : {}),
          ...(lastPush ? { lastPush } : {}),
        },
      ],
      now,
    )
  }

  reset(did: string, repository?: string): Promise<ResetResult> {
    return this.maintenance.reset(did, repository)
  }
}
