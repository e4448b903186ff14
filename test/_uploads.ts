import { ids } from '../src/ids.ts'
import { createHash } from 'node:crypto'
import { tokenFor } from './_access.ts'
import { startS3, s3Env, type TestS3 } from './_s3.ts'
import { startHold, TEST_OWNER, xrpc, type TestHold } from './_util.ts'

export const INITIATE = ids.HoldInitiateUpload
export const PART_URL = ids.HoldGetPartUploadUrl
export const UPLOAD_PART = ids.HoldUploadPart
export const COMPLETE = ids.HoldCompleteUpload
export const ABORT = ids.HoldAbortUpload

export type StoreKind = 'disk' | 's3'

/** Where the upload procedures are called: a TestHold, or a machine of a Redis cluster. */
export type UploadTarget = Pick<TestHold, 'url' | 'did'>

/** A hold on `kind`, with its own S3 server for s3; `stop` stops both. */
export const holdOn = async (
  kind: StoreKind,
  env: Record<string, string> = {},
): Promise<TestHold & { s3: TestS3 | undefined }> => {
  const s3 = kind === 's3' ? await startS3() : undefined
  const h = await startHold({
    env: s3 ? s3Env(s3, env) : env,
    overrides: { s3Client: { retryDelaysMs: [] } },
  })
  return {
    ...h,
    s3,
    stop: async () => {
      await h.stop()
      await s3?.close()
    },
  }
}

export const digestOf = (bytes: Uint8Array): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** Calls one of the upload procedures with JSON, as `as` (the owner by default). */
export const call = async <T = Record<string, unknown>>(
  h: UploadTarget,
  nsid: string,
  body: unknown,
  as = TEST_OWNER,
) =>
  xrpc<T>(
    h.url,
    nsid,
    {},
    {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(await tokenFor(h, as, nsid)),
      },
      body: JSON.stringify(body),
    },
  )

/** uploadPart: the part's bytes through the hold. */
export const uploadPart = async (
  h: UploadTarget,
  uploadId: string,
  partNumber: number | string,
  bytes: Uint8Array,
  as = TEST_OWNER,
) =>
  xrpc<{ etag: string }>(
    h.url,
    UPLOAD_PART,
    {},
    {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'x-upload-id': uploadId,
        'x-part-number': String(partNumber),
        ...(await tokenFor(h, as, UPLOAD_PART)),
      },
      body: bytes,
    },
  )

/** Splits bytes into `n` parts of (nearly) equal size. */
export const split = (bytes: Buffer, n: number): Buffer[] => {
  const size = Math.ceil(bytes.length / n)
  return Array.from({ length: n }, (_, i) =>
    bytes.subarray(i * size, (i + 1) * size),
  )
}
