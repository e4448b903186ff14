/**
 * What went wrong in the blob store, named as ATCR's upload lexicons name their errors (plus the
 * hold's own `PayloadTooLarge` and `BlobNotFound`), so the API maps each to its XRPC error
 * without knowing which store raised it.
 */
export type BlobErrorCode =
  | 'InvalidUploadId'
  | 'InvalidPartNumber'
  | 'MissingParts'
  | 'InvalidDigest'
  | 'UploadFailed'
  | 'CompletionFailed'
  | 'AbortFailed'
  | 'PayloadTooLarge'
  | 'BlobNotFound'
  | 'StorageUnavailable'

/** Message first, the lexicon's error name second, as the XRPC errors take them. */
export class BlobStoreError extends Error {
  readonly code: BlobErrorCode
  constructor(message: string, code: BlobErrorCode, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** A single upload (`method=PUT`) whose bytes do not hash to its digest; nothing was stored. */
export class DigestMismatchError extends Error {}

/** A single upload larger than the hold takes; nothing was stored. */
export class BlobTooLargeError extends Error {}

export const isBlobError = (
  err: unknown,
  code: BlobErrorCode,
): err is BlobStoreError => err instanceof BlobStoreError && err.code === code
