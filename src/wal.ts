import { closeSync, openSync, readSync } from 'node:fs'
import { endianness } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'

/** Frames in the write-ahead log now, and how many of them are copied into the database. */
export type WalState = { frames: number; copied: number; frameBytes: number }

/**
 * The write-ahead log's upkeep, beside the event loop: a worker thread with its own connection
 * runs passive checkpoints, which copy committed frames into the database and never hold a
 * writer back. Once every frame is copied, the next write starts the log over from its first
 * frame, in place, so the file keeps the size of the largest burst it held and is not cut
 * while the hold runs (cutting a file whose pages the disk is still writing can take seconds,
 * and a truncating checkpoint holds every writer for that long). A clean stop removes it.
 *
 * Two bounds keep the log small when checkpoints cannot finish: a bulk writer (a stats flush)
 * waits between its commits while the log is past `WAL_PAUSE_BYTES` and not yet copied in full
 * (`room()`), and a log past `WAL_FORCE_BYTES` that passive rounds cannot catch up with (writes
 * landing during every copy) is copied with writers held back. A reader on an older snapshot (an
 * export being written) keeps frames from being copied while it reads; the bulk writer's wait is
 * bounded, so a reader outside the hold cannot stop it.
 */
export class WalCheckpointer {
  private worker: Worker | undefined
  private shm: number | undefined
  private readonly header = new DataView(new ArrayBuffer(WAL_INDEX_BYTES))

  private readonly path: string
  private readonly pageBytes: number

  constructor(path: string, pageBytes: number) {
    this.path = path
    this.pageBytes = pageBytes
  }

  get running(): boolean {
    return this.worker !== undefined
  }

  start(onError: (err: Error) => void, intervalMs: number): void {
    const worker = new Worker(CHECKPOINT_WORKER, {
      eval: true,
      workerData: {
        path: this.path,
        intervalMs,
        forceBytes: WAL_FORCE_BYTES,
        forceWaitMs: FORCE_WAIT_MS,
      },
    })
    worker.unref()
    worker.on('error', (err: Error) => {
      this.worker = undefined
      onError(err)
    })
    this.worker = worker
  }

  /** Asks for a checkpoint round now rather than at the next tick. */
  nudge(): void {
    this.worker?.postMessage('checkpoint')
  }

  /**
   * The log's state from its index (the `-shm` file SQLite keeps beside the database, laid out
   * as https://sqlite.org/walformat.html describes), read without a statement or a lock; or
   * undefined when the index is absent or not in the layout this reads.
   */
  state(): WalState | undefined {
    try {
      this.shm ??= openSync(`${this.path}-shm`, 'r')
      const bytes = new Uint8Array(this.header.buffer)
      if (readSync(this.shm, bytes, 0, WAL_INDEX_BYTES, 0) < WAL_INDEX_BYTES) {
        return undefined
      }
    } catch {
      return undefined
    }
    const le = endianness() === 'LE'
    const h = this.header
    // The header is kept twice; a writer between its two copies leaves them different.
    if (h.getUint32(0, le) !== WAL_INDEX_VERSION || h.getUint8(12) !== 1) {
      return undefined
    }
    const frames = Math.max(h.getUint32(16, le), h.getUint32(64, le))
    const copied = h.getUint32(96, le)
    return { frames, copied, frameBytes: this.pageBytes + WAL_FRAME_HEADER }
  }

  /**
   * Resolves once the log is within `WAL_PAUSE_BYTES` or copied in full, or after `maxWaitMs`
   * at most: a bulk writer waits here between its commits.
   */
  async room(maxWaitMs = WAL_MAX_WAIT_MS): Promise<void> {
    if (!this.worker || this.hasRoom()) return
    const until = performance.now() + maxWaitMs
    while (this.worker && performance.now() < until) {
      // With this writer paused, a round now can copy everything.
      this.nudge()
      await sleep(20)
      if (this.hasRoom()) return
    }
  }

  private hasRoom(): boolean {
    const wal = this.state()
    if (!wal) return true
    // Copied in full, the log starts over at the next write.
    return (
      wal.frames * wal.frameBytes <= WAL_PAUSE_BYTES || wal.copied >= wal.frames
    )
  }

  async stop(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    if (worker) await worker.terminate()
    if (this.shm !== undefined) closeSync(this.shm)
    this.shm = undefined
  }
}

/** A log past this, not yet copied in full, makes bulk writers wait (`room`). */
export const WAL_PAUSE_BYTES = 32 * 1024 * 1024
/** A log past this, with frames left to copy, is copied while writers wait. */
export const WAL_FORCE_BYTES = 48 * 1024 * 1024
/**
 * The largest the file is left at when the log starts over: only a log past the force bound
 * (writes outrunning the copy) leaves it larger, and the writer that starts it over cuts it.
 */
export const WAL_FILE_LIMIT_BYTES = 64 * 1024 * 1024
/** The longest a bulk writer waits for room, so a reader outside the hold cannot stop it. */
const WAL_MAX_WAIT_MS = 15_000
/** How long a forced copy waits for readers to move past it (writers wait meanwhile). */
const FORCE_WAIT_MS = 20

const WAL_INDEX_BYTES = 136
const WAL_INDEX_VERSION = 3007000
const WAL_FRAME_HEADER = 24

// Each round copies until it has caught up or made no progress: a pass right after one that a
// commit overlapped has only that commit's frames to copy, so it usually ends in the gap before
// the next one, and the log can start over.
const CHECKPOINT_WORKER = `
const { DatabaseSync } = require('node:sqlite')
const { parentPort, workerData } = require('node:worker_threads')
const db = new DatabaseSync(workerData.path)
db.exec('PRAGMA busy_timeout = 0')
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
const restart = db.prepare('PRAGMA wal_checkpoint(RESTART)')
const frameBytes = db.prepare('PRAGMA page_size').get().page_size + 24
const round = () => {
  try {
    let last
    for (let pass = 0; pass < 4; pass++) {
      const now = passive.get()
      if (now.checkpointed >= now.log) return
      const stuck = last !== undefined && now.checkpointed === last.checkpointed
      last = now
      if (stuck) break
    }
    if (last.log * frameBytes <= workerData.forceBytes) return
    db.exec('PRAGMA busy_timeout = ' + workerData.forceWaitMs)
    try {
      restart.get()
    } finally {
      db.exec('PRAGMA busy_timeout = 0')
    }
  } catch {}
}
setInterval(round, workerData.intervalMs)
parentPort.on('message', round)
`
