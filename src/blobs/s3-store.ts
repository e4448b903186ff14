import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import {
  BlobStoreError,
  BlobTooLargeError,
  type BlobErrorCode,
} from './errors.ts'
import {
  S3Client,
  S3Error,
  S3Unreachable,
  type S3ClientOptions,
} from './s3/client.ts'
import { checkDigest, meterBytes, writeMetered } from './byte-check.ts'
import { InOrderHash } from './s3/in-order-hash.ts'
import { blobKey, uploadIdOf, uploadKey, uploadsPrefix } from './s3/keys.ts'
import { promote } from './s3/promote.ts'
import { relayPart } from './s3/relay.ts'
import { toCdn, type S3Target } from './s3/sigv4.ts'
import { putVerified } from './s3/verified-put.ts'
import { SizeCache } from './size-cache.ts'
import type {
  BlobStore,
  ByteRange,
  CompleteOptions,
  ListedPart,
  PartUrl,
  SignedUrl,
  StoreUpload,
} from './store.ts'

/** How long presigned URLs work. */
const URL_TTL_SECONDS = 15 * 60

export type S3StoreOptions = {
  target: S3Target
  /** Prepended to every key: empty, or ending in `/`. */
  prefix: string
  /** Origin that download URLs are moved to after signing (HOLD_CDN_URL). */
  cdnUrl?: string
  /** Where parts and single uploads of unknown length wait for their length. */
  spoolDir: string
  client?: S3ClientOptions
  /** Multipart copy thresholds (tests lower them). */
  copyLimit?: number
  copyPartBytes?: number
}

/**
 * Blobs in an S3-compatible bucket (Tigris, R2, S3, MinIO), under ATCR's key layout. Downloads
 * and part uploads can bypass the hold through presigned URLs; everything that reaches a blob
 * key has been hashed to its digest first.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3'
  readonly client: S3Client
  private readonly prefix: string
  private readonly cdnUrl: string | undefined
  private readonly spoolDir: string
  private readonly copyLimit: number | undefined
  private readonly copyPartBytes: number | undefined
  private readonly sizes = new SizeCache()
  private readonly hashes = new Map<string, InOrderHash>()

  constructor(opts: S3StoreOptions) {
    this.client = new S3Client(opts.target, opts.client)
    this.prefix = opts.prefix
    this.cdnUrl = opts.cdnUrl
    this.spoolDir = opts.spoolDir
    this.copyLimit = opts.copyLimit
    this.copyPartBytes = opts.copyPartBytes
  }

  async init(): Promise<void> {
    await rm(this.spoolDir, { recursive: true, force: true })
    await mkdir(this.spoolDir, { recursive: true })
  }

  private key(hex: string): string {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256 hex: ${hex}`)
    return blobKey(this.prefix, hex)
  }

  async size(hex: string): Promise<number | null> {
    const known = this.sizes.get(hex)
    if (known !== undefined) return known
    const head = await s3Call('StorageUnavailable', () =>
      this.client.headObject(this.key(hex)),
    )
    if (head) this.sizes.set(hex, head.size)
    return head?.size ?? null
  }

  async readSmall(hex: string, start: number, length: number): Promise<Buffer> {
    const body = await this.read(hex, { start, end: start + length - 1 })
    const chunks: Buffer[] = []
    for await (const chunk of body) chunks.push(chunk as Buffer)
    const bytes = Buffer.concat(chunks)
    if (bytes.length !== length) {
      throw new BlobStoreError(
        `S3 sent ${bytes.length} bytes of blob ${hex}, not ${length}`,
        'StorageUnavailable',
      )
    }
    return bytes
  }

  async read(hex: string, range?: ByteRange): Promise<Readable> {
    const res = await s3Call('StorageUnavailable', () =>
      this.client.getObject(this.key(hex), range),
    )
    return res.body
  }

  directUrl(hex: string, method: 'GET' | 'HEAD', now = Date.now()): SignedUrl {
    const query = method === 'GET' ? { 'x-id': 'GetObject' } : undefined
    const url = this.client.signer.presign(
      method,
      this.key(hex),
      URL_TTL_SECONDS,
      query,
      now,
    )
    return {
      url: this.cdnUrl
        ? toCdn(url, this.client.signer.origin, this.cdnUrl)
        : url,
      expiresAt: expiresAt(now),
    }
  }

  async put(
    hex: string,
    body: Readable,
    maxBytes: number,
    length?: number,
  ): Promise<number> {
    if (length !== undefined && length > maxBytes) {
      throw new BlobTooLargeError(`blob is larger than ${maxBytes} bytes`)
    }
    const key = this.key(hex)
    if (length !== undefined) {
      await s3Call('StorageUnavailable', () =>
        putVerified(this.client, key, body, length, hex),
      )
      this.sizes.set(hex, length)
      return length
    }
    // No length: spool and hash first, then send what matched.
    const spool = join(this.spoolDir, randomUUID())
    try {
      const size = await spoolVerified(body, spool, hex, maxBytes)
      await s3Call('StorageUnavailable', () =>
        this.client.putObject(key, {
          stream: createReadStream(spool),
          length: size,
        }),
      )
      this.sizes.set(hex, size)
      return size
    } finally {
      await rm(spool, { force: true })
    }
  }

  private temp(id: string): string {
    return uploadKey(this.prefix, id)
  }

  async startUpload(id: string): Promise<string> {
    const storeId = await s3Call('StorageUnavailable', () =>
      this.client.createMultipartUpload(this.temp(id)),
    )
    this.hashes.set(id, new InOrderHash())
    return storeId
  }

  partUrl(upload: StoreUpload, partNumber: number, now = Date.now()): PartUrl {
    // Without a hash here (a restart, or another machine started it) the digest is read back.
    this.hashes.get(upload.id)?.bypassed()
    const url = this.client.signer.presign(
      'PUT',
      this.temp(upload.id),
      URL_TTL_SECONDS,
      {
        partNumber: String(partNumber),
        uploadId: storeIdOf(upload),
        'x-id': 'UploadPart',
      },
      now,
    )
    return { url, method: 'PUT', expiresAt: expiresAt(now) }
  }

  async putPart(
    upload: StoreUpload,
    partNumber: number,
    body: Readable,
    opts: { length?: number; maxBytes: number },
  ): Promise<{ etag: string; size: number }> {
    // A restart forgot what came before: the digest is read back at completion.
    const inOrder = this.hashes.get(upload.id)
    const hash = inOrder?.begin(partNumber)
    try {
      const stored = await s3Call('UploadFailed', () =>
        relayPart(
          this.client,
          this.temp(upload.id),
          storeIdOf(upload),
          partNumber,
          body,
          { ...opts, spoolDir: this.spoolDir, hash },
        ),
      )
      if (hash) inOrder!.commit(partNumber, hash, stored.etag)
      return stored
    } catch (err) {
      if (hash) inOrder!.fail()
      throw err
    }
  }

  async completeUpload(
    upload: StoreUpload,
    hex: string,
    parts: ListedPart[],
    opts: CompleteOptions,
  ): Promise<{ size: number }> {
    const temp = this.temp(upload.id)
    let knownHex: string | undefined
    if (!upload.assembled) {
      knownHex = this.hashes.get(upload.id)?.digestFor(parts)
      await this.assemble(upload, temp, parts)
      await opts.onAssembled()
    }
    this.hashes.delete(upload.id)
    const { size } = await s3Call('CompletionFailed', () =>
      promote(this.client, temp, this.key(hex), hex, {
        knownHex,
        maxBytes: opts.maxBytes,
        copyLimit: this.copyLimit,
        copyPartBytes: this.copyPartBytes,
      }),
    )
    this.sizes.set(hex, size)
    return { size }
  }

  private async assemble(
    upload: StoreUpload,
    temp: string,
    parts: ListedPart[],
  ): Promise<void> {
    try {
      await this.client.completeMultipartUpload(temp, storeIdOf(upload), parts)
    } catch (err) {
      if (!(err instanceof S3Error)) throw toStoreError(err, 'CompletionFailed')
      // An earlier call assembled it and its answer was lost: carry on from there.
      if (err.code === 'NoSuchUpload' && (await this.client.headObject(temp))) {
        return
      }
      if (err.code === 'InvalidPart' || err.code === 'InvalidPartOrder') {
        throw new BlobStoreError(
          `a listed part was not uploaded, or its ETag is not that of its latest upload (${err.code})`,
          'MissingParts',
        )
      }
      if (err.code === 'EntityTooSmall') {
        throw new BlobStoreError(
          'every part but the last must have at least 5 MiB (EntityTooSmall)',
          'CompletionFailed',
        )
      }
      throw toStoreError(err, 'CompletionFailed')
    }
  }

  async abortUpload(upload: StoreUpload): Promise<void> {
    this.hashes.delete(upload.id)
    const temp = this.temp(upload.id)
    await s3Call('AbortFailed', async () => {
      if (!upload.assembled && upload.storeId) {
        await this.client
          .abortMultipartUpload(temp, upload.storeId)
          .catch((err: unknown) => {
            if (!(err instanceof S3Error && err.code === 'NoSuchUpload')) {
              throw err
            }
          })
      }
      // Also when not marked assembled: a completion may have got that far and no further.
      await this.client.deleteObject(temp)
    })
  }

  async sweepOrphans(
    isKnown: (id: string) => boolean | Promise<boolean>,
    before: number,
  ): Promise<number> {
    const orphan = async (key: string, at: number) => {
      const id = uploadIdOf(this.prefix, key)
      return id !== undefined && at < before && !(await isKnown(id))
    }
    // Uploads another machine of a cluster completed or aborted: their hashes go too.
    for (const id of [...this.hashes.keys()]) {
      if (!(await isKnown(id))) this.hashes.delete(id)
    }
    let removed = 0
    const prefix = uploadsPrefix(this.prefix)
    for (const u of await this.client.listMultipartUploads(prefix)) {
      if (!(await orphan(u.key, u.initiated))) continue
      await this.client.abortMultipartUpload(u.key, u.uploadId)
      removed++
    }
    for (const o of await this.client.listObjects(prefix)) {
      if (!(await orphan(o.key, o.lastModified))) continue
      await this.client.deleteObject(o.key)
      removed++
    }
    return removed
  }

  ping(): Promise<void> {
    return s3Call('StorageUnavailable', () => this.client.headBucket())
  }

  async close(): Promise<void> {
    this.client.close()
  }
}

const expiresAt = (now: number): string =>
  new Date((Math.floor(now / 1000) + URL_TTL_SECONDS) * 1000).toISOString()

const storeIdOf = (upload: StoreUpload): string => {
  if (!upload.storeId) throw new Error(`upload ${upload.id} has no S3 UploadId`)
  return upload.storeId
}

/** S3's own failures, as the store's errors; `code` for a refusal of this one request. */
const toStoreError = (err: unknown, code: BlobErrorCode): unknown => {
  if (err instanceof S3Unreachable) {
    return new BlobStoreError(
      `S3 cannot be reached: ${err.message}`,
      'StorageUnavailable',
      { cause: err },
    )
  }
  if (!(err instanceof S3Error)) return err
  if (err.code === 'NoSuchUpload') {
    return new BlobStoreError(
      'the upload is gone from the bucket; start a new upload',
      'InvalidUploadId',
      { cause: err },
    )
  }
  const storage = err.status >= 500 || err.status === 403
  return new BlobStoreError(
    `S3 answered ${err.message}`,
    storage ? 'StorageUnavailable' : code,
    { cause: err },
  )
}

const s3Call = async <T>(
  code: BlobErrorCode,
  fn: () => Promise<T>,
): Promise<T> => {
  try {
    return await fn()
  } catch (err) {
    throw toStoreError(err, code)
  }
}

/** Writes body to `path` while hashing it; DigestMismatch or too large leave nothing. */
const spoolVerified = async (
  body: Readable,
  path: string,
  hex: string,
  maxBytes: number,
): Promise<number> => {
  const hash = createHash('sha256')
  const meter = meterBytes(
    maxBytes,
    () => new BlobTooLargeError(`blob is larger than ${maxBytes} bytes`),
    hash,
  )
  await writeMetered(body, meter, path)
  checkDigest(hash.digest('hex'), hex)
  return meter.size
}
