import { Redis } from 'ioredis'
import type { ClusterConfig } from '../config.ts'

/** The Redis keys of one hold, all under HOLD_REDIS_PREFIX. */
export type ClusterKeys = {
  /** The stream frontends append counts to, and the writer's consumer group on it. */
  stream: string
  group: string
  /** A hash per DID: repository → the pair's counts as the writer's table has them. */
  view: (did: string) => string
  /** A hash: frontend process → the last of its entries the writer has applied. */
  producers: string
  /** Where the writer says which machine it is (fly-replay). */
  writer: string
  /** A hash: the writer's access policy (`body`) and its `version`. */
  policy: string
  /** Where the writer says the policy changed. */
  policyChannel: string
  /** A hash: crew member → bytes their layer records name (quota usage). */
  usage: string
  /** A hash per DID: hex digest → `<bytes>:<expiry ms>` of uploads not yet in a manifest. */
  reserved: (did: string) => string
  /** A hash per multipart upload in progress (who started it, its S3 UploadId, …). */
  upload: (id: string) => string
  /** Set while a completion or abort of the upload runs, to the token of the call. */
  uploadHeld: (id: string) => string
  /** A sorted set: upload id → when it started (ms), for the count of uploads in progress. */
  uploads: string
}

export const clusterKeys = (prefix: string): ClusterKeys => ({
  stream: `${prefix}:counts`,
  group: 'writer',
  view: (did) => `${prefix}:view:${did}`,
  producers: `${prefix}:producers`,
  writer: `${prefix}:writer`,
  policy: `${prefix}:policy`,
  policyChannel: `${prefix}:policy:changed`,
  usage: `${prefix}:quota:usage`,
  reserved: (did) => `${prefix}:quota:reserved:${did}`,
  upload: (id) => `${prefix}:upload:${id}`,
  uploadHeld: (id) => `${prefix}:upload:${id}:held`,
  uploads: `${prefix}:uploads`,
})

/** How long one Redis command may take before it counts as failed (and is tried again). */
export const COMMAND_TIMEOUT_MS = 2000

/**
 * A client of HOLD_REDIS_URL that never queues or waits for a connection: while Redis is down
 * every command fails at once and the caller keeps its data (a pull never waits on Redis). It
 * reconnects in the background, at most every 2 s.
 */
export const connectRedis = (
  cluster: ClusterConfig,
  name: string,
  opts: { blocking?: boolean } = {},
): Redis => {
  const client = new Redis(cluster.redisUrl!, {
    connectionName: name,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    connectTimeout: COMMAND_TIMEOUT_MS,
    // A blocking read waits longer than a command may; it is bounded by its own BLOCK.
    commandTimeout: opts.blocking ? undefined : COMMAND_TIMEOUT_MS,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: false,
  })
  // Errors reach the commands that fail; the client itself must not throw them unhandled.
  client.on('error', () => undefined)
  return client
}
