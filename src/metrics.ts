import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
} from 'prom-client'
import type { ServerConfig } from './config.ts'
import type { Crawlers } from './firehose/crawlers.ts'
import type { SubscribeRepos } from './firehose/subscribe-repos.ts'
import type { RecordReader } from './repo/reader.ts'
import type { RepoWriter } from './repo/writer.ts'
import type { CountLimiter, TokenBuckets } from './stats/limiter.ts'
import type { StatsService } from './stats/service.ts'

/** From a cached read to a long upload or download: requests and blob store operations. */
export const SECONDS_BUCKETS = [
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120,
]

export type MetricsSources = {
  cfg: ServerConfig
  stats: StatsService
  writer: RepoWriter
  reader: RecordReader
  limiter: CountLimiter
  newPairs: TokenBuckets
  crewJoins: TokenBuckets
  firehose: SubscribeRepos
  crawlers: Crawlers
}

/**
 * The hold's Prometheus metrics, in a registry of its own: several holds in one process (tests)
 * must not share counters, so nothing goes into prom-client's global registry. Values that
 * already live elsewhere (counted totals, pending deltas, records) are read at scrape time.
 */
export class HoldMetrics {
  readonly registry = new Registry()
  readonly requests: Counter<'route' | 'method' | 'status'>
  readonly requestDuration: Histogram<'route'>
  /** Requests received and not yet answered in full (a plain number: it changes twice a request). */
  requestsInFlight = 0
  /**
   * Counts not taken because of a per-client limit. It follows `ctx.limiter.dropped` (the
   * HOLD_STATS_MAX_PER_MINUTE limiter) and `ctx.newPairs.refused` (HOLD_NEW_PAIRS_PER_HOUR)
   * by itself at every scrape; code that drops counts some other way calls
   * `ctx.metrics.droppedCounts.inc()` once per count it does not take.
   */
  readonly droppedCounts: Counter
  /** Admin requests with a wrong user or password. */
  readonly adminAuthFailures: Counter
  /** Admin requests refused unchecked because their client is locked out. */
  readonly adminLocked: Counter

  constructor(src: MetricsSources) {
    const { cfg, stats, writer, reader, limiter, newPairs, crewJoins } = src
    const { firehose, crawlers } = src
    const registers = [this.registry]

    new Gauge({
      name: 'hold_info',
      help: 'Always 1; the labels name this hold',
      labelNames: ['did', 'version'],
      registers,
    }).set({ did: cfg.did, version: cfg.version }, 1)

    this.requests = new Counter({
      name: 'hold_http_requests_total',
      help: 'HTTP requests answered, by route (the NSID for XRPC), method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    })
    this.requestDuration = new Histogram({
      name: 'hold_http_request_duration_seconds',
      help: 'Time to answer, to the last byte for blob and CAR downloads, by route',
      labelNames: ['route'],
      buckets: SECONDS_BUCKETS,
      registers,
    })
    const inFlight = () => this.requestsInFlight
    new Gauge({
      name: 'hold_http_requests_in_flight',
      help: 'Requests received and not yet answered in full',
      registers,
      collect() {
        this.set(inFlight())
      },
    })

    // Monotonic in the process; read from StatsService at scrape time.
    followingBy(
      registers,
      'hold_stats_counted_total',
      'Pulls and pushes counted since the process started',
      'kind',
      () => ({ pull: stats.totals.pulls, push: stats.totals.pushes }),
    )
    this.droppedCounts = following(
      registers,
      'hold_stats_dropped_total',
      'Counts not taken because a client passed a per-client limit (HOLD_STATS_MAX_PER_MINUTE, HOLD_NEW_PAIRS_PER_HOUR)',
      () => limiter.dropped + newPairs.refused,
    )
    following(
      registers,
      'hold_stats_new_pairs_dropped_total',
      'First counts of new (DID, repository) pairs not taken because a client passed HOLD_NEW_PAIRS_PER_HOUR',
      () => newPairs.refused,
    )
    following(
      registers,
      'hold_crew_joins_refused_total',
      'requestCrew joins refused because a caller or client address passed HOLD_CREW_JOINS_PER_HOUR',
      () => crewJoins.refused,
    )
    following(
      registers,
      'hold_stats_unrecorded_total',
      'Counts dropped because the counter table could not be written and the pairs kept in memory were at their bound',
      () => stats.unrecorded,
    )
    new Gauge({
      name: 'hold_stats_pending_pairs',
      help: '(DID, repository) pairs counted in memory and not yet in the counter table',
      registers,
      collect() {
        this.set(stats.pendingPairs)
      },
    })
    new Gauge({
      name: 'hold_stats_dirty_counters',
      help: 'Counters in the table whose io.atcr.hold.stats record is behind',
      registers,
      collect() {
        this.set(stats.dirtyCounters())
      },
    })
    const flushDuration = new Histogram({
      name: 'hold_stats_flush_duration_seconds',
      help: 'Duration of stats flushes that wrote at least one record, rests between commits included',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    const flushSize = new Histogram({
      name: 'hold_stats_flush_records',
      help: 'Records written by stats flushes that wrote at least one',
      buckets: [1, 10, 50, 200, 1000, 5000, 20000],
      registers,
    })
    stats.onFlush(({ records, ms }) => {
      if (records === 0) return
      flushDuration.observe(ms / 1000)
      flushSize.observe(records)
    })

    this.adminAuthFailures = new Counter({
      name: 'hold_admin_auth_failures_total',
      help: 'Admin API requests with a wrong user or password',
      registers,
    })
    this.adminLocked = new Counter({
      name: 'hold_admin_locked_total',
      help: 'Admin API requests refused because their client is locked out after wrong passwords',
      registers,
    })

    const commits = new Counter({
      name: 'hold_repo_commits_total',
      help: 'Commits made to the hold repo since the process started',
      registers,
    })
    const ops = new Counter({
      name: 'hold_repo_ops_total',
      help: 'Record operations committed, by collection and action',
      labelNames: ['collection', 'action'],
      registers,
    })
    writer.onCommit((evt) => {
      commits.inc()
      for (const op of evt.ops) {
        ops.inc({ collection: op.collection, action: op.action })
      }
    })
    new Gauge({
      name: 'hold_repo_records',
      help: 'Records in the hold repo, by collection',
      labelNames: ['collection'],
      registers,
      collect() {
        this.reset()
        for (const [collection, n] of Object.entries(reader.counts())) {
          this.set({ collection }, n)
        }
      },
    })
    this.firehoseMetrics(writer, firehose, crawlers)
  }

  private firehoseMetrics(
    writer: RepoWriter,
    firehose: SubscribeRepos,
    crawlers: Crawlers,
  ): void {
    const registers = [this.registry]
    const { sequencer } = writer
    new Gauge({
      name: 'hold_firehose_seq',
      help: 'The last seq of the firehose (subscribeRepos)',
      registers,
      collect() {
        this.set(sequencer.current())
      },
    })
    followingBy(
      registers,
      'hold_firehose_events_total',
      'Firehose events written since the process started, by type',
      'type',
      () => sequencer.written,
    )
    new Gauge({
      name: 'hold_firehose_subscribers',
      help: 'subscribeRepos connections open',
      registers,
      collect() {
        this.set(firehose.stats().subscribers)
      },
    })
    following(
      registers,
      'hold_firehose_frames_sent_total',
      'Frames sent to subscribeRepos subscribers',
      () => firehose.stats().framesSent,
    )
    following(
      registers,
      'hold_firehose_frames_dropped_total',
      'Frames that subscribers cut for being too slow or silent had still to receive',
      () => firehose.stats().framesDropped,
    )
    followingBy(
      registers,
      'hold_firehose_subscribers_cut_total',
      'subscribeRepos subscribers cut, by reason (ConsumerTooSlow, NoPong)',
      'reason',
      () => firehose.stats().cut,
    )
    new Counter({
      name: 'hold_crawl_requests_total',
      help: 'requestCrawl answers from the relays of HOLD_CRAWLERS, by relay and result (ok, refused, failed)',
      labelNames: ['relay', 'result'],
      registers,
    })
    const crawlRequests = this.registry.getSingleMetric(
      'hold_crawl_requests_total',
    ) as Counter<'relay' | 'result'>
    crawlers.onAnswer((relay, answer) =>
      crawlRequests.inc({
        relay,
        result: answer.ok
          ? 'ok'
          : answer.status === undefined
            ? 'failed'
            : 'refused',
      }),
    )
  }

  get contentType(): string {
    return this.registry.contentType
  }

  /** The hold's metrics and the process's, in Prometheus text format. */
  async text(): Promise<string> {
    return (await this.registry.metrics()) + (await processRegistry().metrics())
  }
}

/**
 * A counter that follows a number kept elsewhere, which only grows in the process: at every
 * scrape it adds what the number grew by. `inc()` on it adds on top.
 */
const following = (
  registers: Registry[],
  name: string,
  help: string,
  read: () => number,
): Counter => {
  let seen = 0
  return new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read()
      this.inc(now - seen)
      seen = now
    },
  })
}

/** `following` for numbers kept by label value (`label`), as in `{ pull: 3, push: 1 }`. */
const followingBy = (
  registers: Registry[],
  name: string,
  help: string,
  label: string,
  read: () => Record<string, number>,
): void => {
  const seen: Record<string, number> = {}
  new Counter({
    name,
    help,
    labelNames: [label],
    registers,
    collect() {
      for (const [value, now] of Object.entries(read())) {
        this.inc({ [label]: value }, now - (seen[value] ?? 0))
        seen[value] = now
      }
    },
  })
}

let processMetrics: Registry | undefined

/**
 * Process metrics (CPU, memory, event loop, GC) belong to the process, not to one hold, and
 * collecting them starts monitors that are never stopped: one registry per process.
 */
const processRegistry = (): Registry => {
  if (!processMetrics) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
  }
  return processMetrics
}
