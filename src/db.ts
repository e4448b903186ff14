import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { describeStorageError } from './data-dir.ts'
import type { Logger } from './logger.ts'
import { MIGRATIONS, migrate } from './migrations.ts'
import { WAL_FILE_LIMIT_BYTES, WalCheckpointer, type WalState } from './wal.ts'

/** A table of SQL statements by name, prepared once on one connection. */
export type Statements<K extends string> = Record<K, StatementSync>

/** Prepares every statement of `sql` on `db`, under the same names. */
export const prepareAll = <K extends string>(
  db: DatabaseSync,
  sql: Record<K, string>,
): Statements<K> => {
  const out = {} as Statements<K>
  for (const name of Object.keys(sql) as K[]) out[name] = db.prepare(sql[name])
  return out
}

/**
 * Makes statements return their rows as arrays. node:sqlite builds each row object as a
 * dictionary whose ~80 bytes a row outlive the young generation, however briefly the row is
 * used (to a mark-compact under load; BENCHMARKS.md, "node:sqlite's row objects outlive the
 * young generation"); an array of the same row does not. For the reads that are many or hot.
 */
export const returnArrays = (...statements: StatementSync[]): void => {
  for (const statement of statements) statement.setReturnArrays(true)
}

/** Writes to the data dir failing (a full disk, a read-only volume): since when and why. */
export type WriteFailure = { reason: string; since: number; failures: number }

/**
 * The hold's SQLite database. One connection does every write; readers that need a consistent
 * snapshot over several statements (a streamed CAR) open their own with `openReader()`.
 */
export class Database {
  readonly path: string
  readonly db: DatabaseSync
  private depth = 0
  private readonly wal: WalCheckpointer
  private readonly idleReaders: DatabaseSync[] = []
  /**
   * Set while writes fail for a reason of the disk's (full, not writable), with one line for
   * the operator; cleared by the next write that works. `_health` answers 503 meanwhile.
   */
  writeFailure: WriteFailure | undefined
  private readonly log: Logger | undefined
  private afterCommits: (() => void)[] = []
  private failureLoggedAt = 0
  private probe: NodeJS.Timeout | undefined

  constructor(path: string, log?: Logger) {
    this.path = path
    this.log = log
    this.db = new DatabaseSync(path)
    this.db.exec('PRAGMA journal_mode = WAL')
    this.db.exec('PRAGMA synchronous = NORMAL')
    this.db.exec('PRAGMA busy_timeout = 5000')
    this.db.exec('PRAGMA foreign_keys = ON')
    // When the WAL starts over, a file grown past this by writes outrunning the checkpoints is
    // cut back to it; below it the file is reused in place.
    this.db.exec(`PRAGMA journal_size_limit = ${WAL_FILE_LIMIT_BYTES}`)
    // Repo blocks are written and removed at random across a large table: 16 MiB of page cache
    // instead of SQLite's 2 MiB keeps the B-tree's inner pages and recent leaves in memory.
    // The MST's nodes are read from the writer's own cache (NodeCache), not through this one.
    this.db.exec('PRAGMA cache_size = -16384')
    migrate(this.db)
    const { page_size } = this.db.prepare('PRAGMA page_size').get() as {
      page_size: number
    }
    this.wal = new WalCheckpointer(path, page_size)
  }

  /**
   * Moves WAL checkpoints (which copy the WAL into the database and fsync it) off the event
   * loop, into a worker thread with its own connection (`WalCheckpointer`). Without it SQLite
   * checkpoints inside whichever COMMIT crosses 1000 pages, stalling every request while it
   * copies.
   */
  startCheckpointer(
    onError?: (err: Error) => void,
    intervalMs = CHECKPOINT_INTERVAL_MS,
  ): void {
    if (this.wal.running) return
    this.db.exec('PRAGMA wal_autocheckpoint = 0')
    this.wal.start((err) => {
      // Fall back to SQLite's own checkpoints rather than let the WAL grow.
      if (this.db.isOpen) this.db.exec('PRAGMA wal_autocheckpoint = 1000')
      onError?.(err)
    }, intervalMs)
  }

  /** Frames in the WAL and how many are copied into the database; undefined if unknown. */
  walState(): WalState | undefined {
    return this.wal.state()
  }

  /**
   * Resolves once the WAL has room (see `WalCheckpointer.room`), or after `maxWaitMs` at most:
   * a bulk writer (a stats flush) waits here between commits.
   */
  walRoom(maxWaitMs?: number): Promise<void> {
    return this.wal.room(maxWaitMs)
  }

  /** Checkpoints the whole WAL now (used at stop, so a stopped hold leaves one file). */
  checkpoint(): void {
    this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
  }

  /**
   * Runs fn in one IMMEDIATE transaction; nested calls join the outer one. Every write of the
   * hold's goes through here, so this is where failing writes are noticed (`writeFailure`).
   */
  transaction<T>(fn: () => T): T {
    if (this.depth > 0) return fn()
    try {
      this.db.exec('BEGIN IMMEDIATE')
    } catch (err) {
      this.noteFailure(err)
      throw err
    }
    this.depth++
    let result: T
    try {
      result = fn()
      this.db.exec('COMMIT')
      this.noteSuccess()
    } catch (err) {
      // A COMMIT that fails for a full disk has already rolled the transaction back.
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
      this.afterCommits = []
      this.noteFailure(err)
      throw err
    } finally {
      this.depth--
    }
    const callbacks = this.afterCommits
    this.afterCommits = []
    for (const callback of callbacks) {
      try {
        callback()
      } catch (err) {
        this.log?.error({ err }, 'a callback after a commit failed')
      }
    }
    return result
  }

  /**
   * Runs `callback` right after the current transaction commits, in the same synchronous
   * stretch, and never when it rolls back: what others may learn of a write (the firehose's
   * subscribers) is told only once the write is durable.
   */
  afterCommit(callback: () => void): void {
    if (this.depth === 0) {
      throw new Error('afterCommit must be called inside transaction()')
    }
    this.afterCommits.push(callback)
  }

  /**
   * A failure for a reason of the disk's is logged at once, then at most once a minute while
   * writes keep failing (each caller retries on its own schedule); meanwhile a small write is
   * tried every few seconds, so recovery shows even when nothing else writes.
   */
  private noteFailure(err: unknown): void {
    const reason = describeStorageError(err, dirname(this.path))
    if (reason === undefined) return
    const now = Date.now()
    const failure = this.writeFailure
    if (!failure) {
      this.writeFailure = { reason, since: now, failures: 1 }
      this.failureLoggedAt = now
      this.log?.error({ err }, reason)
      this.probe = setInterval(() => this.probeWrite(), WRITE_PROBE_MS)
      this.probe.unref()
      return
    }
    failure.failures++
    failure.reason = reason
    if (now - this.failureLoggedAt >= FAILURE_LOG_MS) {
      this.failureLoggedAt = now
      this.log?.error(
        {
          failures: failure.failures,
          seconds: Math.round((now - failure.since) / 1000),
        },
        `${reason} (writes still failing)`,
      )
    }
  }

  private noteSuccess(): void {
    const failure = this.writeFailure
    if (!failure) return
    this.writeFailure = undefined
    clearInterval(this.probe)
    this.log?.info(
      {
        failures: failure.failures,
        seconds: Math.round((Date.now() - failure.since) / 1000),
      },
      'writes to the data dir work again',
    )
  }

  private probeWrite(): void {
    if (!this.db.isOpen || this.depth > 0) return
    try {
      // Rewrites the schema version it holds: a real write of one page.
      this.transaction(() =>
        this.db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`),
      )
    } catch {
      // Still failing: noted (and logged, at most once a minute) by transaction().
    }
  }

  openReader(): DatabaseSync {
    const reader = new DatabaseSync(this.path, { readOnly: true })
    reader.exec('PRAGMA busy_timeout = 5000')
    return reader
  }

  /**
   * Runs fn in a read transaction on a reader connection (kept for reuse): everything fn reads,
   * across its awaits, comes from one snapshot, and nothing waits for the writer or its queue.
   */
  async readSnapshot<T>(fn: (reader: DatabaseSync) => Promise<T>): Promise<T> {
    const reader = this.idleReaders.pop() ?? this.openReader()
    reader.exec('BEGIN')
    try {
      return await fn(reader)
    } finally {
      reader.exec('ROLLBACK')
      if (this.db.isOpen && this.idleReaders.length < MAX_IDLE_READERS) {
        this.idleReaders.push(reader)
      } else {
        reader.close()
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.probe)
    for (const reader of this.idleReaders.splice(0)) reader.close()
    await this.wal.stop()
    if (this.db.isOpen) {
      try {
        this.checkpoint()
      } catch {
        // A reader still open elsewhere; SQLite checkpoints on the next open.
      }
      this.db.close()
    }
  }
}

/** Reader connections kept open between snapshot reads; more are opened while busy. */
const MAX_IDLE_READERS = 2

/** While writes fail: how often a small write is tried, and how often the failure is logged. */
const WRITE_PROBE_MS = 5_000
const FAILURE_LOG_MS = 60_000

/** How often the checkpoint worker runs. */
const CHECKPOINT_INTERVAL_MS = 250
