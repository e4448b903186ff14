import { randomUUID, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { meterBytes, writeMetered } from '../byte-check.ts'
import { BlobStoreError } from '../errors.ts'
import type { S3Client } from './client.ts'

export type RelayOptions = {
  /** The declared length (Content-Length), when the client gave one. */
  length?: number
  maxBytes: number
  /** Where a part of unknown length waits until its length is known. */
  spoolDir: string
  /** Sees every byte on its way (an in-order sha256). */
  hash?: Hash
}

/**
 * Sends one part that came through the hold on to S3 UploadPart, streamed. S3 needs the length
 * up front (it takes no chunked body), so a part with a declared length goes straight through,
 * and one without is first spooled to a file (at most `maxBytes`). A client that stops early
 * leaves S3 short of the length, and S3 stores nothing. Memory stays at a few stream buffers
 * whatever the part size.
 */
export const relayPart = async (
  client: S3Client,
  key: string,
  uploadId: string,
  partNumber: number,
  body: Readable,
  opts: RelayOptions,
): Promise<{ etag: string; size: number }> => {
  if (opts.length === undefined)
    return relaySpooled(client, key, uploadId, partNumber, body, opts)
  const length = opts.length
  let seen = 0
  let bodyError: Error | undefined
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (seen > length) {
        done(tooLarge(`the part is longer than its declared ${length} bytes`))
        return
      }
      opts.hash?.update(chunk)
      done(null, chunk)
    },
  })
  body.on('error', (err) => {
    bodyError = err
    tap.destroy(err)
  })
  tap.on('error', (err) => (bodyError ??= err))
  body.pipe(tap)
  try {
    const etag = await client.uploadPart(key, uploadId, partNumber, {
      stream: tap,
      length,
    })
    return { etag, size: length }
  } catch (err) {
    // The client's side failed first: that is the cause, not the store.
    throw bodyError ?? err
  }
}

const relaySpooled = async (
  client: S3Client,
  key: string,
  uploadId: string,
  partNumber: number,
  body: Readable,
  opts: RelayOptions,
): Promise<{ etag: string; size: number }> => {
  const spool = join(opts.spoolDir, randomUUID())
  try {
    const meter = meterBytes(
      opts.maxBytes,
      () => tooLarge(`a part may have at most ${opts.maxBytes} bytes`),
      opts.hash,
    )
    await writeMetered(body, meter, spool)
    const { size } = meter
    const etag = await client.uploadPart(key, uploadId, partNumber, {
      stream: createReadStream(spool),
      length: size,
    })
    return { etag, size }
  } finally {
    await rm(spool, { force: true })
  }
}

const tooLarge = (message: string) =>
  new BlobStoreError(message, 'PayloadTooLarge')
