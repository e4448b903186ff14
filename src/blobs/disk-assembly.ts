import { createHash, randomBytes, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, open, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { meterBytes, writeMetered } from './byte-check.ts'
import { BlobStoreError } from './errors.ts'
import type { PartTable } from './part-table.ts'
import type { ListedPart } from './store.ts'

/** A part whose bytes are in the assembly; `before` is the hash of everything before it. */
type Appended = {
  n: number
  etag: string
  start: number
  size: number
  before: Hash | undefined
}

/** The latest version of a part, in a file of its own (`part-<n>-<etag>`). */
type Spilled = { etag: string; size: number }

/**
 * One multipart upload on disk. sha256 can only be fed in byte order, so:
 *
 * - the part that extends the assembly (the next number, nothing else appending) is written
 *   straight into `assembly` at its end while it is hashed: one write, no copy;
 * - any other part (out of order, concurrent, a new version of one) goes to its own file, and is
 *   copied into the assembly once the gap before it fills;
 * - a new version of a part already in the assembly cuts the assembly back to before it (the
 *   parts after it are copied out to files of their own first);
 * - completion with exactly the parts in the assembly costs an fsync; otherwise the longest
 *   matching prefix is kept and the rest appended.
 *
 * The layout is kept in `upload_part` rows as it changes, so a restart resumes the upload; the
 * running hash is not, and is read again from the assembly when next needed. Whatever a crash
 * loses, completion hashes the bytes actually assembled, so it can fail but never store a blob
 * under a digest its bytes do not have.
 */
export class DiskAssembly {
  readonly id: string
  readonly dir: string
  private readonly parts: PartTable
  private appended: Appended[] = []
  private readonly spilled = new Map<number, Spilled>()
  /** sha256 of the assembly's first `size` bytes (never updated in place: copied, then replaced). */
  private hash: Hash | undefined = createHash('sha256')
  private size = 0
  private appending = false
  private closed = false
  private chain: Promise<unknown> = Promise.resolve()
  /** Bytes written a second time (parts copied into or out of the assembly). */
  copiedBytes = 0

  private constructor(id: string, dir: string, parts: PartTable) {
    this.id = id
    this.dir = dir
    this.parts = parts
  }

  /** A new, empty upload in `dir`. */
  static async create(
    id: string,
    dir: string,
    parts: PartTable,
  ): Promise<DiskAssembly> {
    const a = new DiskAssembly(id, dir, parts)
    await mkdir(dir, { recursive: true })
    await writeFile(a.assemblyPath, '', { flag: 'wx' })
    return a
  }

  /** An upload as its rows and files left it (after a restart). */
  static async load(
    id: string,
    dir: string,
    parts: PartTable,
  ): Promise<DiskAssembly> {
    const a = new DiskAssembly(id, dir, parts)
    a.hash = undefined
    const fileSize = await sizeOf(a.assemblyPath)
    if (fileSize === null) {
      throw new BlobStoreError(
        `the files of upload ${id} are gone; start a new upload`,
        'InvalidUploadId',
      )
    }
    for (const row of parts.list(id)) {
      const n = row.partNumber
      const inFile = row.offset !== null && row.offset + row.size <= fileSize
      if (inFile && n === a.next() && row.offset === a.size) {
        a.appended.push({
          n,
          etag: row.etag,
          start: a.size,
          size: row.size,
          before: undefined,
        })
        a.size += row.size
      } else if (inFile) {
        // Past the in-order prefix (a crash in the middle of a cut): a file of its own again.
        await copyOut(
          a.assemblyPath,
          row.offset!,
          row.size,
          a.partPath(n, row.etag),
        )
        parts.move(id, n, row.etag, null)
        a.spilled.set(n, { etag: row.etag, size: row.size })
      } else if (
        row.offset === null &&
        (await sizeOf(a.partPath(n, row.etag))) === row.size
      ) {
        a.spilled.set(n, { etag: row.etag, size: row.size })
      } else {
        // Its bytes did not survive: the client sends the part again (completion says so).
        parts.drop(id, n)
      }
    }
    await truncate(a.assemblyPath, a.size)
    return a
  }

  get assemblyPath(): string {
    return join(this.dir, 'assembly')
  }

  private partPath(n: number, etag: string): string {
    return join(this.dir, `part-${n}-${etag}`)
  }

  /** Runs changes to the layout one at a time; part bodies stream outside it. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  private next(): number {
    const last = this.appended.at(-1)
    return last ? last.n + 1 : 1
  }

  private checkOpen(): void {
    if (this.closed) {
      throw new BlobStoreError(
        `upload ${this.id} was completed or aborted`,
        'InvalidUploadId',
      )
    }
  }

  /** Stores a new version of part n; its ETag names that version. */
  async putPart(
    n: number,
    body: Readable,
    maxBytes: number,
  ): Promise<{ etag: string; size: number }> {
    const etag = randomBytes(16).toString('hex')
    const fast = await this.locked(async () => {
      this.checkOpen()
      const ok = !this.appending && n === this.next() && !this.spilled.has(n)
      if (ok) this.appending = true
      return ok
    })
    if (fast) return this.putInOrder(n, etag, body, maxBytes)
    const path = this.partPath(n, etag)
    const size = await writeLimited(body, path, maxBytes)
    await this.locked(async () => {
      try {
        this.checkOpen()
        this.parts.put(this.id, { partNumber: n, etag, size, offset: null })
      } catch (err) {
        await rm(path, { force: true })
        throw err
      }
      const old = this.spilled.get(n)
      this.spilled.set(n, { etag, size })
      if (old) await rm(this.partPath(n, old.etag), { force: true })
      if (!this.appending) await this.settle()
    })
    return { etag, size }
  }

  private async putInOrder(
    n: number,
    etag: string,
    body: Readable,
    maxBytes: number,
  ): Promise<{ etag: string; size: number }> {
    let size: number
    try {
      size = await this.append(n, etag, body, maxBytes)
    } catch (err) {
      await this.locked(async () => {
        this.appending = false
      })
      throw err
    }
    await this.locked(async () => {
      this.appending = false
      try {
        this.checkOpen()
        this.parts.put(this.id, {
          partNumber: n,
          etag,
          size,
          offset: this.appended.at(-1)!.start,
        })
      } catch (err) {
        if (!this.closed) await this.cut(this.appended.length - 1, false)
        throw err
      }
      // A version of the same part that finished while this one streamed is older than it.
      const older = this.spilled.get(n)
      if (older) {
        this.spilled.delete(n)
        await rm(this.partPath(n, older.etag), { force: true })
      }
      await this.settle()
    })
    return { etag, size }
  }

  /** Brings the assembly up to date: cut back past any part with a newer version, then fill. */
  private async settle(): Promise<void> {
    const stale = this.appended.findIndex((p) => this.spilled.has(p.n))
    if (stale >= 0) await this.cut(stale, true)
    let s = this.spilled.get(this.next())
    while (s) {
      await this.appendSpilled(this.next(), s)
      s = this.spilled.get(this.next())
    }
  }

  /**
   * Streams bytes onto the end of the assembly, hashing them; a failure truncates them away.
   * Only one append runs at a time (`appending`, or the lock).
   */
  private async append(
    n: number,
    etag: string,
    body: Readable,
    maxBytes: number,
  ): Promise<number> {
    const before = await this.currentHash()
    const hash = before.copy()
    const start = this.size
    let pos = start
    const fh = await open(this.assemblyPath, 'r+')
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (pos - start + chunk.length > maxBytes) {
          throw new BlobStoreError(
            `part ${n} is larger than ${maxBytes} bytes`,
            'PayloadTooLarge',
          )
        }
        hash.update(chunk)
        for (let off = 0; off < chunk.length;) {
          const { bytesWritten } = await fh.write(
            chunk,
            off,
            chunk.length - off,
            pos,
          )
          off += bytesWritten
          pos += bytesWritten
        }
      }
    } catch (err) {
      await fh.truncate(start).catch(() => {})
      throw err
    } finally {
      await fh.close()
    }
    this.appended.push({ n, etag, start, size: pos - start, before })
    this.hash = hash
    this.size = pos
    return pos - start
  }

  private async appendSpilled(n: number, s: Spilled): Promise<void> {
    const path = this.partPath(n, s.etag)
    const start = this.size
    const size = await this.append(n, s.etag, createReadStream(path), Infinity)
    if (size !== s.size) {
      await this.cut(this.appended.length - 1, false)
      throw new BlobStoreError(
        `part ${n} has ${size} bytes on disk, not ${s.size}; upload it again`,
        'CompletionFailed',
      )
    }
    this.parts.move(this.id, n, s.etag, start)
    this.spilled.delete(n)
    this.copiedBytes += size
    await rm(path, { force: true })
  }

  /**
   * Drops the assembly from appended part `at` on. With `keep`, parts dropped that have no
   * newer version are copied out to files of their own first, so nothing uploaded is lost.
   */
  private async cut(at: number, keep: boolean): Promise<void> {
    const from = this.appended[at]
    for (const p of keep ? this.appended.slice(at) : []) {
      if (this.spilled.has(p.n)) continue
      await copyOut(
        this.assemblyPath,
        p.start,
        p.size,
        this.partPath(p.n, p.etag),
      )
      this.copiedBytes += p.size
      this.parts.move(this.id, p.n, p.etag, null)
      this.spilled.set(p.n, { etag: p.etag, size: p.size })
    }
    this.appended = this.appended.slice(0, at)
    this.hash = from.before
    this.size = from.start
    await truncate(this.assemblyPath, this.size)
  }

  /** The running hash, read again from the assembly when a restart lost it. */
  private async currentHash(): Promise<Hash> {
    if (this.hash) return this.hash
    const hash = createHash('sha256')
    if (this.size > 0) {
      const bytes = createReadStream(this.assemblyPath, {
        start: 0,
        end: this.size - 1,
      })
      for await (const chunk of bytes) hash.update(chunk as Buffer)
    }
    this.hash = hash
    return hash
  }

  /** The latest version of part n. */
  private latest(n: number): { etag: string; size: number } | undefined {
    return this.spilled.get(n) ?? this.appended.find((p) => p.n === n)
  }

  /**
   * Assembles exactly `parts` (ascending, each with the ETag of its latest version) and returns
   * the fsynced file with its sha256 and size. The upload takes nothing more afterwards.
   */
  complete(
    parts: ListedPart[],
    maxBytes: number,
  ): Promise<{ path: string; hex: string; size: number }> {
    return this.locked(async () => {
      this.checkOpen()
      if (this.appending) {
        throw new BlobStoreError(
          'a part is still being uploaded; complete once every part is stored',
          'MissingParts',
        )
      }
      let total = 0
      for (const { partNumber: n, etag } of parts) {
        const latest = this.latest(n)
        if (!latest) {
          throw new BlobStoreError(`part ${n} was not uploaded`, 'MissingParts')
        }
        if (latest.etag !== unquote(etag)) {
          throw new BlobStoreError(
            `part ${n}: ETag ${etag} is not that of its latest upload`,
            'MissingParts',
          )
        }
        total += latest.size
      }
      if (total > maxBytes) {
        throw new BlobStoreError(
          `the parts add up to ${total} bytes, more than ${maxBytes}`,
          'PayloadTooLarge',
        )
      }
      let k = 0
      while (
        k < parts.length &&
        k < this.appended.length &&
        parts[k].partNumber === this.appended[k].n &&
        this.latest(parts[k].partNumber) === this.appended[k]
      ) {
        k++
      }
      if (k < this.appended.length) await this.cut(k, true)
      for (const { partNumber: n } of parts.slice(k)) {
        await this.appendSpilled(n, this.spilled.get(n)!)
      }
      const hex = (await this.currentHash()).copy().digest('hex')
      const fh = await open(this.assemblyPath, 'r+')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
      this.closed = true
      return { path: this.assemblyPath, hex, size: this.size }
    })
  }

  /** Ends the upload and removes its files. */
  abort(): Promise<void> {
    this.closed = true
    return this.locked(() => rm(this.dir, { recursive: true, force: true }))
  }
}

const unquote = (etag: string): string =>
  etag.length >= 2 && etag.startsWith('"') && etag.endsWith('"')
    ? etag.slice(1, -1)
    : etag

const sizeOf = async (path: string): Promise<number | null> => {
  try {
    return (await stat(path)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/** Copies `size` bytes of `src` from `start` into a new file `dest`. */
const copyOut = async (
  src: string,
  start: number,
  size: number,
  dest: string,
): Promise<void> => {
  if (size === 0) return writeFile(dest, '')
  await pipeline(
    createReadStream(src, { start, end: start + size - 1 }),
    createWriteStream(dest),
  )
}

/** Writes body to a new file, refusing more than max bytes (the file is removed then). */
const writeLimited = async (
  body: Readable,
  path: string,
  max: number,
): Promise<number> => {
  const meter = meterBytes(
    max,
    () =>
      new BlobStoreError(`part is larger than ${max} bytes`, 'PayloadTooLarge'),
  )
  await writeMetered(body, meter, path)
  return meter.size
}
