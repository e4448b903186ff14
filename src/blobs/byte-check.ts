import type { Hash } from 'node:crypto'
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

/** Throws DigestMismatch unless the bytes' sha256 (`actual`, hex) is `hex`. */
export const checkDigest = (actual: string, hex: string): void => {
  if (actual !== hex) {
    throw new DigestMismatchError(
      `content sha256 is ${actual}, not the digest ${hex}`,
    )
  }
}
