import { isValidDid } from '@atproto/syntax'

/** Raw environment, read in exactly one place. */
/**
 * One flush a minute keeps a hold under the reference relay's budget for a new host (21,000
 * events a day) with up to ~2,800 changed pairs a minute; see README "Relays".
 */
export const DEFAULT_STATS_FLUSH_MS = 60_000

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
  maxBlobBytes?: string
  statsFlushMs?: string
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
  /** Set by Fly.io on every machine: the app's name. */
  flyAppName?: string
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
  maxBlobBytes: env.HOLD_MAX_BLOB_BYTES,
  statsFlushMs: env.HOLD_STATS_FLUSH_MS,
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
  flyAppName: env.FLY_APP_NAME,
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
  storage: 'disk'
  maxBlobBytes: number
  statsFlushMs: number
  statsPersistMs: number
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
}

export type CountSource = 'blob' | 'manifest'

export type ServerSecrets = {
  /** 64 hex characters, or undefined to use (or create) the key in the data dir */
  signingKeyHex: string | undefined
  adminPassword: string | undefined
}

/** A configuration problem: the message names the variable and is meant to be shown as is. */
export class ConfigError extends Error {}

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
  if (storage !== 'disk') {
    throw new ConfigError(
      `HOLD_STORAGE must be "disk" (the only storage this version has), got "${storage}"`,
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
    statsPersistMs: 25,
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
  }
}

export const envToSecrets = (env: ServerEnvironment): ServerSecrets => {
  const signingKeyHex = nonEmpty(env.signingKey)?.toLowerCase()
  if (signingKeyHex !== undefined && !/^[0-9a-f]{64}$/.test(signingKeyHex)) {
    throw new ConfigError(
      'HOLD_SIGNING_KEY must be 32 bytes of hex (64 characters); run `npm run hold -- keygen` or leave it unset to generate one',
    )
  }
  return { signingKeyHex, adminPassword: nonEmpty(env.adminPassword) }
}

const nonEmpty = (value: string | undefined): string | undefined => {
  const trimmed = value?.trim()
  return trimmed ? trimmed : undefined
}

const parseIntVar = (
  name: string,
  raw: string | undefined,
  def: number,
  min: number,
  max: number,
): number => {
  const value = nonEmpty(raw)
  if (value === undefined) return def
  if (!/^\d+$/.test(value)) {
    throw new ConfigError(`${name} must be a whole number, got "${value}"`)
  }
  const n = Number(value)
  if (n < min || n > max) {
    throw new ConfigError(
      `${name} must be between ${min} and ${max}, got ${value}`,
    )
  }
  return n
}

const parseBoolVar = (
  name: string,
  raw: string | undefined,
): boolean | undefined => {
  const value = nonEmpty(raw)?.toLowerCase()
  if (value === undefined) return undefined
  if (['true', '1', 'yes', 'on'].includes(value)) return true
  if (['false', '0', 'no', 'off'].includes(value)) return false
  throw new ConfigError(`${name} must be true or false, got "${raw}"`)
}

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
