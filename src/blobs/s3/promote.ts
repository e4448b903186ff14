import { createHash } from 'node:crypto'
import { BlobStoreError } from '../errors.ts'
import type { S3Client } from './client.ts'

/** CopyObject copies at most this much; beyond it a copy is a multipart UploadPartCopy. */
export const COPY_LIMIT = 5 * 1024 ** 3
/** Ranges of a multipart copy: all the same size but the last (R2 requires it). */
export const COPY_PART_BYTES = 1024 ** 3

export type PromoteOptions = {
  /** The sha256 the hold computed as the parts came through, when it saw all of them. */
  knownHex?: string
  maxBytes: number
  copyLimit?: number
  copyPartBytes?: number
}

/**
 * Makes an assembled upload (the object `temp`) visible under its blob key `dest`, only if its
 * bytes hash to `hex`: they are read back through sha256 (unless `knownHex` says the hold saw
 * them all, in order), then copied inside S3, no bytes through the hold. On any refusal the
 * temp object is deleted and nothing is stored; a blob already under `dest` is kept as it is
 * (the same digest: the same bytes).
 */
export const promote = async (
  client: S3Client,
  temp: string,
  dest: string,
  hex: string,
  opts: PromoteOptions,
): Promise<{ size: number; readBack: boolean }> => {
  const head = await client.headObject(temp)
  if (!head) {
    throw new BlobStoreError(
      'the assembled upload is gone from the bucket; start a new upload',
      'InvalidUploadId',
    )
  }
  const refuse = async (err: BlobStoreError): Promise<never> => {
    await client.deleteObject(temp)
    throw err
  }
  if (head.size > opts.maxBytes) {
    await refuse(
      new BlobStoreError(
        `the assembled blob has ${head.size} bytes, more than ${opts.maxBytes}`,
        'PayloadTooLarge',
      ),
    )
  }
  const actual = opts.knownHex ?? (await hashObject(client, temp))
  if (actual !== hex) {
    await refuse(
      new BlobStoreError(
        `the assembled bytes hash to sha256:${actual}, not sha256:${hex}; nothing was stored`,
        'InvalidDigest',
      ),
    )
  }
  if (!(await client.headObject(dest))) {
    await copy(client, temp, dest, head.size, opts)
  }
  await client.deleteObject(temp)
  return { size: head.size, readBack: opts.knownHex === undefined }
}

const hashObject = async (client: S3Client, key: string): Promise<string> => {
  const hash = createHash('sha256')
  const res = await client.getObject(key)
  for await (const chunk of res.body) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

const copy = async (
  client: S3Client,
  from: string,
  to: string,
  size: number,
  opts: PromoteOptions,
): Promise<void> => {
  if (size <= (opts.copyLimit ?? COPY_LIMIT)) {
    await client.copyObject(from, to)
    return
  }
  const partBytes = opts.copyPartBytes ?? COPY_PART_BYTES
  const uploadId = await client.createMultipartUpload(to)
  try {
    const parts = []
    for (let start = 0, n = 1; start < size; start += partBytes, n++) {
      const end = Math.min(start + partBytes, size) - 1
      const etag = await client.uploadPartCopy(to, uploadId, n, from, {
        start,
        end,
      })
      parts.push({ partNumber: n, etag })
    }
    await client.completeMultipartUpload(to, uploadId, parts)
  } catch (err) {
    await client.abortMultipartUpload(to, uploadId).catch(() => {})
    throw err
  }
}
