import { randomUUID } from 'node:crypto'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StatementSync } from 'node:sqlite'
import { parseCid } from '@atproto/lex-data'
import type { Database } from '../db.ts'
import { carHeader, varint } from './car.ts'
import { cidBytes } from './cid.ts'

/** Limits of getRepo exports (the spooled CAR below is what they send). */
export type ExportLimits = {
  /** getRepo exports one client may have under way at once. */
  perClient: number
  /** getRepo exports under way at once across all clients. */
  total: number
  /** An export still unfinished after this long is cut. */
  maxSeconds: number
  /** An export whose client has read nothing for this long is cut. */
  stallSeconds: number
}

export const DEFAULT_EXPORT_LIMITS: ExportLimits = {
  perClient: 2,
  total: 8,
  maxSeconds: 600,
  stallSeconds: 30,
}

/** A CAR written out in full to an unlinked temp file: read it once, then close it. */
export type SpooledCar = { size: number; handle: FileHandle }

/** Bytes gathered before each write to the spool file (each write lets other work run). */
const WRITE_BYTES = 1 << 20

/**
 * The repo as a CAR (or, with `since`, the blocks of later revs), from one database snapshot,
 * written into a temp file that is unlinked at once, so nothing is left behind by a crash. The
 * snapshot lasts as long as the hold takes to write the file, not as long as a client takes to
 * read it: a slow or stalled download cannot keep the WAL from being checkpointed. Stops early
 * when `signal` aborts (the client went away).
 */
export const spoolRepoCar = async (
  database: Database,
  since: string | undefined,
  signal?: AbortSignal,
): Promise<SpooledCar> => {
  const path = join(tmpdir(), `atcr-hold-export-${randomUUID()}.car`)
  const handle = await open(path, 'wx+', 0o600)
  try {
    await unlink(path)
    const size = await database.readSnapshot(async (reader) => {
      const root = reader
        .prepare('SELECT cid FROM repo_root WHERE id = 1')
        .get() as { cid: string } | undefined
      if (!root) throw new Error('repo has no root')
      // In primary-key order (a CAR's blocks may come in any order): a sequential read.
      const stmt: StatementSync =
        since === undefined
          ? reader.prepare('SELECT cid, content FROM repo_block')
          : reader.prepare(
              'SELECT cid, content FROM repo_block WHERE repo_rev > ?',
            )
      const rows = since === undefined ? stmt.iterate() : stmt.iterate(since)
      const out = new CarWriter(handle, signal)
      try {
        out.add(carHeader(parseCid(root.cid)))
        for (const row of rows) {
          const { cid, content } = row as { cid: string; content: Uint8Array }
          const bytes = cidBytes(cid)
          out.add(varint(bytes.byteLength + content.byteLength))
          out.add(bytes)
          out.add(content)
          if (out.pendingBytes >= WRITE_BYTES) await out.write()
        }
        await out.write()
      } finally {
        rows.return?.()
      }
      return out.written
    })
    return { size, handle }
  } catch (err) {
    await handle.close()
    throw err
  }
}

/** Chunks gathered in memory and appended to the spool file a batch at a time. */
class CarWriter {
  private chunks: Uint8Array[] = []
  pendingBytes = 0
  written = 0
  private readonly handle: FileHandle
  private readonly signal: AbortSignal | undefined

  constructor(handle: FileHandle, signal: AbortSignal | undefined) {
    this.handle = handle
    this.signal = signal
  }

  add(chunk: Uint8Array): void {
    this.chunks.push(chunk)
    this.pendingBytes += chunk.byteLength
  }

  async write(): Promise<void> {
    const buf = Buffer.concat(this.chunks, this.pendingBytes)
    this.chunks = []
    this.pendingBytes = 0
    await this.handle.write(buf, 0, buf.byteLength, this.written)
    this.written += buf.byteLength
    this.signal?.throwIfAborted()
  }
}
