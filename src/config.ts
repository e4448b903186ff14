import { isValidDid } from '@atproto/syntax'
import {
  envToS3Cfg,
  envToS3Credentials,
  type S3Config,
  type S3Credentials,
} from './config-s3.ts'
import {
  ConfigError,
  nonEmpty,
  parseBoolVar,
  parseIntVar,
  parseOrigin,
} from './config-vars.ts'

export { ConfigError }
export type { S3Config, S3Credentials }

/**
 * One flush a minute keeps a hold under the reference relay's budget for a new host (21,000
 * events a day) with up to ~2,800 changed pairs a minute; see README "Relays".
 */
export const DEFAULT_STATS_FLUSH_MS = 60_000
/** Counts are journaled (or sent to the stream) every 25 ms: what a kill -9 can lose. */
export const DEFAULT_STATS_PERSIST_MS = 25

/** Raw environment, read in exactly one place. */
export type ServerEnvironment = {
  host?: string
  port?: string
  publicUrl?: string
  dataDir?: string
  ownerDid?: string
  public?: string
  allowAllCrew?: string
  crewJoinsPerHour?: string
  plcUrl?: string
  signingKey?: string
  storage?: string
  /** S3 storage, by the names `fly storage create` and the AWS tools use. */
  bucketName?: string
  s3Bucket?: string
  awsEndpointUrlS3?: string
  s3Endpoint?: string
  awsRegion?: string
  awsAccessKeyId?: string
  awsSecretAccessKey?: string
  awsSessionToken?: string
  s3ForcePathStyle?: string
  s3PathStyle?: string
  s3Prefix?: string
  cdnUrl?: string
  uploadTtlHours?: string
  maxBlobBytes?: string
  statsFlushMs?: string
  statsPersistMs?: string
  statsHistoryDays?: string
  statsMaxPerMinute?: string
  newPairsPerHour?: string
  failedAuthPerMinute?: string
  repoCacheMb?: string
  firehoseRetentionHours?: string
  crawlers?: string
  trustedProxyHeader?: string
  trustedProxyHops?: string
  adminPassword?: string
  repair?: string
  devAllowLocalDids?: string
  logLevel?: string
  rebindFrom?: string
  quotasFile?: string
  countSource?: string
  role?: string
  redisUrl?: string
  redisPrefix?: string
  redisBufferPairs?: string
  writerUrl?: string
  /** Set by Fly.io on every machine: the app's name. */
  flyAppName?: string
  /** Set by Fly.io on every machine: its own ID (what `fly-replay: instance=` names). */
  flyMachineId?: string
  /** Set by Fly.io on every machine: its process group (fly.cluster.toml: writer, frontend). */
  flyProcessGroup?: string
  nodeEnv?: string
}

export const readEnv = (
  env: NodeJS.ProcessEnv = process.env,
): ServerEnvironment => ({
  host: env.HOLD_HOST,
  port: env.HOLD_PORT,
  publicUrl: env.HOLD_PUBLIC_URL,
  dataDir: env.HOLD_DATA_DIR,
  ownerDid: env.HOLD_OWNER_DID,
  public: env.HOLD_PUBLIC,
  allowAllCrew: env.HOLD_ALLOW_ALL_CREW,
  crewJoinsPerHour: env.HOLD_CREW_JOINS_PER_HOUR,
  plcUrl: env.HOLD_PLC_URL,
  signingKey: env.HOLD_SIGNING_KEY,
  storage: env.HOLD_STORAGE,
  bucketName: env.BUCKET_NAME,
  s3Bucket: env.S3_BUCKET,
  awsEndpointUrlS3: env.AWS_ENDPOINT_URL_S3,
  s3Endpoint: env.S3_ENDPOINT,
  awsRegion: env.AWS_REGION,
  awsAccessKeyId: env.AWS_ACCESS_KEY_ID,
  awsSecretAccessKey: env.AWS_SECRET_ACCESS_KEY,
  awsSessionToken: env.AWS_SESSION_TOKEN,
  s3ForcePathStyle: env.S3_FORCE_PATH_STYLE,
  s3PathStyle: env.HOLD_S3_PATH_STYLE,
  s3Prefix: env.HOLD_S3_PREFIX,
  cdnUrl: env.HOLD_CDN_URL,
  uploadTtlHours: env.HOLD_UPLOAD_TTL_HOURS,
  maxBlobBytes: env.HOLD_MAX_BLOB_BYTES,
  statsFlushMs: env.HOLD_STATS_FLUSH_MS,
  statsPersistMs: env.HOLD_STATS_PERSIST_MS,
  statsHistoryDays: env.HOLD_STATS_HISTORY_DAYS,
  statsMaxPerMinute: env.HOLD_STATS_MAX_PER_MINUTE,
  newPairsPerHour: env.HOLD_NEW_PAIRS_PER_HOUR,
  failedAuthPerMinute: env.HOLD_FAILED_AUTH_PER_MINUTE,
  repoCacheMb: env.HOLD_REPO_CACHE_MB,
  firehoseRetentionHours: env.HOLD_FIREHOSE_RETENTION_HOURS,
  crawlers: env.HOLD_CRAWLERS,
  trustedProxyHeader: env.HOLD_TRUSTED_PROXY_HEADER,
  trustedProxyHops: env.HOLD_TRUSTED_PROXY_HOPS,
  adminPassword: env.HOLD_ADMIN_PASSWORD,
  repair: env.HOLD_REPAIR,
  devAllowLocalDids: env.HOLD_DEV_ALLOW_LOCAL_DIDS,
  logLevel: env.LOG_LEVEL,
  rebindFrom: env.HOLD_REBIND_FROM,
  quotasFile: env.HOLD_QUOTAS_FILE,
  countSource: env.HOLD_COUNT_SOURCE,
  role: env.HOLD_ROLE,
  redisUrl: env.HOLD_REDIS_URL,
  redisPrefix: env.HOLD_REDIS_PREFIX,
  redisBufferPairs: env.HOLD_REDIS_BUFFER_PAIRS,
  writerUrl: env.HOLD_WRITER_URL,
  flyAppName: env.FLY_APP_NAME,
  flyMachineId: env.FLY_MACHINE_ID,
  flyProcessGroup: env.FLY_PROCESS_GROUP,
  nodeEnv: env.NODE_ENV,
})

export type ServerConfig = {
  host: string
  port: number
  publicUrl: string
  /** did:web of the hold, derived from publicUrl */
  did: string
  /** the host part of publicUrl, used as the hold's handle */
  handle: string
  dataDir: string
  ownerDid: string | undefined
  /** undefined: keep what the captain record has (first start: true) */
  public: boolean | undefined
  /** undefined: keep what the captain record has (first start: false) */
  allowAllCrew: boolean | undefined
  /** requestCrew joins per caller DID and per client address per hour; 0: no limit */
  crewJoinsPerHour: number
  plcUrl: string
  storage: 'disk' | 's3'
  /** Where and how to reach the bucket, with HOLD_STORAGE=s3 */
  s3: S3Config | undefined
  /** Multipart uploads older than this are aborted (HOLD_UPLOAD_TTL_HOURS). */
  uploadTtlMs: number
  maxBlobBytes: number
  statsFlushMs: number
  /**
   * How often counts taken in memory are made durable (HOLD_STATS_PERSIST_MS): a count journal
   * line, or with HOLD_ROLE=frontend a stream entry. The most a `kill -9` loses.
   */
  statsPersistMs: number
  /** Days of per-day counts kept (HOLD_STATS_HISTORY_DAYS); 0: none are kept */
  statsHistoryDays: number
  statsMaxPerMinute: number
  /** (DID, repository) pairs an unrelated client may start counting per hour; 0: no limit */
  newPairsPerHour: number
  /** service tokens per client address that may fail verification, at once and per minute; 0: no limit */
  failedAuthPerMinute: number
  /** MiB of MST nodes kept in memory; 0: none */
  repoCacheMb: number
  /** Hours subscribeRepos events are kept for replay */
  firehoseRetentionHours: number
  /** Relays asked to crawl the hold (origins), from HOLD_CRAWLERS */
  crawlers: string[]
  trustedProxyHeader: string | undefined
  /** HOLD_REPAIR: rebuild a damaged repo tree at start instead of refusing it */
  repair: 'rebuild-tree' | undefined
  /** did:web issuers may be on private addresses and on http://localhost (development, tests) */
  devAllowLocalDids: boolean
  /**
   * Which address of trustedProxyHeader is the client's, counted from the right: 1 is the one
   * the nearest proxy added (a single-valued header such as Fly-Client-IP has only that one).
   */
  trustedProxyHops: number
  logLevel: string
  version: string
  /** Where publicUrl came from: HOLD_PUBLIC_URL, the Fly default, or undefined (the localhost default). */
  publicUrlFrom: 'HOLD_PUBLIC_URL' | 'FLY_APP_NAME' | undefined
  /** What says the hold runs deployed (FLY_APP_NAME, NODE_ENV=production); undefined on a laptop. */
  deployedBy: 'FLY_APP_NAME' | 'NODE_ENV=production' | undefined
  /** HOLD_REBIND_FROM: the DID whose repo in the data dir is rebuilt under `did`. */
  rebindFrom: string | undefined
  /** HOLD_QUOTAS_FILE: the tiers file (YAML or JSON); undefined: no quotas */
  quotasFile: string | undefined
  /**
   * HOLD_COUNT_SOURCE: what pullCount and pushCount count, blob requests (getBlob's `repo`,
   * uploads) or manifests (notifyManifest); the other source is answered and not counted
   */
  countSource: CountSource
  /** HOLD_ROLE and what it needs: one process (`all`), or a writer and its frontends. */
  cluster: ClusterConfig
}

export type CountSource = 'blob' | 'manifest'

export type HoldRole = 'all' | 'writer' | 'frontend'

/**
 * HOLD_ROLE=writer owns the repo and applies the counts frontends send through Redis;
 * HOLD_ROLE=frontend serves blobs, uploads and stats, counts into Redis, and sends every other
 * call to the writer (Fly: the `fly-replay` header; elsewhere: a proxy to HOLD_WRITER_URL).
 */
export type ClusterConfig = {
  role: HoldRole
  /** HOLD_REDIS_URL (writer, frontend): redis:// or rediss:// */
  redisUrl: string | undefined
  /** HOLD_REDIS_PREFIX: every key the hold uses in Redis starts with it */
  redisPrefix: string
  /** HOLD_REDIS_BUFFER_PAIRS: pairs a frontend keeps in memory while Redis is down */
  bufferPairs: number
  /** How a frontend reaches the writer: Fly's replay (by machine ID), or a proxy to a URL. */
  writer: { via: 'fly-replay' } | { via: 'proxy'; url: string } | undefined
  /** FLY_MACHINE_ID: what a writer on Fly advertises for `fly-replay: instance=` */
  flyMachineId: string | undefined
}
export type ServerSecrets = {
  /** 64 hex characters, or undefined to use (or create) the key in the data dir */
  signingKeyHex: string | undefined
  adminPassword: string | undefined
  /** With HOLD_STORAGE=s3 */
  s3Credentials: S3Credentials | undefined
}

const LOG_LEVELS = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
]

export const envToCfg = (
  env: ServerEnvironment,
  version = '0.0.0',
): ServerConfig => {
  const port = parseIntVar('HOLD_PORT', env.port, 8080, 0, 65535)
  const flyApp = nonEmpty(env.flyAppName)?.toLowerCase()
  if (
    flyApp !== undefined &&
    !/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/.test(flyApp)
  ) {
    throw new ConfigError(
      `FLY_APP_NAME must be a Fly app name (letters, digits and dashes), got "${flyApp}"; or set HOLD_PUBLIC_URL`,
    )
  }
  const publicUrlFrom = nonEmpty(env.publicUrl)
    ? 'HOLD_PUBLIC_URL'
    : flyApp
      ? 'FLY_APP_NAME'
      : undefined
  // On Fly the app's own hostname is the URL clients reach unless the operator says otherwise.
  const publicUrl = parsePublicUrl(
    nonEmpty(env.publicUrl) ??
      (flyApp
        ? `https://${flyApp}.fly.dev`
        : `http://localhost:${port || 8080}`),
  )
  const url = new URL(publicUrl)
  const did = `did:web:${url.hostname}${url.port ? `%3A${url.port}` : ''}`
  if (!isValidDid(did)) {
    throw new ConfigError(
      `HOLD_PUBLIC_URL must have a DNS name or IPv4 host (did:web cannot name "${url.hostname}"), got "${publicUrl}"`,
    )
  }
  const ownerDid = nonEmpty(env.ownerDid)
  if (ownerDid !== undefined && !isValidDid(ownerDid)) {
    throw new ConfigError(`HOLD_OWNER_DID must be a DID, got "${ownerDid}"`)
  }
  const storage = nonEmpty(env.storage) ?? 'disk'
  if (storage !== 'disk' && storage !== 's3') {
    throw new ConfigError(
      `HOLD_STORAGE must be "disk" or "s3", got "${storage}"`,
    )
  }
  if (storage === 'disk' && nonEmpty(env.cdnUrl)) {
    throw new ConfigError(
      'HOLD_CDN_URL applies to HOLD_STORAGE=s3 only (disk blobs are served by the hold); unset it',
    )
  }
  const plcUrl = nonEmpty(env.plcUrl) ?? 'https://plc.directory'
  if (!URL.canParse(plcUrl) || !/^https?:$/.test(new URL(plcUrl).protocol)) {
    throw new ConfigError(
      `HOLD_PLC_URL must be an http(s) URL, got "${plcUrl}"`,
    )
  }
  const repair = nonEmpty(env.repair)
  if (repair !== undefined && repair !== 'rebuild-tree') {
    throw new ConfigError(
      `HOLD_REPAIR must be "rebuild-tree" (or unset), got "${repair}"`,
    )
  }
  const rebindFrom = nonEmpty(env.rebindFrom)
  if (rebindFrom !== undefined && !isValidDid(rebindFrom)) {
    throw new ConfigError(
      `HOLD_REBIND_FROM must be the DID the data dir's repo belongs to (e.g. did:web:localhost%3A8080), got "${rebindFrom}"`,
    )
  }
  const countSource = nonEmpty(env.countSource) ?? 'blob'
  if (countSource !== 'blob' && countSource !== 'manifest') {
    throw new ConfigError(
      `HOLD_COUNT_SOURCE must be "blob" (getBlob requests with repo, and uploads) or "manifest" (notifyManifest), got "${countSource}"`,
    )
  }
  const cluster = envToCluster(env, flyApp, storage)
  const logLevel = nonEmpty(env.logLevel) ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`,
    )
  }
  return {
    host: nonEmpty(env.host) ?? '0.0.0.0',
    port,
    publicUrl,
    did,
    handle: url.hostname,
    dataDir: nonEmpty(env.dataDir) ?? './data',
    ownerDid,
    public: parseBoolVar('HOLD_PUBLIC', env.public),
    allowAllCrew: parseBoolVar('HOLD_ALLOW_ALL_CREW', env.allowAllCrew),
    crewJoinsPerHour: parseIntVar(
      'HOLD_CREW_JOINS_PER_HOUR',
      env.crewJoinsPerHour,
      30,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    plcUrl,
    storage,
    s3: storage === 's3' ? envToS3Cfg(env) : undefined,
    uploadTtlMs:
      parseIntVar('HOLD_UPLOAD_TTL_HOURS', env.uploadTtlHours, 24, 1, 24 * 30) *
      HOUR_MS,
    maxBlobBytes: parseIntVar(
      'HOLD_MAX_BLOB_BYTES',
      env.maxBlobBytes,
      10 * 1024 ** 3,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    statsFlushMs: parseIntVar(
      'HOLD_STATS_FLUSH_MS',
      env.statsFlushMs,
      DEFAULT_STATS_FLUSH_MS,
      10,
      24 * 3600 * 1000,
    ),
    statsPersistMs: parseIntVar(
      'HOLD_STATS_PERSIST_MS',
      env.statsPersistMs,
      DEFAULT_STATS_PERSIST_MS,
      5,
      1000,
    ),
    statsHistoryDays: parseIntVar(
      'HOLD_STATS_HISTORY_DAYS',
      env.statsHistoryDays,
      400,
      0,
      36_500,
    ),
    statsMaxPerMinute: parseIntVar(
      'HOLD_STATS_MAX_PER_MINUTE',
      env.statsMaxPerMinute,
      0,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    newPairsPerHour: parseIntVar(
      'HOLD_NEW_PAIRS_PER_HOUR',
      env.newPairsPerHour,
      100,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    failedAuthPerMinute: parseIntVar(
      'HOLD_FAILED_AUTH_PER_MINUTE',
      env.failedAuthPerMinute,
      60,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
    repoCacheMb: parseIntVar(
      'HOLD_REPO_CACHE_MB',
      env.repoCacheMb,
      32,
      0,
      65536,
    ),
    firehoseRetentionHours: parseIntVar(
      'HOLD_FIREHOSE_RETENTION_HOURS',
      env.firehoseRetentionHours,
      72,
      1,
      24 * 365,
    ),
    crawlers: parseCrawlers(env.crawlers),
    trustedProxyHeader: nonEmpty(env.trustedProxyHeader)?.toLowerCase(),
    repair,
    devAllowLocalDids:
      parseBoolVar('HOLD_DEV_ALLOW_LOCAL_DIDS', env.devAllowLocalDids) ?? false,
    trustedProxyHops: parseIntVar(
      'HOLD_TRUSTED_PROXY_HOPS',
      env.trustedProxyHops,
      1,
      1,
      16,
    ),
    logLevel,
    version,
    publicUrlFrom,
    deployedBy: flyApp
      ? 'FLY_APP_NAME'
      : nonEmpty(env.nodeEnv) === 'production'
        ? 'NODE_ENV=production'
        : undefined,
    rebindFrom,
    quotasFile: nonEmpty(env.quotasFile),
    countSource,
    cluster,
  }
}

const envToCluster = (
  env: ServerEnvironment,
  flyApp: string | undefined,
  storage: string,
): ClusterConfig => {
  // On Fly a machine of the `writer` or `frontend` process group has that role unless told.
  const group = flyApp ? nonEmpty(env.flyProcessGroup) : undefined
  const role =
    nonEmpty(env.role) ??
    (group === 'writer' || group === 'frontend' ? group : 'all')
  if (role !== 'all' && role !== 'writer' && role !== 'frontend') {
    throw new ConfigError(
      `HOLD_ROLE must be "all", "writer" or "frontend", got "${role}"`,
    )
  }
  const redisUrl = nonEmpty(env.redisUrl)
  const writerUrl = nonEmpty(env.writerUrl)
  if (role === 'all' && redisUrl !== undefined) {
    throw new ConfigError(
      'HOLD_REDIS_URL is for HOLD_ROLE=writer or frontend; set HOLD_ROLE or unset HOLD_REDIS_URL',
    )
  }
  if (role !== 'frontend' && writerUrl !== undefined) {
    throw new ConfigError(
      `HOLD_WRITER_URL is for HOLD_ROLE=frontend (this is HOLD_ROLE=${role}); unset it`,
    )
  }
  if (role !== 'all' && redisUrl === undefined) {
    throw new ConfigError(
      `HOLD_ROLE=${role} needs HOLD_REDIS_URL (redis:// or rediss://, where frontends send their counts)`,
    )
  }
  if (redisUrl !== undefined) {
    const url = URL.canParse(redisUrl) ? new URL(redisUrl) : undefined
    if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:')) {
      throw new ConfigError(
        'HOLD_REDIS_URL must be a redis:// or rediss:// URL such as redis://localhost:6379',
      )
    }
  }
  if (role === 'frontend' && storage !== 's3') {
    throw new ConfigError(
      "HOLD_ROLE=frontend needs HOLD_STORAGE=s3: blobs on one machine's disk cannot be served by the others",
    )
  }
  if (role !== 'all' && nonEmpty(env.signingKey) === undefined) {
    throw new ConfigError(
      `HOLD_ROLE=${role} needs HOLD_SIGNING_KEY, the same on the writer and every frontend (blob URLs signed by one are checked by another)`,
    )
  }
  let writer: ClusterConfig['writer']
  if (role === 'frontend') {
    if (writerUrl !== undefined) {
      writer = { via: 'proxy', url: parseOrigin('HOLD_WRITER_URL', writerUrl) }
    } else if (flyApp !== undefined) {
      writer = { via: 'fly-replay' }
    } else {
      throw new ConfigError(
        'HOLD_ROLE=frontend needs HOLD_WRITER_URL (where repo calls are proxied), or Fly.io (FLY_APP_NAME), where they are replayed on the writer',
      )
    }
  }
  const prefix = nonEmpty(env.redisPrefix) ?? 'atcr-hold'
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(prefix)) {
    throw new ConfigError(
      `HOLD_REDIS_PREFIX must be 1 to 64 letters, digits, dots, dashes, underscores or colons, got "${prefix}"`,
    )
  }
  return {
    role,
    redisUrl,
    redisPrefix: prefix,
    bufferPairs: parseIntVar(
      'HOLD_REDIS_BUFFER_PAIRS',
      env.redisBufferPairs,
      100_000,
      1,
      10_000_000,
    ),
    writer,
    flyMachineId: nonEmpty(env.flyMachineId),
  }
}

export const envToSecrets = (env: ServerEnvironment): ServerSecrets => {
  const signingKeyHex = nonEmpty(env.signingKey)?.toLowerCase()
  if (signingKeyHex !== undefined && !/^[0-9a-f]{64}$/.test(signingKeyHex)) {
    throw new ConfigError(
      'HOLD_SIGNING_KEY must be 32 bytes of hex (64 characters); run `npm run hold -- keygen` or leave it unset to generate one',
    )
  }
  return {
    signingKeyHex,
    adminPassword: nonEmpty(env.adminPassword),
    s3Credentials:
      nonEmpty(env.storage) === 's3' ? envToS3Credentials(env) : undefined,
  }
}

const HOUR_MS = 3600 * 1000

/** HOLD_CRAWLERS: comma-separated relay URLs (origins), as the reference PDS's crawlers. */
const parseCrawlers = (raw: string | undefined): string[] => {
  const origins = new Set<string>()
  for (const item of (raw ?? '').split(',')) {
    const value = item.trim()
    if (!value) continue
    const url = URL.canParse(value) ? new URL(value) : undefined
    if (
      !url ||
      !/^https?:$/.test(url.protocol) ||
      url.pathname !== '/' ||
      url.search ||
      url.hash ||
      url.username
    ) {
      throw new ConfigError(
        `HOLD_CRAWLERS must be comma-separated relay URLs such as https://bsky.network, got "${value}"`,
      )
    }
    origins.add(url.origin)
  }
  return [...origins]
}

const parsePublicUrl = (raw: string): string => {
  const value = raw.trim()
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(
      `HOLD_PUBLIC_URL must be an absolute URL such as https://hold.example.com, got "${raw}"`,
    )
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(
      `HOLD_PUBLIC_URL must use http or https, got "${url.protocol}"`,
    )
  }
  if (!url.hostname) {
    throw new ConfigError(`HOLD_PUBLIC_URL has no host: "${raw}"`)
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username) {
    throw new ConfigError(
      `HOLD_PUBLIC_URL must be a bare origin with no path, query or credentials (did:web cannot carry them), got "${raw}"`,
    )
  }
  return url.origin
}
