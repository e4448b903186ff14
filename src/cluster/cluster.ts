import { createHmac } from 'node:crypto'
import type { Redis } from 'ioredis'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { ClusterConfig, HoldRole } from '../config.ts'
import type { Database } from '../db.ts'
import type { Logger } from '../logger.ts'
import { FrontendStats } from '../stats/frontend-stats.ts'
import type { StatsService } from '../stats/service.ts'
import { StreamConsumer } from '../stats/stream-consumer.ts'
import { StreamSink } from '../stats/stream-sink.ts'
import type { CrewIndex } from '../auth/crew.ts'
import type { LayerIndex } from '../layers/layer-index.ts'
import type { BlobVisibility } from '../layers/visibility.ts'
import type { TierConfig } from '../quota/tiers.ts'
import type { RepoWriter } from '../repo/writer.ts'
import {
  PolicyMirror,
  PolicyPublisher,
  releaseQuota,
  reserveQuota,
  type LayerChanges,
  type Reservation,
} from './policy.ts'
import { KnownPairs } from './known-pairs.ts'
import { clusterKeys, connectRedis, type ClusterKeys } from './redis.ts'

/** What the writer publishes its access policy from. */
export type PolicySources = {
  crew: CrewIndex
  visibility: BlobVisibility
  layerIndex: LayerIndex
  layers: LayerChanges
  writer: RepoWriter
  tiers: TierConfig | undefined
}

/** How long a stopping frontend tries to hand its last counts to Redis. */
const STOP_SEND_MS = 5000
/** How often a frontend on Fly reads which machine the writer is. */
const WRITER_REFRESH_MS = 5000

/**
 * A hold that is one of several (HOLD_ROLE=writer or frontend): its Redis connections, and the
 * parts the role adds. A frontend sends its counts to the stream (StreamSink) and answers stats
 * from the writer's published view (FrontendStats); the writer applies the stream
 * (StreamConsumer) and, on Fly, says which machine it is so frontends can replay calls on it.
 */
export class HoldCluster {
  readonly role: Exclude<HoldRole, 'all'>
  readonly cfg: ClusterConfig
  readonly keys: ClusterKeys
  readonly redis: Redis
  readonly sink: StreamSink | undefined
  readonly frontendStats: FrontendStats | undefined
  readonly consumer: StreamConsumer | undefined
  /** Frontend: the writer's crew, captain, private blobs and tiers, followed through Redis. */
  readonly policy: PolicyMirror | undefined
  /** Frontend: which pairs the writer's table has (HOLD_NEW_PAIRS_PER_HOUR). */
  readonly knownPairs: KnownPairs | undefined
  private readonly publisher: PolicyPublisher | undefined
  private readonly reader: Redis | undefined
  private readonly sub: Redis | undefined
  private readonly reservationMs: number
  private readonly stats: StatsService
  private readonly log: Logger
  private writerMachine: string | undefined
  private writerTimer: NodeJS.Timeout | undefined

  constructor(opts: {
    cfg: ClusterConfig
    stats: StatsService
    database: Database
    log: Logger
    registry: Registry
    policy: PolicySources
    /** HOLD_UPLOAD_TTL_HOURS: how long an upload's quota reservation lasts at most. */
    reservationMs: number
  }) {
    const { cfg, stats, database, log } = opts
    this.role = cfg.role as Exclude<HoldRole, 'all'>
    this.cfg = cfg
    this.reservationMs = Math.round(opts.reservationMs)
    this.stats = stats
    this.log = log
    this.keys = clusterKeys(cfg.redisPrefix)
    this.redis = connectRedis(cfg, `atcr-hold-${this.role}`)
    if (this.role === 'frontend') {
      this.sink = new StreamSink({
        redis: this.redis,
        keys: this.keys,
        counters: stats.counters,
        database,
        log,
        bufferPairs: cfg.bufferPairs,
      })
      stats.counters.sendTo(this.sink)
      this.frontendStats = new FrontendStats(this.redis, this.keys, this.sink)
      this.knownPairs = new KnownPairs(this.redis, this.keys)
      this.sub = connectRedis(cfg, 'atcr-hold-frontend-policy', {
        blocking: true,
      })
      this.policy = new PolicyMirror({
        redis: this.redis,
        sub: this.sub,
        keys: this.keys,
        log,
      })
    } else {
      const p = opts.policy
      this.publisher = new PolicyPublisher({
        redis: this.redis,
        keys: this.keys,
        crew: p.crew,
        privateHex: () => p.visibility.hexes(),
        tiers: p.tiers,
        usage: (did) => p.layerIndex.usage(did).totalSize,
        writer: p.writer,
        layers: p.layers,
        log,
      })
      this.reader = connectRedis(cfg, 'atcr-hold-writer-reader', {
        blocking: true,
      })
      this.consumer = new StreamConsumer({
        redis: this.redis,
        reader: this.reader,
        keys: this.keys,
        stats,
        database,
        log,
      })
    }
    this.meter(opts.registry)
  }

  private meter(registry: Registry): void {
    const registers = [registry]
    const sink = this.sink
    const consumer = this.consumer
    const up = new Gauge({
      name: 'hold_redis_up',
      help: 'Whether this process reaches Redis now (HOLD_REDIS_URL)',
      registers,
    })
    up.set(0)
    const policy = this.policy
    if (policy) {
      new Gauge({
        name: 'hold_policy_current',
        help: "Whether this frontend's copy of the writer's access policy is current (1) or missing or out of date (0)",
        registers,
        collect() {
          this.set(policy.isCurrent ? 1 : 0)
        },
      })
    }
    this.redis.on('ready', () => up.set(1))
    this.redis.on('end', () => up.set(0))
    this.redis.on('close', () => up.set(0))
    if (sink) {
      new Gauge({
        name: 'hold_stats_buffered_pairs',
        help: 'Pairs whose counts wait in memory to be appended to Redis (bounded by HOLD_REDIS_BUFFER_PAIRS)',
        registers,
        collect() {
          this.set(sink.bufferedPairs)
        },
      })
      new Counter({
        name: 'hold_stats_spilled_total',
        help: 'Counts spilled into the local counter table because Redis was down and the buffer full',
        registers,
        collect() {
          this.reset()
          this.inc(sink.totals.spilledCounts)
        },
      })
      new Counter({
        name: 'hold_stats_stream_appends_total',
        help: 'Count entries appended to the Redis stream, by result',
        labelNames: ['result'],
        registers,
        collect() {
          this.reset()
          this.inc({ result: 'ok' }, sink.totals.entries)
          this.inc({ result: 'failed' }, sink.totals.failedAppends)
        },
      })
    }
    if (consumer) {
      new Counter({
        name: 'hold_stats_stream_entries_total',
        help: 'Count entries read from the Redis stream, by what the writer did with them',
        labelNames: ['result'],
        registers,
        collect() {
          this.reset()
          this.inc({ result: 'applied' }, consumer.totals.applied)
          this.inc({ result: 'skipped' }, consumer.totals.skipped)
          this.inc({ result: 'malformed' }, consumer.totals.malformed)
        },
      })
    }
  }

  /** Frontend: counting into Redis. Writer: applying the stream, and saying where it is. */
  start(persistMs: number): void {
    if (this.sink) {
      this.stats.counters.start(persistMs)
      this.sink.start(persistMs)
      if (this.cfg.writer?.via === 'fly-replay') {
        const refresh = () => {
          this.redis.get(this.keys.writer).then(
            (id) => (this.writerMachine = id ?? undefined),
            () => undefined,
          )
        }
        refresh()
        this.writerTimer = setInterval(refresh, WRITER_REFRESH_MS)
        this.writerTimer.unref()
      }
    }
    if (this.consumer) {
      this.publisher?.start()
      this.consumer.start()
      if (this.cfg.flyMachineId) {
        const id = this.cfg.flyMachineId
        const announce = () =>
          this.redis.set(this.keys.writer, id).catch(() => undefined)
        void announce()
        this.writerTimer = setInterval(announce, WRITER_REFRESH_MS)
        this.writerTimer.unref()
      }
    }
  }

  /**
   * Frontend: starts following the writer's access policy and waits up to waitMs for the
   * first copy (a frontend without one answers 503 to what needs it).
   */
  async loadPolicy(waitMs: number): Promise<void> {
    await this.policy?.start(waitMs)
  }

  /** Reserves quota for an upload, on any machine of the cluster (see reserveQuota). */
  reserve(
    did: string,
    hex: string,
    size: number,
    limit: number,
  ): Promise<Reservation> {
    return reserveQuota(this.redis, this.keys, {
      did,
      hex,
      size,
      limit,
      ttlMs: this.reservationMs,
    })
  }

  release(did: string, hex: string): void {
    releaseQuota(this.redis, this.keys, did, hex)
  }

  /** The writer's Fly machine, as it last said (undefined until it has). */
  get writerMachineId(): string | undefined {
    return this.writerMachine
  }

  /** Stops what start started; a frontend hands what it counted to Redis first. */
  async stop(): Promise<void> {
    clearInterval(this.writerTimer)
    this.policy?.stop()
    await this.publisher?.stop()
    if (this.sink) {
      this.stats.counters.stop()
      this.stats.counters.persist()
      await this.sink.stop(STOP_SEND_MS)
    }
    await this.consumer?.stop()
  }

  close(): void {
    this.redis.disconnect()
    this.reader?.disconnect()
    this.sub?.disconnect()
    this.log.debug('Redis connections closed')
  }
}

/**
 * The key blob URLs are signed with on every machine of a cluster, derived from the one
 * signing key they share (a single hold keeps a random one in its data dir instead).
 */
export const clusterUrlSecret = (signingKeyHex: string): Buffer =>
  createHmac('sha256', Buffer.from(signingKeyHex, 'hex'))
    .update('atcr-hold blob URLs')
    .digest()

/**
 * The key client addresses are hashed under for unique-client sketches on every machine of a
 * cluster, derived from the signing key they share (a single hold keeps a random one).
 */
export const clusterClientKey = (signingKeyHex: string): Buffer =>
  createHmac('sha256', Buffer.from(signingKeyHex, 'hex'))
    .update('atcr-hold client addresses')
    .digest()
