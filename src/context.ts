import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Secp256k1Keypair } from '@atproto/crypto'
import { HoldAccess } from './auth/access.ts'
import { CrewIndex, type CrewSource } from './auth/crew.ts'
import { ServiceAuth } from './auth/service-auth.ts'
import { DiskBlobStore } from './blobs/disk-store.ts'
import { MeteredBlobStore, meterUploads } from './blobs/metered-store.ts'
import { checkBucket } from './blobs/s3/check.ts'
import type { S3ClientOptions } from './blobs/s3/client.ts'
import { S3BlobStore } from './blobs/s3-store.ts'
import { BlobUrlSigner } from './blobs/signed-url.ts'
import type { BlobStore } from './blobs/store.ts'
import { UploadGrants } from './blobs/upload-grants.ts'
import { LocalUploadSessions } from './blobs/upload-sessions.ts'
import { Uploads } from './blobs/uploads.ts'
import {
  DEFAULT_STATS_FLUSH_MS,
  type ServerConfig,
  type ServerSecrets,
} from './config.ts'
import { asDataDirError, DataDirLock } from './data-dir.ts'
import {
  clusterClientKey,
  clusterUrlSecret,
  HoldCluster,
} from './cluster/cluster.ts'
import { RedisUploadSessions } from './cluster/upload-sessions.ts'
import { Database } from './db.ts'
import {
  checkIdentity,
  didDocument,
  loadSigningKey,
  loadUrlSecret,
  type DidDocument,
} from './identity.ts'
import { LayerIndex } from './layers/layer-index.ts'
import { LayerService } from './layers/service.ts'
import { BlobVisibility, type PrivateBlobs } from './layers/visibility.ts'
import { ids, loadLexicons, type Lexicons } from './lexicons.ts'
import { createRootLogger, type Logger } from './logger.ts'
import { HoldMetrics } from './metrics.ts'
import { Crawlers, type CrawlersOptions } from './firehose/crawlers.ts'
import {
  SubscribeRepos,
  type SubscribeReposOptions,
} from './firehose/subscribe-repos.ts'
import {
  CarSpooler,
  DEFAULT_EXPORT_LIMITS,
  type ExportLimits,
} from './repo/car-export.ts'
import { Quotas } from './quota/quotas.ts'
import { loadTiers } from './quota/tiers.ts'
import { RecordReader } from './repo/reader.ts'
import { RecordIndex } from './repo/record-index.ts'
import { SqlRepoStorage } from './repo/storage.ts'
import { RepoWriter } from './repo/writer.ts'
import { CLIENT_KEY_FILE, loadClientKey } from './stats/hll.ts'
import { COUNT_JOURNAL_FILE } from './stats/journal.ts'
import { CountLimiter, TokenBuckets } from './stats/limiter.ts'
import { rewriteAllStats } from './stats/publisher.ts'
import { StatsService, type FlushResult } from './stats/service.ts'

export type AppContextOverrides = Partial<{
  logger: Logger
  /** Limits of getRepo exports (tests shorten them). */
  exportLimits: Partial<ExportLimits>
  /** subscribeRepos' limits and timers (tests shorten them). */
  firehose: Partial<SubscribeReposOptions>
  /** requestCrawl's timing (tests shorten it). */
  crawlers: Partial<CrawlersOptions>
  /** S3 client settings (tests turn retries off). */
  s3Client: S3ClientOptions
}>

/** The hold's named loggers, children of one root, made once. */
export type Loggers = {
  server: Logger
  http: Logger
  admin: Logger
  repo: Logger
  stats: Logger
  db: Logger
  identity: Logger
  firehose: Logger
  uploads: Logger
}

const namedLoggers = (root: Logger): Loggers => {
  const named = (name: string) => root.child({ name: `hold:${name}` })
  return {
    server: named('server'),
    http: named('http'),
    admin: named('admin'),
    repo: named('repo'),
    stats: named('stats'),
    db: named('db'),
    identity: named('identity'),
    firehose: named('firehose'),
    uploads: named('uploads'),
  }
}

type AppContextFields = {
  cfg: ServerConfig
  secrets: ServerSecrets
  logger: Logger
  log: Loggers
  db: Database
  keypair: Secp256k1Keypair
  didDoc: DidDocument
  lexicons: Lexicons
  storage: SqlRepoStorage
  reader: RecordReader
  writer: RepoWriter
  blobs: BlobStore
  uploads: Uploads
  urlSigner: BlobUrlSigner
  uploadGrants: UploadGrants
  stats: StatsService
  limiter: CountLimiter
  newPairs: TokenBuckets
  crewJoins: TokenBuckets
  crew: CrewIndex
  policy: CrewSource
  serviceAuth: ServiceAuth
  access: HoldAccess
  metrics: HoldMetrics
  exportLimits: ExportLimits
  firehose: SubscribeRepos
  crawlers: Crawlers
  carSpooler: CarSpooler
  layerIndex: LayerIndex
  visibility: PrivateBlobs
  layers: LayerService
  quotas: Quotas
  cluster: HoldCluster | undefined
}

/**
 * Everything a handler needs, built once and passed explicitly; and the owner of what the hold
 * holds open. Each resource is registered for teardown the moment it is acquired, so
 * `destroy()` (or a failed start) releases them in reverse: the stats timers stop and every
 * count is written, the writer's queue drains, the database closes (its checkpoint worker
 * with it), and the data dir's lock goes last.
 */
export class AppContext {
  readonly cfg: ServerConfig
  readonly secrets: ServerSecrets
  /** The root logger; named children in `log`. */
  readonly logger: Logger
  readonly log: Loggers
  readonly db: Database
  readonly keypair: Secp256k1Keypair
  readonly didDoc: DidDocument
  readonly lexicons: Lexicons
  readonly storage: SqlRepoStorage
  readonly reader: RecordReader
  readonly writer: RepoWriter
  /** HOLD_STORAGE: the data dir or an S3 bucket, metered. */
  readonly blobs: BlobStore
  /** ATCR's multipart upload procedures over `blobs`. */
  readonly uploads: Uploads
  readonly urlSigner: BlobUrlSigner
  /** Which upload URLs have been used (each stores and counts once). */
  readonly uploadGrants: UploadGrants
  readonly stats: StatsService
  /** HOLD_STATS_MAX_PER_MINUTE, applied before a count is taken. */
  readonly limiter: CountLimiter
  /** HOLD_NEW_PAIRS_PER_HOUR: first counts of pairs from unrelated clients. */
  readonly newPairs: TokenBuckets
  /** HOLD_CREW_JOINS_PER_HOUR: requestCrew joins per caller and per client address. */
  readonly crewJoins: TokenBuckets
  /** The captain and crew records of this process's repo (the writer's routes use them). */
  readonly crew: CrewIndex
  /**
   * The captain and crew access and counting decide over: `crew`, or on a frontend the
   * writer's as it publishes them in Redis.
   */
  readonly policy: CrewSource
  readonly serviceAuth: ServiceAuth
  readonly access: HoldAccess
  /** Prometheus metrics of this hold (GET /metrics). */
  readonly metrics: HoldMetrics
  readonly exportLimits: ExportLimits
  /** com.atproto.sync.subscribeRepos, fed by the writer's sequencer. */
  readonly firehose: SubscribeRepos
  /** The relays of HOLD_CRAWLERS, asked to crawl the hold. */
  readonly crawlers: Crawlers
  /** Writes getRepo exports in a worker thread, off the event loop. */
  readonly carSpooler: CarSpooler
  /** What notifyManifest recorded: layer records, per-user usage, manifests' blobs. */
  readonly layerIndex: LayerIndex
  /** Blobs only private manifests name (getBlob's check); on a frontend, the writer's. */
  readonly visibility: PrivateBlobs
  readonly layers: LayerService
  /** HOLD_QUOTAS_FILE's tiers and each user's limit. */
  readonly quotas: Quotas
  /** HOLD_ROLE=writer or frontend: Redis, and what the role adds; undefined for `all`. */
  readonly cluster: HoldCluster | undefined

  private readonly resources: AsyncDisposableStack
  private started = false
  private destroying: Promise<FlushResult | undefined> | undefined
  private lastFlush: FlushResult | undefined

  private constructor(f: AppContextFields, resources: AsyncDisposableStack) {
    this.cfg = f.cfg
    this.secrets = f.secrets
    this.logger = f.logger
    this.log = f.log
    this.db = f.db
    this.keypair = f.keypair
    this.didDoc = f.didDoc
    this.lexicons = f.lexicons
    this.storage = f.storage
    this.reader = f.reader
    this.writer = f.writer
    this.blobs = f.blobs
    this.uploads = f.uploads
    this.urlSigner = f.urlSigner
    this.uploadGrants = f.uploadGrants
    this.stats = f.stats
    this.limiter = f.limiter
    this.newPairs = f.newPairs
    this.crewJoins = f.crewJoins
    this.crew = f.crew
    this.policy = f.policy
    this.serviceAuth = f.serviceAuth
    this.access = f.access
    this.metrics = f.metrics
    this.exportLimits = f.exportLimits
    this.firehose = f.firehose
    this.crawlers = f.crawlers
    this.carSpooler = f.carSpooler
    this.layerIndex = f.layerIndex
    this.visibility = f.visibility
    this.layers = f.layers
    this.quotas = f.quotas
    this.cluster = f.cluster
    this.resources = resources
  }

  /**
   * Starts the background work: the WAL checkpoint worker, the stats timers (stopped, with a
   * last flush, by destroy), the read of the repo's tree into memory, and a flush of whatever a
   * crash left in the counter table.
   */
  start(): void {
    if (this.started || this.destroying) return
    this.started = true
    const log = this.log.server
    this.db.startCheckpointer((err) =>
      log.error(
        { err },
        'WAL checkpoint worker failed; SQLite checkpoints inline',
      ),
    )
    const cluster = this.cluster
    if (cluster?.role === 'frontend') {
      // A frontend counts into Redis and writes no repo: no publisher, relays or flushes.
      cluster.start(this.cfg.statsPersistMs)
      this.resources.defer(() => cluster.stop())
      this.startSweeper()
      return
    }
    this.stats.start()
    this.resources.defer(async () => {
      this.lastFlush = await this.stats.stop()
    })
    if (cluster) {
      cluster.start(this.cfg.statsPersistMs)
      // Stopped before the last flush: what it applied is in that flush.
      this.resources.defer(() => cluster.stop())
    }
    const { sequencer } = this.writer
    sequencer.startPruning(this.cfg.firehoseRetentionHours)
    void this.crawlers.requestNow()
    sequencer.onEvents(() => this.crawlers.notifyOfUpdate())
    if (this.cfg.statsFlushMs < DEFAULT_STATS_FLUSH_MS) {
      const perDay = Math.round(86_400_000 / this.cfg.statsFlushMs)
      log.warn(
        { statsFlushMs: this.cfg.statsFlushMs, commitsPerDay: perDay },
        `HOLD_STATS_FLUSH_MS=${this.cfg.statsFlushMs} makes up to ${perDay} commits a day under steady pulls; relays follow a new host for at most 21,000 events a day: raise it to ${DEFAULT_STATS_FLUSH_MS} or more`,
      )
    }
    // The MST's nodes into memory in the background, so early flushes find their paths there.
    const warmStarted = performance.now()
    this.writer
      .warm({ stopped: () => this.destroying !== undefined })
      .then((nodes) =>
        log.debug(
          {
            nodes,
            ms: Math.round(performance.now() - warmStarted),
            cacheMb: +(this.writer.nodes.usedBytes / 2 ** 20).toFixed(1),
          },
          'repo tree read into memory',
        ),
      )
      .catch((err) => log.warn({ err }, 'reading the repo tree failed'))
    // Counters a crash left behind in the table reach the repo now, not at the first flush.
    this.stats
      .flush({ paced: true })
      .catch((err) =>
        log.error({ err }, 'initial stats flush failed; will retry'),
      )
    this.startSweeper()
  }

  /**
   * Aborts multipart uploads older than HOLD_UPLOAD_TTL_HOURS, and what crashed uploads left in
   * the store: now, then every quarter of the TTL (at most every 15 minutes). Destroy stops it
   * and waits for a sweep under way, before the store and the database close.
   */
  private startSweeper(): void {
    const log = this.log.uploads
    let sweeping: Promise<unknown> | undefined
    const sweep = () => {
      if (sweeping || this.destroying) return
      sweeping = this.uploads
        .sweep()
        .catch((err) => log.warn({ err }, 'upload sweep failed; will retry'))
        .finally(() => (sweeping = undefined))
    }
    sweep()
    const timer = setInterval(
      sweep,
      Math.min(this.cfg.uploadTtlMs / 4, 15 * 60 * 1000),
    )
    timer.unref()
    this.resources.defer(async () => {
      clearInterval(timer)
      await sweeping
    })
  }

  /**
   * Releases everything, once, in reverse order of acquisition: stats (a last flush, when
   * started), the writer's queue, the database, the data dir. Resolves with that last flush.
   */
  destroy(): Promise<FlushResult | undefined> {
    this.destroying ??= this.resources.disposeAsync().then(() => this.lastFlush)
    return this.destroying
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }

  /**
   * Takes the data dir (one process at a time), then opens everything in it. A disk or
   * permission failure on the way is a DataDirError with one line for the operator; what was
   * opened before it is closed again.
   */
  static async fromConfig(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    overrides: AppContextOverrides = {},
  ): Promise<AppContext> {
    const logger = overrides.logger ?? createRootLogger(cfg.logLevel)
    const resources = new AsyncDisposableStack()
    try {
      // A wrong bucket or bad credentials stop the start before the data dir is touched.
      const s3 = s3Store(cfg, secrets, overrides)
      if (s3) {
        resources.defer(() => s3.close())
        await checkBucket(s3.client, cfg.s3!)
      }
      const lock = await asDataDirError(cfg.dataDir, async () => {
        await mkdir(cfg.dataDir, { recursive: true })
        return DataDirLock.acquire(cfg.dataDir)
      })
      resources.defer(() => lock.release())
      return await asDataDirError(cfg.dataDir, () =>
        AppContext.open(cfg, secrets, overrides, logger, resources, s3),
      )
    } catch (err) {
      // The first failure is the one to report; closing what was opened comes second.
      await resources.disposeAsync().catch(() => undefined)
      throw err
    }
  }

  private static async open(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    overrides: AppContextOverrides,
    logger: Logger,
    resources: AsyncDisposableStack,
    s3: S3BlobStore | undefined,
  ): Promise<AppContext> {
    const log = namedLoggers(logger)
    // A bad tiers file stops the start before anything in the data dir is touched.
    const tiers = cfg.quotasFile ? loadTiers(cfg.quotasFile) : undefined
    const keypair = await loadSigningKey(cfg.dataDir, secrets.signingKeyHex)
    // Every machine of a cluster checks the blob URLs any of them signed.
    const urlSecret =
      cfg.cluster.role === 'all'
        ? await loadUrlSecret(cfg.dataDir)
        : clusterUrlSecret(secrets.signingKeyHex!)
    const db = new Database(join(cfg.dataDir, 'hold.sqlite'), log.db)
    resources.defer(() => db.close())
    const carSpooler = new CarSpooler(db.path)
    resources.defer(() => carSpooler.close())
    const lexicons = loadLexicons()
    const records = new RecordIndex(db.db)
    const storage = new SqlRepoStorage(db, records)
    checkIdentity(cfg, {
      hasRepo: storage.getRootSync() !== null,
      log: log.identity,
    })
    const writer = await RepoWriter.open({
      database: db,
      storage,
      records,
      did: cfg.did,
      keypair,
      lexicons,
      log: log.repo,
      nodeCacheBytes: cfg.repoCacheMb * 1024 * 1024,
      repair: cfg.repair === 'rebuild-tree',
      handle: cfg.handle,
      rebind: cfg.rebindFrom
        ? {
            from: cfg.rebindFrom,
            skip: [ids.HoldStats],
            inTxn: () => rewriteAllStats(db),
          }
        : undefined,
    })
    // Disposed in reverse: the queue drains (its last events logged), then the log stops.
    resources.defer(() => writer.sequencer.stop())
    resources.defer(() => writer.close())
    const store = s3 ?? new DiskBlobStore(cfg.dataDir, db)
    await store.init()
    const stats = new StatsService(db, writer, log.stats, {
      persistMs: cfg.statsPersistMs,
      flushMs: cfg.statsFlushMs,
      historyDays: cfg.statsHistoryDays,
      // Every machine of a cluster hashes an address alike, so a client is one client on all.
      clientKey:
        cfg.statsHistoryDays === 0
          ? undefined
          : cfg.cluster.role === 'all'
            ? loadClientKey(join(cfg.dataDir, CLIENT_KEY_FILE))
            : clusterClientKey(secrets.signingKeyHex!),
      // A frontend hands its counts to Redis every persist instead.
      journalPath:
        cfg.cluster.role === 'frontend'
          ? undefined
          : join(cfg.dataDir, COUNT_JOURNAL_FILE),
    })
    const layerIndex = new LayerIndex(db)
    if (writer.repaired) {
      // Every stats record is derived again from the counter table at the next flush (only
      // those that differ are committed); other lost records are named for the operator.
      rewriteAllStats(db)
      layerIndex.dropLost(
        writer.repaired.lost
          .filter((r) => r.collection === ids.HoldLayer)
          .map((r) => r.rkey),
      )
      const lost = writer.repaired.lost.filter(
        (r) => r.collection !== ids.HoldStats && r.collection !== ids.HoldLayer,
      )
      if (lost.length > 0) {
        log.repo.warn(
          { lost: lost.map((r) => `${r.collection}/${r.rkey}`) },
          'records lost in the repair (the captain is written again at start; re-add crew members)',
        )
      }
    }
    const reader = new RecordReader(storage)
    const crew = new CrewIndex(reader, writer)
    const serviceAuth = new ServiceAuth({
      ownDid: cfg.did,
      plcUrl: cfg.plcUrl,
      allowLocalDids: cfg.devAllowLocalDids,
      failedPerMinute: cfg.failedAuthPerMinute,
    })
    const visibility = new BlobVisibility(layerIndex)
    const limiter = new CountLimiter(cfg.statsMaxPerMinute)
    const newPairs = new TokenBuckets(cfg.newPairsPerHour)
    const crewJoins = new TokenBuckets(cfg.crewJoinsPerHour)
    const firehose = new SubscribeRepos(writer.sequencer, {
      log: log.firehose,
      options: overrides.firehose,
    })
    const crawlers = new Crawlers({
      publicUrl: cfg.publicUrl,
      relays: cfg.crawlers,
      log: log.firehose,
      options: overrides.crawlers,
    })
    // First to go: no relay is asked and no subscriber served while the rest closes. (A
    // server closes the firehose itself before it stops listening: server.close() does not
    // end upgraded sockets.)
    resources.defer(() => firehose.close())
    resources.defer(() => crawlers.stop())
    const metrics = new HoldMetrics({
      cfg,
      stats,
      writer,
      reader,
      limiter,
      newPairs,
      crewJoins,
      firehose,
      crawlers,
    })
    const blobs = new MeteredBlobStore(store, metrics.registry)
    const layers = new LayerService(layerIndex, writer, blobs, visibility)
    const cluster =
      cfg.cluster.role === 'all'
        ? undefined
        : new HoldCluster({
            cfg: cfg.cluster,
            stats,
            database: db,
            log: log.stats,
            registry: metrics.registry,
            policy: { crew, visibility, layerIndex, layers, writer, tiers },
            reservationMs: cfg.uploadTtlMs,
          })
    if (cluster) resources.defer(() => cluster.close())
    // On a cluster's bucket any machine takes any call of an upload: they share it in Redis.
    const sessions =
      cluster && blobs.kind === 's3'
        ? new RedisUploadSessions({
            redis: cluster.redis,
            keys: cluster.keys,
            ttlMs: cfg.uploadTtlMs,
          })
        : new LocalUploadSessions(db)
    const uploads = new Uploads(blobs, sessions, {
      ttlMs: cfg.uploadTtlMs,
      maxBlobBytes: cfg.maxBlobBytes,
      log: log.uploads,
    })
    meterUploads(metrics.registry, uploads)
    // A frontend decides access over the writer's crew, private blobs and tiers, not its own.
    const policy = cluster?.policy
    const crewSource: CrewSource = policy ?? crew
    return new AppContext(
      {
        cfg,
        secrets,
        logger,
        log,
        db,
        keypair,
        didDoc: didDocument(cfg, keypair),
        lexicons,
        storage,
        reader,
        writer,
        blobs,
        uploads,
        urlSigner: new BlobUrlSigner(urlSecret, cfg.publicUrl),
        uploadGrants: new UploadGrants(db),
        stats,
        limiter,
        newPairs,
        crewJoins,
        crew,
        policy: crewSource,
        serviceAuth,
        access: new HoldAccess(serviceAuth, crewSource, { cfg }),
        metrics,
        exportLimits: { ...DEFAULT_EXPORT_LIMITS, ...overrides.exportLimits },
        firehose,
        crawlers,
        carSpooler,
        layerIndex,
        visibility: policy ?? visibility,
        layers,
        quotas: new Quotas(
          policy ? () => policy.tiers : tiers,
          crewSource,
          layerIndex,
        ),
        cluster,
      },
      resources,
    )
  }
}

/** The S3 store HOLD_STORAGE=s3 names, or undefined for disk. */
const s3Store = (
  cfg: ServerConfig,
  secrets: ServerSecrets,
  overrides: AppContextOverrides,
): S3BlobStore | undefined => {
  if (cfg.storage !== 's3') return undefined
  const s3 = cfg.s3
  const keys = secrets.s3Credentials
  if (!s3 || !keys) throw new Error('HOLD_STORAGE=s3 without its configuration')
  return new S3BlobStore({
    target: {
      endpoint: s3.endpoint,
      region: s3.region,
      bucket: s3.bucket,
      pathStyle: s3.pathStyle,
      accessKeyId: keys.accessKeyId,
      secretAccessKey: keys.secretAccessKey,
      sessionToken: keys.sessionToken,
    },
    prefix: s3.prefix,
    cdnUrl: s3.cdnUrl,
    spoolDir: join(cfg.dataDir, 'blobs', 's3-spool'),
    client: overrides.s3Client,
  })
}
