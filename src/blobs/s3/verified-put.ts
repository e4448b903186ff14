import { createHash } from 'node:crypto'
import { Transform, type Readable } from 'node:stream'
import { checkDigest } from '../byte-check.ts'
import { BlobTooLargeError } from '../errors.ts'
import type { S3Client } from './client.ts'

/**
 * A single upload through the hold, straight to the blob's own key with no temp object and no
 * copy, yet never stored unless its bytes hash to `hex`: the body is hashed on its way and its
 * last chunk held back until the hash is known. On a mismatch the request to S3 is cut short
 * of its Content-Length, and S3 (whose PUTs are atomic) stores nothing, so a good blob already
 * under the key survives too. Needs the length up front: S3 takes no chunked body.
 */
export const putVerified = async (
  client: S3Client,
  key: string,
  body: Readable,
  length: number,
  hex: string,
): Promise<void> => {
  const hash = createHash('sha256')
  if (length === 0) {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (chunk.length > 0) throw longer(length)
    }
    checkDigest(hash.digest('hex'), hex)
    await client.putObject(key, Buffer.alloc(0))
    return
  }
  let held: Buffer | undefined
  let seen = 0
  let failure: Error | undefined
  const gate = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (seen > length) {
        done(longer(length))
        return
      }
      hash.update(chunk)
      const previous = held
      held = chunk
      done(null, previous)
    },
    flush(done) {
      try {
        if (seen < length) {
          throw new Error(`the body ended after ${seen} of ${length} bytes`)
        }
        checkDigest(hash.digest('hex'), hex)
        done(null, held)
      } catch (err) {
        done(err as Error)
      }
    },
  })
  gate.on('error', (err) => (failure ??= err))
  body.on('error', (err) => {
    failure ??= err
    gate.destroy(err)
  })
  body.pipe(gate)
  try {
    await client.putObject(key, { stream: gate, length })
  } catch (err) {
    throw failure ?? err
  }
}

const longer = (length: number) =>
  new BlobTooLargeError(`the body is longer than its declared ${length} bytes`)
