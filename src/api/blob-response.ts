import { Readable } from 'node:stream'
import type { BlobStore } from '../blobs/store.ts'
import { XRPCError } from '../errors.ts'

export type ByteRange = { start: number; end: number }

/**
 * The single byte range a `Range` header asks for: undefined for the whole blob (no header, or
 * one this hold does not honour, such as several ranges), or a 416 error when unsatisfiable.
 */
export const parseRange = (
  header: string | undefined,
  size: number,
): ByteRange | undefined => {
  if (!header) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined
  let start: number
  let end: number
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) throw unsatisfiable(size)
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
    if (start > end || start >= size) throw unsatisfiable(size)
  }
  return { start, end }
}

const unsatisfiable = (size: number) =>
  new XRPCError(
    416,
    `requested range is not satisfiable for a blob of ${size} bytes`,
    'InvalidRange',
  )

export const BLOB_HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-disposition': 'attachment',
  'content-security-policy': "default-src 'none'; sandbox",
  'accept-ranges': 'bytes',
}

/** Below this, a blob is read whole instead of streamed. */
const SMALL_BLOB_BYTES = 64 * 1024

/** Sends a stored blob (or one range of it) with length and safety headers, streamed when large. */
export const blobResponse = async (
  blobs: BlobStore,
  hex: string,
  size: number,
  range: ByteRange | undefined,
  head: boolean,
): Promise<Response> => {
  const headers: Record<string, string> = {
    ...BLOB_HEADERS,
    'content-type': 'application/octet-stream',
    etag: `"sha256:${hex}"`,
    'cache-control': 'private, max-age=31536000, immutable',
  }
  let status = 200
  let length = size
  if (range) {
    status = 206
    length = range.end - range.start + 1
    headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`
  }
  headers['content-length'] = String(length)
  if (head || length === 0) return new Response(null, { status, headers })
  if (length <= SMALL_BLOB_BYTES) {
    const bytes = await blobs.readSmall(hex, range?.start ?? 0, length)
    return new Response(bytes, { status, headers })
  }
  const stream = Readable.toWeb(
    await blobs.read(hex, range),
  ) as unknown as ReadableStream<Uint8Array>
  return new Response(stream, { status, headers })
}
