import type { Readable } from 'node:stream'

/** Bytes `start` to `end` of a blob, both included (as a `Range` header names them). */
export type ByteRange = { start: number; end: number }

/** A URL that grants one thing until `expiresAt` (ISO 8601). */
export type SignedUrl = { url: string; expiresAt: string }

/** Where a client sends one part's bytes itself (ATCR's getPartUploadUrl answer). */
export type PartUrl = SignedUrl & {
  method: 'PUT'
  /** Headers the PUT must carry, if any. */
  headers?: Record<string, string>
}

/** A part as the client lists it when it completes an upload. */
export type ListedPart = { partNumber: number; etag: string }

/** What a store needs to know of an upload; the upload service keeps the rest. */
export type StoreUpload = {
  /** The hold's own upload id (what clients see). */
  id: string
  /** The store's own id for it (an S3 UploadId); null when the store has none. */
  storeId: string | null
  /** The store's side was assembled by an earlier completion that failed after it. */
  assembled: boolean
}

export type CompleteOptions = {
  maxBytes: number
  /** Called once the store's side is assembled and cannot take parts any more. */
  onAssembled: () => void | Promise<void>
}

/**
 * Where blobs live: `disk` (the data dir) or `s3` (an S3-compatible bucket). Everything above it
 * (getBlob, uploads, counting) is the same code for both. Blobs are named by their sha256 (64
 * lowercase hex characters); nothing becomes visible under a digest before its bytes were hashed
 * to it. Failures of the store itself are BlobStoreError `StorageUnavailable`.
 */
export interface BlobStore {
  readonly kind: 'disk' | 's3'

  /** Prepares the store (directories, spool space); run once before use. */
  init(): Promise<void>

  /** Size in bytes, or null when the blob is not stored. */
  size(hex: string): Promise<number | null>

  /** Reads a small blob (or range) whole: cheaper than a stream for configs and the like. */
  readSmall(hex: string, start: number, length: number): Promise<Buffer>

  /** The blob's bytes (or one range of them) as a stream. */
  read(hex: string, range?: ByteRange): Promise<Readable>

  /**
   * A URL the client fetches the blob from without the hold (an S3 presigned URL), or null
   * when the store has none (disk): the API then hands out a URL the hold signs and serves.
   */
  directUrl(hex: string, method: 'GET' | 'HEAD', now?: number): SignedUrl | null

  /**
   * Stores `body` under `hex` if its sha256 is `hex`, and returns its size. `length` is the
   * declared length, when known. Throws DigestMismatchError or BlobTooLargeError and stores
   * nothing otherwise; a blob already stored under `hex` is never damaged.
   */
  put(
    hex: string,
    body: Readable,
    maxBytes: number,
    length?: number,
  ): Promise<number>

  /** Starts the store's side of a multipart upload; returns the store's id for it, if any. */
  startUpload(id: string): Promise<string | null>

  /**
   * Where the client PUTs part `partNumber` itself (a presigned UploadPart URL), or null when
   * the store has none (disk): the API then signs a URL of the hold's own for `putPart`.
   */
  partUrl(upload: StoreUpload, partNumber: number, now?: number): PartUrl | null

  /** Stores one part sent through the hold, streamed; its ETag is what completion lists. */
  putPart(
    upload: StoreUpload,
    partNumber: number,
    body: Readable,
    opts: { length?: number; maxBytes: number },
  ): Promise<{ etag: string; size: number }>

  /**
   * Assembles the listed parts and makes them visible under `hex` only if they hash to it.
   * MissingParts (a part not uploaded, or an ETag not of its latest version) leaves the upload
   * open; InvalidDigest ends it with nothing stored.
   */
  completeUpload(
    upload: StoreUpload,
    hex: string,
    parts: ListedPart[],
    opts: CompleteOptions,
  ): Promise<{ size: number }>

  /** Drops an upload and everything stored for it (an upload already gone is no error). */
  abortUpload(upload: StoreUpload): Promise<void>

  /**
   * Removes what unfinished uploads left in the store without a record (a crash between the
   * store and the database): those of `isKnown(id)` false, started before `before` (ms).
   * Returns how many it removed.
   */
  sweepOrphans(
    isKnown: (id: string) => boolean | Promise<boolean>,
    before: number,
  ): Promise<number>

  /** Fails (StorageUnavailable) when the store cannot be reached now: the health check. */
  ping(): Promise<void>

  /** Lets go of connections and handles. */
  close(): Promise<void>
}

/** ATCR's part numbers: S3's limits. */
export const MIN_PART_NUMBER = 1
export const MAX_PART_NUMBER = 10_000
