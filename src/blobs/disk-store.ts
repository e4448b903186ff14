import { createHash, randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs'
import { mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

export class DigestMismatchError extends Error {}
export class BlobTooLargeError extends Error {}

/**
 * Content-addressed blobs under `<dataDir>/blobs/sha256/<2 hex>/<64 hex>`. Uploads go to a temp
 * file, are hashed while written, fsynced and renamed into place only when the sha256 matches,
 * so a crash or a bad upload never leaves a partial blob under a digest.
 */
/** Blobs are immutable once stored, so their sizes can be remembered. */
const SIZE_CACHE_ENTRIES = 100_000

export class DiskBlobStore {
  private readonly root: string
  private readonly tmpDir: string
  private readonly sizes = new Map<string, number>()

  constructor(dataDir: string) {
    this.root = join(dataDir, 'blobs', 'sha256')
    this.tmpDir = join(dataDir, 'blobs', 'tmp')
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true })
    await rm(this.tmpDir, { recursive: true, force: true })
    await mkdir(this.tmpDir, { recursive: true })
  }

  private pathFor(hex: string): string {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256 hex: ${hex}`)
    return join(this.root, hex.slice(0, 2), hex)
  }

  /** Size in bytes, or null when the blob is not stored. */
  async size(hex: string): Promise<number | null> {
    const known = this.sizes.get(hex)
    if (known !== undefined) return known
    try {
      const { size } = await stat(this.pathFor(hex))
      this.remember(hex, size)
      return size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }

  private remember(hex: string, size: number): void {
    if (this.sizes.size >= SIZE_CACHE_ENTRIES) {
      // Drop the oldest entry; Map iterates in insertion order.
      this.sizes.delete(this.sizes.keys().next().value!)
    }
    this.sizes.set(hex, size)
  }

  /** Reads a small blob (or range) whole, cheaper than a stream for layer configs and the like. */
  async readSmall(hex: string, start: number, length: number): Promise<Buffer> {
    const fh = await open(this.pathFor(hex), 'r')
    try {
      const buf = Buffer.allocUnsafe(length)
      let done = 0
      while (done < length) {
        const { bytesRead } = await fh.read(
          buf,
          done,
          length - done,
          start + done,
        )
        if (bytesRead === 0)
          throw new Error(`blob ${hex} is shorter than expected`)
        done += bytesRead
      }
      return buf
    } finally {
      await fh.close()
    }
  }

  read(hex: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.pathFor(hex), range)
  }

  /**
   * Stores body under hex if its sha256 is hex. Returns the size. Throws DigestMismatchError or
   * BlobTooLargeError and stores nothing otherwise.
   */
  async put(hex: string, body: Readable, maxBytes: number): Promise<number> {
    const tmp = join(this.tmpDir, randomUUID())
    const hash = createHash('sha256')
    let size = 0
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            size += chunk.length
            if (size > maxBytes) {
              throw new BlobTooLargeError(
                `blob is larger than ${maxBytes} bytes`,
              )
            }
            hash.update(chunk)
            yield chunk
          }
        },
        createWriteStream(tmp, { flags: 'wx', mode: 0o644 }),
      )
      const actual = hash.digest('hex')
      if (actual !== hex) {
        throw new DigestMismatchError(
          `content sha256 is ${actual}, not the digest ${hex}`,
        )
      }
      const fh = await open(tmp, 'r')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
      const dest = this.pathFor(hex)
      await mkdir(dirname(dest), { recursive: true })
      await rename(tmp, dest)
      this.remember(hex, size)
      return size
    } finally {
      await rm(tmp, { force: true })
    }
  }
}
