import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { XRPCError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { BlobStoreError, type BlobErrorCode } from './errors.ts'
import {
  MAX_PART_NUMBER,
  MIN_PART_NUMBER,
  type BlobStore,
  type ListedPart,
  type PartUrl,
  type StoreUpload,
} from './store.ts'
import type { UploadRecord } from './upload-table.ts'
import type { UploadHold, UploadSessions } from './upload-sessions.ts'

/** S3's largest part; no store takes more in one. */
const MAX_PART_BYTES = 5 * 1024 ** 3
/** The longest upload id and ETag ATCR's lexicons allow. */
const MAX_ID_LENGTH = 256
/** Expired uploads handled per sweep; the next sweep takes the rest. */
const SWEEP_BATCH = 1000

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/

/** The sha256 hex of an upload's `digest` (`sha256:<64 lowercase hex>`), or InvalidDigest. */
export const parseUploadDigest = (digest: unknown): string => {
  const m = typeof digest === 'string' ? DIGEST_RE.exec(digest) : null
  if (!m) {
    throw new BlobStoreError(
      'digest must be sha256: followed by 64 lowercase hex characters',
      'InvalidDigest',
    )
  }
  return m[1]
}

export type CompletedUpload = {
  hex: string
  size: number
  /** What to count one push for, when the upload was started with a repository. */
  did: string | null
  repo: string | null
}

export type UploadsOptions = {
  /** Uploads older than this are aborted by `sweep`. */
  ttlMs: number
  /** The largest blob an upload may assemble (HOLD_MAX_BLOB_BYTES). */
  maxBlobBytes: number
  log?: Logger
}

/**
 * ATCR's multipart upload procedures over either store: initiate, part URLs, parts through the
 * hold, complete, abort, and the sweep of uploads left unfinished. Every call but initiate names
 * the caller, and an upload answers only the caller who started it (anyone else gets
 * InvalidUploadId, as for an id that does not exist), so no route can forget the check.
 * Uploads are kept in `sessions`: rows in SQLite (`upload`) on a single hold, so a restart keeps
 * them; in Redis on the machines of a cluster, so any of them takes any call.
 */
export class Uploads {
  readonly store: BlobStore
  private readonly sessions: UploadSessions
  private readonly ttlMs: number
  private readonly maxBlobBytes: number
  private readonly maxPartBytes: number
  private readonly log: Logger | undefined
  constructor(
    store: BlobStore,
    sessions: UploadSessions,
    opts: UploadsOptions,
  ) {
    this.store = store
    this.sessions = sessions
    this.ttlMs = opts.ttlMs
    this.maxBlobBytes = opts.maxBlobBytes
    this.maxPartBytes = Math.min(opts.maxBlobBytes, MAX_PART_BYTES)
    this.log = opts.log
  }

  /** Uploads started and not yet completed, aborted or swept. */
  count(): Promise<number> {
    return this.sessions.count()
  }

  async initiate(
    start: { caller: string; hex: string; did?: string; repo?: string },
    now = Date.now(),
  ): Promise<{ uploadId: string }> {
    const id = randomBytes(16).toString('base64url')
    const storeId = await storeCall('StorageUnavailable', () =>
      this.store.startUpload(id),
    )
    try {
      await this.sessions.insert({
        id,
        caller: start.caller,
        hex: start.hex,
        did: start.did ?? null,
        repo: start.repo ?? null,
        storeId,
        createdAt: now,
      })
    } catch (err) {
      await this.store
        .abortUpload({ id, storeId, assembled: false })
        .catch(() => {})
      throw err
    }
    return { uploadId: id }
  }

  /** Where the caller PUTs a part itself, or null: the store has no such URL (disk). */
  async partUrl(
    caller: string,
    uploadId: unknown,
    partNumber: unknown,
    now?: number,
  ): Promise<PartUrl | null> {
    const upload = await this.owned(caller, uploadId)
    const n = checkPartNumber(partNumber)
    return this.store.partUrl(storeUpload(upload), n, now)
  }

  /** Stores a part sent through the hold (`length`: its declared Content-Length, if any). */
  async putPart(
    caller: string,
    uploadId: unknown,
    partNumber: unknown,
    body: Readable,
    length?: number,
  ): Promise<{ etag: string; size: number }> {
    const upload = await this.owned(caller, uploadId)
    const n = checkPartNumber(partNumber)
    if (length !== undefined && length > this.maxPartBytes) {
      throw new BlobStoreError(
        `a part may have at most ${this.maxPartBytes} bytes`,
        'PayloadTooLarge',
      )
    }
    return storeCall('UploadFailed', () =>
      this.store.putPart(storeUpload(upload), n, body, {
        length,
        maxBytes: this.maxPartBytes,
      }),
    )
  }

  /**
   * Assembles the listed parts and stores them under `hex` if they hash to it. A mismatch is
   * InvalidDigest and ends the upload with nothing stored; missing parts leave it open.
   */
  async complete(
    caller: string,
    uploadId: unknown,
    hex: string,
    parts: unknown,
  ): Promise<CompletedUpload> {
    const upload = await this.owned(caller, uploadId)
    const listed = checkParts(parts)
    return this.exclusive(upload.id, 'CompletionFailed', async (hold) => {
      try {
        const { size } = await storeCall('CompletionFailed', () =>
          this.store.completeUpload(storeUpload(upload), hex, listed, {
            maxBytes: this.maxBlobBytes,
            onAssembled: () => this.sessions.markAssembled(upload.id),
          }),
        )
        // Only the call that ended the upload counts it (a hold lost meanwhile counts nothing).
        const ended = await hold.end()
        return {
          hex,
          size,
          did: ended ? upload.did : null,
          repo: ended ? upload.repo : null,
        }
      } catch (err) {
        if (err instanceof BlobStoreError && err.code === 'InvalidDigest') {
          await hold.end()
        }
        throw err
      }
    })
  }

  async abort(caller: string, uploadId: unknown): Promise<void> {
    const upload = await this.owned(caller, uploadId)
    await this.exclusive(upload.id, 'AbortFailed', (hold) =>
      this.drop(upload, hold),
    )
  }

  private async drop(upload: UploadRecord, hold: UploadHold): Promise<void> {
    await storeCall('AbortFailed', () =>
      this.store.abortUpload(storeUpload(upload)),
    )
    await hold.end()
  }

  /**
   * Aborts uploads started more than the TTL ago, then removes what uploads left in the store
   * without a row. Failures are logged and retried by the next sweep.
   */
  async sweep(now = Date.now()): Promise<{ expired: number; orphans: number }> {
    const before = now - this.ttlMs
    let expired = 0
    let stale: UploadRecord[] = []
    try {
      stale = await this.sessions.olderThan(before, SWEEP_BATCH)
    } catch (err) {
      this.log?.warn({ err }, 'could not list expired uploads')
    }
    for (const upload of stale) {
      try {
        const hold = await this.sessions.hold(upload.id)
        // Being completed or aborted by a call: that call ends it.
        if (!hold) continue
        try {
          await this.drop(upload, hold)
        } finally {
          await hold.release()
        }
        expired++
      } catch (err) {
        this.log?.warn({ err, uploadId: upload.id }, 'could not sweep upload')
      }
    }
    let orphans = 0
    try {
      orphans = await this.store.sweepOrphans(
        (id) => this.sessions.isKnown(id),
        before,
      )
    } catch (err) {
      this.log?.warn({ err }, 'could not sweep orphaned uploads')
    }
    if (expired + orphans > 0) {
      this.log?.info({ expired, orphans }, 'swept unfinished uploads')
    }
    return { expired, orphans }
  }

  /** The caller's upload, or InvalidUploadId (unknown and foreign ids alike). */
  private async owned(
    caller: string,
    uploadId: unknown,
  ): Promise<UploadRecord> {
    const upload =
      typeof uploadId === 'string' &&
      uploadId.length > 0 &&
      uploadId.length <= MAX_ID_LENGTH
        ? await this.sessions.get(uploadId)
        : undefined
    if (!upload || upload.caller !== caller) {
      throw new BlobStoreError(
        'no such upload was started by this caller (or it has ended)',
        'InvalidUploadId',
      )
    }
    return upload
  }

  private async exclusive<T>(
    id: string,
    code: BlobErrorCode,
    fn: (hold: UploadHold) => Promise<T>,
  ): Promise<T> {
    const hold = await this.sessions.hold(id)
    if (!hold) {
      throw new BlobStoreError(
        'this upload is being completed or aborted by another call',
        code,
      )
    }
    try {
      return await fn(hold)
    } finally {
      await hold.release()
    }
  }
}

const storeUpload = (u: UploadRecord): StoreUpload => ({
  id: u.id,
  storeId: u.storeId,
  assembled: u.assembled,
})

const checkPartNumber = (n: unknown): number => {
  if (
    typeof n !== 'number' ||
    !Number.isInteger(n) ||
    n < MIN_PART_NUMBER ||
    n > MAX_PART_NUMBER
  ) {
    throw new BlobStoreError(
      `partNumber must be a whole number from ${MIN_PART_NUMBER} to ${MAX_PART_NUMBER}`,
      'InvalidPartNumber',
    )
  }
  return n
}

/** The listed parts in ascending order; each part once, each a part that could exist. */
const checkParts = (parts: unknown): ListedPart[] => {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new BlobStoreError('parts must list the upload parts', 'MissingParts')
  }
  const listed: ListedPart[] = parts.map((p: unknown) => {
    const { partNumber, etag } = (p ?? {}) as Record<string, unknown>
    if (
      typeof partNumber !== 'number' ||
      !Number.isInteger(partNumber) ||
      partNumber < MIN_PART_NUMBER ||
      partNumber > MAX_PART_NUMBER ||
      typeof etag !== 'string' ||
      etag.length === 0 ||
      etag.length > MAX_ID_LENGTH
    ) {
      throw new BlobStoreError(
        'each part must have a partNumber from 1 to 10000 and the etag its upload answered',
        'MissingParts',
      )
    }
    return { partNumber, etag }
  })
  listed.sort((a, b) => a.partNumber - b.partNumber)
  for (let i = 1; i < listed.length; i++) {
    if (listed[i].partNumber === listed[i - 1].partNumber) {
      throw new BlobStoreError(
        `part ${listed[i].partNumber} is listed more than once`,
        'MissingParts',
      )
    }
  }
  return listed
}

/** Runs a store call; anything that is not already a BlobStoreError becomes `code`. */
const storeCall = async <T>(
  code: BlobErrorCode,
  fn: () => Promise<T>,
): Promise<T> => {
  try {
    return await fn()
  } catch (err) {
    // The hold's own refusals (its uploads unreachable) pass as they are.
    if (err instanceof BlobStoreError || err instanceof XRPCError) throw err
    throw new BlobStoreError((err as Error).message, code, { cause: err })
  }
}
