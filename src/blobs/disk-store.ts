import { createHash, randomUUID } from 'node:crypto'
import { accessSync, constants, createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import type { Database } from '../db.ts'
import { checkDigest, meterBytes, writeMetered } from './byte-check.ts'
import { DiskAssembly } from './disk-assembly.ts'
import { BlobStoreError, BlobTooLargeError } from './errors.ts'
import { PartTable } from './part-table.ts'
import { SizeCache } from './size-cache.ts'
import type {
  BlobStore,
  ByteRange,
  CompleteOptions,
  ListedPart,
  StoreUpload,
} from './store.ts'

const HEX_RE = /^[0-9a-f]{64}$/
const UPLOAD_ID_RE = /^[A-Za-z0-9_-]{1,64}$/

/**
 * Content-addressed blobs under `<dataDir>/blobs/sha256/<2 hex>/<64 hex>`. Uploads go to a temp
 * file, are hashed while written, fsynced and renamed into place only when the sha256 matches,
 * so a crash or a bad upload never leaves a partial blob under a digest. Multipart uploads are
 * assembled under `blobs/uploads/<id>/` (DiskAssembly) and renamed into place the same way.
 */
export class DiskBlobStore implements BlobStore {
  readonly kind = 'disk'
  private readonly root: string
  private readonly tmpDir: string
  private readonly uploadsDir: string
  private readonly sizes = new SizeCache()
  private readonly parts: PartTable
  /** Uploads touched since start (others are loaded from their rows when next used). */
  private readonly assemblies = new Map<string, Promise<DiskAssembly>>()

  constructor(dataDir: string, database: Database) {
    this.root = join(dataDir, 'blobs', 'sha256')
    this.tmpDir = join(dataDir, 'blobs', 'tmp')
    this.uploadsDir = join(dataDir, 'blobs', 'uploads')
    this.parts = new PartTable(database)
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true })
    await rm(this.tmpDir, { recursive: true, force: true })
    await mkdir(this.tmpDir, { recursive: true })
    await mkdir(this.uploadsDir, { recursive: true })
  }

  private pathFor(hex: string): string {
    if (!HEX_RE.test(hex)) throw new Error(`not a sha256 hex: ${hex}`)
    return join(this.root, hex.slice(0, 2), hex)
  }

  private uploadDir(id: string): string {
    if (!UPLOAD_ID_RE.test(id)) throw new Error(`not an upload id: ${id}`)
    return join(this.uploadsDir, id)
  }

  async size(hex: string): Promise<number | null> {
    const known = this.sizes.get(hex)
    if (known !== undefined) return known
    try {
      const { size } = await stat(this.pathFor(hex))
      this.sizes.set(hex, size)
      return size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }

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

  async read(hex: string, range?: ByteRange): Promise<Readable> {
    return createReadStream(this.pathFor(hex), range)
  }

  /** The API signs and serves URLs of its own for disk blobs. */
  directUrl(): null {
    return null
  }

  async put(
    hex: string,
    body: Readable,
    maxBytes: number,
    length?: number,
  ): Promise<number> {
    const tooLarge = () =>
      new BlobTooLargeError(`blob is larger than ${maxBytes} bytes`)
    if (length !== undefined && length > maxBytes) throw tooLarge()
    const tmp = join(this.tmpDir, randomUUID())
    const hash = createHash('sha256')
    const meter = meterBytes(maxBytes, tooLarge, hash)
    try {
      await writeMetered(body, meter, tmp, 0o644)
      checkDigest(hash.digest('hex'), hex)
      await fsync(tmp)
      await this.moveIntoPlace(tmp, hex, meter.size)
      return meter.size
    } finally {
      await rm(tmp, { force: true })
    }
  }

  private async moveIntoPlace(
    path: string,
    hex: string,
    size: number,
  ): Promise<void> {
    const dest = this.pathFor(hex)
    await mkdir(dirname(dest), { recursive: true })
    await rename(path, dest)
    this.sizes.set(hex, size)
  }

  async startUpload(id: string): Promise<null> {
    const created = DiskAssembly.create(id, this.uploadDir(id), this.parts)
    this.assemblies.set(id, created)
    try {
      await created
    } catch (err) {
      this.assemblies.delete(id)
      throw err
    }
    return null
  }

  /** The API signs URLs of its own that send parts through `putPart`. */
  partUrl(): null {
    return null
  }

  private assembly(id: string): Promise<DiskAssembly> {
    let found = this.assemblies.get(id)
    if (!found) {
      found = DiskAssembly.load(id, this.uploadDir(id), this.parts)
      this.assemblies.set(id, found)
      found.catch(() => this.assemblies.delete(id))
    }
    return found
  }

  async putPart(
    upload: StoreUpload,
    partNumber: number,
    body: Readable,
    opts: { maxBytes: number },
  ): Promise<{ etag: string; size: number }> {
    const assembly = await this.assembly(upload.id)
    return assembly.putPart(partNumber, body, opts.maxBytes)
  }

  async completeUpload(
    upload: StoreUpload,
    hex: string,
    parts: ListedPart[],
    opts: CompleteOptions,
  ): Promise<{ size: number }> {
    const assembly = await this.assembly(upload.id)
    // Once assembled, the upload ends here whatever happens: nothing resumes from its bytes.
    const done = await assembly.complete(parts, opts.maxBytes)
    try {
      if (done.hex !== hex) {
        throw new BlobStoreError(
          `the assembled bytes hash to sha256:${done.hex}, not sha256:${hex}; nothing was stored`,
          'InvalidDigest',
        )
      }
      // The same digest stored already: the same bytes, kept as they are.
      if ((await this.size(hex)) === null) {
        await this.moveIntoPlace(done.path, hex, done.size)
      }
      return { size: done.size }
    } finally {
      await this.abortUpload(upload)
    }
  }

  async abortUpload(upload: StoreUpload): Promise<void> {
    const found = this.assemblies.get(upload.id)
    this.assemblies.delete(upload.id)
    const assembly = await found?.catch(() => undefined)
    if (assembly) await assembly.abort()
    else await rm(this.uploadDir(upload.id), { recursive: true, force: true })
  }

  async sweepOrphans(
    isKnown: (id: string) => boolean | Promise<boolean>,
    before: number,
  ): Promise<number> {
    let removed = 0
    for (const id of await readdir(this.uploadsDir)) {
      if (!UPLOAD_ID_RE.test(id) || (await isKnown(id))) continue
      const dir = join(this.uploadsDir, id)
      const { mtimeMs } = await stat(dir)
      if (mtimeMs >= before) continue
      await rm(dir, { recursive: true, force: true })
      removed++
    }
    return removed
  }

  async ping(): Promise<void> {
    try {
      // One quick syscall in place: the thread pool may be busy, and _health must not queue
      // behind it.
      accessSync(this.root, constants.R_OK | constants.W_OK)
    } catch (err) {
      throw new BlobStoreError(
        `the blob directory cannot be used: ${(err as Error).message}`,
        'StorageUnavailable',
        { cause: err },
      )
    }
  }

  async close(): Promise<void> {}
}

const fsync = async (path: string): Promise<void> => {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
