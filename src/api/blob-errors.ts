import type { BlobErrorCode, BlobStoreError } from '../blobs/errors.ts'
import { XRPCError } from '../errors.ts'

/** The lexicons' error names are the store's codes; what differs is the status. */
const STATUS: Record<BlobErrorCode, number> = {
  InvalidUploadId: 400,
  InvalidPartNumber: 400,
  MissingParts: 400,
  InvalidDigest: 400,
  UploadFailed: 400,
  CompletionFailed: 400,
  AbortFailed: 400,
  PayloadTooLarge: 413,
  BlobNotFound: 404,
  // The store is down, not the caller wrong: counts and everything off the store keep working.
  StorageUnavailable: 503,
}

/** A blob store's refusal or failure as the XRPC error it answers. */
export const blobXrpcError = (err: BlobStoreError): XRPCError =>
  new XRPCError(STATUS[err.code], err.message, err.code)
