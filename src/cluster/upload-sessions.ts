import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { BlobStoreError } from '../blobs/errors.ts'
import type { UploadHold, UploadSessions } from '../blobs/upload-sessions.ts'
import type { UploadRecord } from '../blobs/upload-table.ts'
import { XRPCError } from '../errors.ts'
import type { ClusterKeys } from './redis.ts'

/** The ids Uploads.initiate makes: 16 random bytes, base64url. */
const UPLOAD_ID_RE = /^[A-Za-z0-9_-]{22}$/

/** How long a completion or abort holds an upload without renewing its hold. */
export const HOLD_MS = 30_000
/** How often a running completion renews its hold. */
const RENEW_MS = HOLD_MS / 3

/** The upload procedures cannot reach the uploads they share through Redis (503). */
export class UploadsUnavailableError extends XRPCError {
  constructor() {
    super(
      503,
      'uploads in progress are kept in Redis, which is not reachable now; try again shortly (blob reads are not affected)',
      'UploadsUnavailable',
      { headers: { 'retry-after': '1' } },
    )
  }
}

/** Holds the upload for `ARGV[1]` ms under token `ARGV[2]`: 1, 0 (held by another) or -1 (gone). */
const HOLD = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then return 1 end
return 0
`

/** Renews a hold that is still this call's. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[2] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
`

/** Ends the upload if the hold is still this call's: 1 when it did. */
const END = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
`

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

/** Marks the upload assembled, without bringing back one that expired meanwhile. */
const ASSEMBLED = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'assembled', '1') end
return 0
`

/**
 * The uploads of a cluster, in Redis: a hash per upload that expires HOLD_UPLOAD_TTL_HOURS
 * after it started, so a frontend, the writer, any machine takes any call of any upload; S3
 * holds the parts. A completion or abort holds the upload with a key of its own (renewed
 * while it runs), taken only while the upload exists, and only the holder ends it: of two
 * completions exactly one counts. An upload past its TTL is dropped by Redis itself; what it
 * left in the bucket is then an orphan to every machine's sweep, which never removes the
 * leftovers of an upload that is open or held. Every failure to reach Redis is
 * UploadsUnavailableError (503).
 */
export class RedisUploadSessions implements UploadSessions {
  private readonly redis: Redis
  private readonly keys: ClusterKeys
  private readonly ttlMs: number

  constructor(opts: { redis: Redis; keys: ClusterKeys; ttlMs: number }) {
    this.redis = opts.redis
    this.keys = opts.keys
    this.ttlMs = Math.round(opts.ttlMs)
  }

  count(): Promise<number> {
    return this.call(() =>
      this.redis.zcount(
        this.keys.uploads,
        `(${Date.now() - this.ttlMs}`,
        '+inf',
      ),
    )
  }

  async get(id: string): Promise<UploadRecord | undefined> {
    // Only ids the hold makes: no other name may reach another key (a hold's is a string).
    if (!UPLOAD_ID_RE.test(id)) return undefined
    const h = await this.call(() => this.redis.hgetall(this.keys.upload(id)))
    if (h.caller === undefined || h.hex === undefined) return undefined
    return {
      id,
      caller: h.caller,
      hex: h.hex,
      did: h.did || null,
      repo: h.repo || null,
      storeId: h.storeId || null,
      assembled: h.assembled === '1',
      createdAt: Number(h.createdAt),
    }
  }

  async insert(u: Omit<UploadRecord, 'assembled'>): Promise<void> {
    const key = this.keys.upload(u.id)
    await this.call(() =>
      this.redis
        .multi()
        .hset(key, {
          caller: u.caller,
          hex: u.hex,
          did: u.did ?? '',
          repo: u.repo ?? '',
          storeId: u.storeId ?? '',
          assembled: '0',
          createdAt: String(u.createdAt),
        })
        .pexpireat(key, u.createdAt + this.ttlMs)
        .zadd(this.keys.uploads, u.createdAt, u.id)
        .exec()
        .then(failedIn),
    )
  }

  async markAssembled(id: string): Promise<void> {
    await this.call(() => this.redis.eval(ASSEMBLED, 1, this.keys.upload(id)))
  }

  async hold(id: string): Promise<UploadHold | undefined> {
    const k = this.keys
    const token = randomBytes(12).toString('base64url')
    const held = await this.call(
      () =>
        this.redis.eval(
          HOLD,
          2,
          k.upload(id),
          k.uploadHeld(id),
          String(HOLD_MS),
          token,
        ) as Promise<number>,
    )
    if (held === -1) {
      throw new BlobStoreError(
        'no such upload was started by this caller (or it has ended)',
        'InvalidUploadId',
      )
    }
    if (held !== 1) return undefined
    // A long completion (a large blob read back through sha256) keeps its hold.
    const renew = setInterval(() => {
      this.redis
        .eval(RENEW, 1, k.uploadHeld(id), String(HOLD_MS), token)
        .catch(() => undefined)
    }, RENEW_MS)
    renew.unref()
    return {
      end: async () => {
        clearInterval(renew)
        const ended = await this.call(
          () =>
            this.redis.eval(
              END,
              3,
              k.upload(id),
              k.uploadHeld(id),
              k.uploads,
              token,
              id,
            ) as Promise<number>,
        )
        return ended === 1
      },
      // Best effort: a hold not released expires after HOLD_MS.
      release: async () => {
        clearInterval(renew)
        await this.redis
          .eval(RELEASE, 1, k.uploadHeld(id), token)
          .catch(() => undefined)
      },
    }
  }

  /**
   * None: Redis drops an upload at its TTL by itself, and the sweep removes what it left in
   * the bucket as an orphan. Only the count's index is trimmed here.
   */
  async olderThan(before: number): Promise<UploadRecord[]> {
    await this.call(() =>
      this.redis.zremrangebyscore(this.keys.uploads, '-inf', `(${before}`),
    )
    return []
  }

  async isKnown(id: string): Promise<boolean> {
    const n = await this.call(() =>
      this.redis.exists(this.keys.upload(id), this.keys.uploadHeld(id)),
    )
    return n > 0
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch {
      throw new UploadsUnavailableError()
    }
  }
}

/** A MULTI's first failed command, thrown. */
const failedIn = (replies: [Error | null, unknown][] | null): void => {
  if (!replies) throw new Error('transaction aborted')
  for (const [err] of replies) if (err) throw err
}
