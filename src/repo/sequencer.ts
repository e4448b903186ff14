import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'
import type { Logger } from '../logger.ts'
import { eventFrame, type EventType, type RepoEvent } from './events.ts'

/** A sequenced event: `frame` is its whole subscribeRepos message, seq and time included. */
export type SeqEvent = {
  seq: number
  type: EventType
  time: string
  frame: Uint8Array
}

/** How long events are kept by default (HOLD_FIREHOSE_RETENTION_HOURS). */
export const DEFAULT_RETENTION_HOURS = 72

/** How often old events are pruned. */
const PRUNE_INTERVAL_MS = 10 * 60_000

/**
 * One pruning transaction deletes at most this many events or bytes of frames, then lets other
 * work run: freeing a frame's overflow pages reads them, and a 200-op event is ~0.7 MB.
 */
const PRUNE_BATCH_ROWS = 500
const PRUNE_BATCH_BYTES = 16 * 1024 * 1024

/**
 * The durable log of the repo's events (the `firehose_event` table), which subscribeRepos
 * serves. `append` runs inside the transaction that makes the change the events tell of (a
 * commit's), so an event exists exactly when its change does, `kill -9` included. Each frame
 * is encoded once, with its seq and time, and every subscriber and replay sends those bytes.
 *
 * seq is the last one given (AUTOINCREMENT's `sqlite_sequence`) plus one: rows are contiguous
 * except where pruning took the oldest, and since the hold's writer is the one connection
 * writing, no other transaction can take a seq in between. A rolled-back transaction gives its
 * seqs back, and nobody heard of them: listeners are told after COMMIT (`onEvents`).
 */
export class Sequencer {
  private readonly database: Database
  private readonly log: Logger | undefined
  private readonly listeners = new Set<(events: SeqEvent[]) => void>()
  private readonly lastSeqStmt: StatementSync
  private readonly insertStmt: StatementSync
  private readonly oldestStmt: StatementSync
  private readonly afterStmt: StatementSync
  private readonly oldestTimesStmt: StatementSync
  private readonly deleteUpToStmt: StatementSync
  private pruneTimer: NodeJS.Timeout | undefined
  private pruning: Promise<number> | undefined
  private stopped = false
  /** Events committed since start, by type (metrics). */
  readonly written: Record<EventType, number> = {
    commit: 0,
    sync: 0,
    identity: 0,
    account: 0,
  }
  /** Events pruned since start. */
  pruned = 0

  constructor(database: Database, log?: Logger) {
    this.database = database
    this.log = log
    const { db } = database
    this.lastSeqStmt = db.prepare(
      "SELECT seq FROM sqlite_sequence WHERE name = 'firehose_event'",
    )
    this.insertStmt = db.prepare(
      'INSERT INTO firehose_event (seq, type, time, frame) VALUES (?, ?, ?, ?)',
    )
    this.oldestStmt = db.prepare('SELECT min(seq) AS seq FROM firehose_event')
    this.afterStmt = db.prepare(
      'SELECT seq, type, time, frame FROM firehose_event WHERE seq > ? ORDER BY seq LIMIT ?',
    )
    // length() of a blob comes from the record header: no overflow page is read.
    this.oldestTimesStmt = db.prepare(
      'SELECT seq, time, length(frame) AS bytes FROM firehose_event ORDER BY seq LIMIT ?',
    )
    this.deleteUpToStmt = db.prepare(
      'DELETE FROM firehose_event WHERE seq <= ?',
    )
  }

  /**
   * Appends `events` in order and returns them sequenced. Must run inside the transaction of
   * the change they tell of (Database.transaction); listeners hear of them once it commits.
   */
  append(events: RepoEvent[], now = new Date()): SeqEvent[] {
    const out: SeqEvent[] = []
    this.database.afterCommit(() => this.notify(out))
    const time = now.toISOString()
    let seq = this.current()
    for (const event of events) {
      seq++
      const frame = eventFrame(event, seq, time)
      this.insertStmt.run(seq, event.type, time, frame)
      out.push({ seq, type: event.type, time, frame })
    }
    return out
  }

  /** The last seq given (0 before the first event); pruning never lowers it. */
  current(): number {
    const row = this.lastSeqStmt.get() as { seq: number } | undefined
    return row?.seq ?? 0
  }

  /** The oldest seq still kept, or null when none is. */
  oldest(): number | null {
    return (this.oldestStmt.get() as { seq: number | null }).seq
  }

  /** At most `limit` events after seq `cursor`, oldest first. */
  after(cursor: number, limit: number): SeqEvent[] {
    return this.afterStmt.all(cursor, limit) as SeqEvent[]
  }

  /** Calls `listener` with each committed append; returns a function that stops it. */
  onEvents(listener: (events: SeqEvent[]) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private notify(events: SeqEvent[]): void {
    if (events.length === 0) return
    for (const event of events) this.written[event.type]++
    for (const listener of this.listeners) {
      try {
        listener(events)
      } catch (err) {
        this.log?.error({ err }, 'a firehose event listener failed')
      }
    }
  }

  /**
   * Deletes the events older than `before`, oldest first, in short transactions with a turn of
   * the event loop between them; stops at the first event that is not older, so what is kept
   * is always every event from some seq on (a clock set back leaves some old ones a while).
   * Resolves with how many went.
   */
  async prune(before: Date): Promise<number> {
    const cutoff = before.toISOString()
    let total = 0
    for (;;) {
      if (this.stopped || !this.database.db.isOpen) return total
      const { deleted, more } = this.database.transaction(() => {
        const rows = this.oldestTimesStmt.all(PRUNE_BATCH_ROWS) as {
          seq: number
          time: string
          bytes: number
        }[]
        let last = 0
        let bytes = 0
        let count = 0
        for (const row of rows) {
          if (row.time >= cutoff) break
          if (count > 0 && bytes + row.bytes > PRUNE_BATCH_BYTES) break
          last = row.seq
          bytes += row.bytes
          count++
        }
        if (count > 0) this.deleteUpToStmt.run(last)
        // Cut short by the byte budget, or a full batch all old: there may be more.
        const more =
          count < rows.length
            ? rows[count].time < cutoff
            : rows.length === PRUNE_BATCH_ROWS
        return { deleted: count, more: count > 0 && more }
      })
      total += deleted
      this.pruned += deleted
      if (!more) return total
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /**
   * Prunes events older than `retentionHours` now and then every ten minutes, in the
   * background. A failing prune (a full disk) is logged and tried again at the next turn.
   */
  startPruning(retentionHours: number, intervalMs = PRUNE_INTERVAL_MS): void {
    if (this.pruneTimer) return
    const run = () => {
      if (this.pruning) return
      this.pruning = this.prune(
        new Date(Date.now() - retentionHours * 3_600_000),
      )
        .catch((err: unknown) => {
          this.log?.warn({ err }, 'pruning old firehose events failed')
          return 0
        })
        .finally(() => {
          this.pruning = undefined
        })
    }
    this.pruneTimer = setInterval(run, intervalMs)
    this.pruneTimer.unref()
    run()
  }

  /** Stops pruning; resolves once a prune under way has finished its current batch. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.pruneTimer)
    await this.pruning
  }
}
