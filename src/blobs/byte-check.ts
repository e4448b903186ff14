import type { Hash } from 'node:crypto'
import { open, rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { DigestMismatchError } from './errors.ts'

/** A pipeline stage and the count of the bytes it has passed on. */
export type ByteMeter = {
  size: number
  stage: (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>
}

/**
 * Passes chunks on while counting them (and hashing them, given a hash); more than `maxBytes`
 * fails the pipeline with `tooLarge()` before the chunk is hashed or written.
 */
export const meterBytes = (
  maxBytes: number,
  tooLarge: () => Error,
  hash?: Hash,
): ByteMeter => {
  const meter: ByteMeter = {
    size: 0,
    async *stage(source) {
      for await (const chunk of source) {
        meter.size += chunk.length
        if (meter.size > maxBytes) throw tooLarge()
        hash?.update(chunk)
        yield chunk
      }
    },
  }
  return meter
}

/**
 * Pipes `body` through `meter` into a new file at `path` (which must not exist). When that fails
 * (too large, the client gone, a full disk), the file is gone before this rejects. The file is
 * created before the first byte is read: a write stream opening it itself could still be
 * opening when the pipeline failed, and create the file after its removal.
 */
export const writeMetered = async (
  body: Readable,
  meter: ByteMeter,
  path: string,
  mode?: number,
): Promise<void> => {
  const file = (await open(path, 'wx', mode)).createWriteStream()
  try {
    await pipeline(body, meter.stage, file)
  } catch (err) {
    // Not events.once: the stream's own 'error' (this error) would reject it.
    if (!file.closed) await new Promise((closed) => file.once('close', closed))
    await rm(path, { force: true })
    throw err
  }
}

/** Throws DigestMismatch unless the bytes' sha256 (`actual`, hex) is `hex`. */
export const checkDigest = (actual: string, hex: string): void => {
  if (actual !== hex) {
    throw new DigestMismatchError(
      `content sha256 is ${actual}, not the digest ${hex}`,
    )
  }
}
