import { randomUUID } from 'node:crypto'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StatementSync } from 'node:sqlite'
import { parseCid } from '@atproto/lex-data'
import { writeCarStream, type CarBlock } from '@atproto/repo'
import type { Database } from '../db.ts'

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
      const blocks = async function* (): AsyncGenerator<CarBlock> {
        for (const row of rows) {
          const { cid, content } = row as { cid: string; content: Uint8Array }
          yield { cid: parseCid(cid), bytes: content }
        }
      }
      let written = 0
      let pending: Uint8Array[] = []
      let pendingBytes = 0
      const write = async () => {
        const buf = Buffer.concat(pending, pendingBytes)
        pending = []
        pendingBytes = 0
        await handle.write(buf, 0, buf.byteLength, written)
        written += buf.byteLength
        signal?.throwIfAborted()
      }
      try {
        for await (const chunk of writeCarStream(
          parseCid(root.cid),
          blocks(),
        )) {
          pending.push(chunk)
          pendingBytes += chunk.byteLength
          if (pendingBytes >= WRITE_BYTES) await write()
        }
        await write()
      } finally {
        rows.return?.()
      }
      return written
    })
    return { size, handle }
  } catch (err) {
    await handle.close()
    throw err
  }
}
