import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Secp256k1Keypair } from '@atproto/crypto'
import { HoldAccess, type AccessControl } from './access.ts'
import { CrewIndex } from './auth/crew.ts'
import { ServiceAuth } from './auth/service-auth.ts'
import { DiskBlobStore } from './blobs/disk-store.ts'
import { MeteredBlobStore, meterUploads } from './blobs/metered-store.ts'
import { checkBucket } from './blobs/s3/check.ts'
import { S3BlobStore } from './blobs/s3-store.ts'
import { BlobUrlSigner } from './blobs/signed-url.ts'
import type { BlobStore } from './blobs/store.ts'
import { UploadGrants } from './blobs/upload-grants.ts'
import { Uploads } from './blobs/uploads.ts'
import type { S3ClientOptions } from './blobs/s3/client.ts'
import type { ServerConfig, ServerSecrets } from './config.ts'
import { asDataDirError, DataDirLock } from './data-dir.ts'
import { Database } from './db.ts'
import {
  checkIdentity,
  didDocument,
  loadSigningKey,
  loadUrlSecret,
  type DidDocument,
} from './identity.ts'
import { ids, loadLexicons, type Lexicons } from './lexicons.ts'
import { createRootLogger, type Logger } from './logger.ts'
import { HoldMetrics } from './metrics.ts'
import { DEFAULT_EXPORT_LIMITS, type ExportLimits } from './repo/car-export.ts'
import { RecordReader } from './repo/reader.ts'
import { SqlRepoStorage } from './repo/storage.ts'
import { RepoWriter } from './repo/writer.ts'
import { CountLimiter, TokenBuckets } from './stats/limiter.ts'
import { rewriteAllStats, StatsService, type Counter } from './stats/service.ts'

export type AppContextOverrides = Partial<{
  logger: Logger
  access: AccessControl
  /** Replaces what getBlob and uploads count with (benchmarks compare designs through it). */
  counter: (fields: Omit<AppContextFields, 'counter'>) => Counter
  /** Limits of getRepo exports (tests shorten them). */
  exportLimits: Partial<ExportLimits>
  /** S3 client settings (tests turn retries off). */
  s3Client: S3ClientOptions
}>

export type AppContextFields = {
  cfg: ServerConfig
  secrets: ServerSecrets
  logger: Logger
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
  counter: Counter
  limiter: CountLimiter
  newPairs: TokenBuckets
  crewJoins: TokenBuckets
  crew: CrewIndex
  serviceAuth: ServiceAuth
  access: AccessControl
  metrics: HoldMetrics
  exportLimits: ExportLimits
}

/** Everything a handler needs, built once and passed explicitly. */
export class AppContext {
  readonly cfg: ServerConfig
  readonly secrets: ServerSecrets
  readonly logger: Logger
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
  /** Where the request path counts: `stats` unless overridden. */
  readonly counter: Counter
  /** HOLD_STATS_MAX_PER_MINUTE, applied before `counter`. */
  readonly limiter: CountLimiter
  /** HOLD_NEW_PAIRS_PER_HOUR: first counts of pairs from unrelated clients. */
  readonly newPairs: TokenBuckets
  /** HOLD_CREW_JOINS_PER_HOUR: requestCrew joins per caller and per client address. */
  readonly crewJoins: TokenBuckets
  readonly crew: CrewIndex
  readonly serviceAuth: ServiceAuth
  readonly access: AccessControl
  /** Prometheus metrics of this hold (GET /metrics). */
  readonly metrics: HoldMetrics
  readonly exportLimits: ExportLimits

  private constructor(f: AppContextFields) {
    this.cfg = f.cfg
    this.secrets = f.secrets
    this.logger = f.logger
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
    this.counter = f.counter
    this.limiter = f.limiter
    this.newPairs = f.newPairs
    this.crewJoins = f.crewJoins
    this.crew = f.crew
    this.serviceAuth = f.serviceAuth
    this.access = f.access
    this.metrics = f.metrics
    this.exportLimits = f.exportLimits
  }

  private lock: DataDirLock | undefined

  /** Closes the database and gives up the data dir (no flush: HoldServer.destroy drains first). */
  async close(): Promise<void> {
    try {
      await this.blobs.close()
      await this.db.close()
    } finally {
      this.lock?.release()
      this.lock = undefined
    }
  }

  /**
   * Takes the data dir (one process at a time), then opens everything in it. A disk or
   * permission failure on the way is a DataDirError with one line for the operator.
   */
  static async fromConfig(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    overrides: AppContextOverrides = {},
  ): Promise<AppContext> {
    const logger = overrides.logger ?? createRootLogger(cfg.logLevel)
    // A wrong bucket or bad credentials stop the start before the data dir is touched.
    const s3 = s3Store(cfg, secrets, overrides)
    if (s3) {
      try {
        await checkBucket(s3.client, cfg.s3!)
      } catch (err) {
        await s3.close()
        throw err
      }
    }
    const lock = await asDataDirError(cfg.dataDir, async () => {
      await mkdir(cfg.dataDir, { recursive: true })
      return DataDirLock.acquire(cfg.dataDir)
    })
    try {
      const ctx = await asDataDirError(cfg.dataDir, () =>
        AppContext.open(cfg, secrets, overrides, logger, s3),
      )
      ctx.lock = lock
      return ctx
    } catch (err) {
      await s3?.close()
      lock.release()
      throw err
    }
  }

  private static async open(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    overrides: AppContextOverrides,
    logger: Logger,
    s3: S3BlobStore | undefined,
  ): Promise<AppContext> {
    const keypair = await loadSigningKey(cfg.dataDir, secrets.signingKeyHex)
    const urlSecret = await loadUrlSecret(cfg.dataDir)
    const db = new Database(
      join(cfg.dataDir, 'hold.sqlite'),
      logger.child({ name: 'hold:db' }),
    )
    try {
      const lexicons = loadLexicons()
      const storage = new SqlRepoStorage(db)
      checkIdentity(cfg, {
        hasRepo: storage.getRootSync() !== null,
        log: logger.child({ name: 'hold:identity' }),
      })
      const writer = await RepoWriter.open({
        database: db,
        storage,
        did: cfg.did,
        keypair,
        lexicons,
        log: logger.child({ name: 'hold:repo' }),
        nodeCacheBytes: cfg.repoCacheMb * 1024 * 1024,
        repair: cfg.repair === 'rebuild-tree',
        rebind: cfg.rebindFrom
          ? {
              from: cfg.rebindFrom,
              skip: [ids.HoldStats],
              inTxn: () => rewriteAllStats(db),
            }
          : undefined,
      })
      const store = s3 ?? new DiskBlobStore(cfg.dataDir, db)
      await store.init()
      const stats = new StatsService(
        db,
        writer,
        logger.child({ name: 'hold:stats' }),
        { persistMs: cfg.statsPersistMs, flushMs: cfg.statsFlushMs },
      )
      if (writer.repaired) {
        // Every stats record is derived again from the counter table at the next flush (only
        // those that differ are committed); other lost records are named for the operator.
        rewriteAllStats(db)
        const lost = writer.repaired.lost.filter(
          (r) => r.collection !== ids.HoldStats,
        )
        if (lost.length > 0) {
          logger.warn(
            { lost: lost.map((r) => `${r.collection}/${r.rkey}`) },
            'records lost in the repair (the captain is written again at start; re-add crew members)',
          )
        }
      }
      const reader = new RecordReader(db, storage)
      const crew = new CrewIndex(reader, writer)
      const serviceAuth = new ServiceAuth({
        ownDid: cfg.did,
        plcUrl: cfg.plcUrl,
        allowLocalDids: cfg.devAllowLocalDids,
      })
      const limiter = new CountLimiter(cfg.statsMaxPerMinute)
      const newPairs = new TokenBuckets(cfg.newPairsPerHour)
      const crewJoins = new TokenBuckets(cfg.crewJoinsPerHour)
      const metrics = new HoldMetrics({
        cfg,
        stats,
        writer,
        reader,
        limiter,
        newPairs,
        crewJoins,
      })
      const blobs = new MeteredBlobStore(store, metrics.registry)
      const uploads = new Uploads(blobs, db, {
        ttlMs: cfg.uploadTtlMs,
        maxBlobBytes: cfg.maxBlobBytes,
        log: logger.child({ name: 'hold:uploads' }),
      })
      meterUploads(metrics.registry, uploads)
      const fields = {
        cfg,
        secrets,
        logger,
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
        serviceAuth,
        access: overrides.access ?? new HoldAccess(serviceAuth, crew),
        metrics,
        exportLimits: { ...DEFAULT_EXPORT_LIMITS, ...overrides.exportLimits },
      }
      return new AppContext({
        ...fields,
        counter: overrides.counter?.(fields) ?? stats,
      })
    } catch (err) {
      await db.close()
      throw err
    }
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
