import type { Redis } from 'ioredis'
import type { ClusterKeys } from '../cluster/redis.ts'
import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import {
  COUNTER_SELECT,
  keyOf,
  toView,
  type CounterRow,
} from './counter-row.ts'
import type { Delta } from './counter-store.ts'
import type { StatsService } from './service.ts'
import { BadEntryError, decodeEntry } from './stream-entry.ts'

/** Entries read (and applied in one transaction) at a time. */
const READ_COUNT = 1000
/** How long one read waits for new entries. */
const BLOCK_MS = 500
/** The longest a stop waits for the read in progress. */
const STOP_WAIT_MS = 5000
/** After a failure (Redis down, a disk refusing writes), how long before reading again. */
const RETRY_MS = 1000
/** Rows of the view published per Redis round trip at start. */
const PUBLISH_CHUNK = 500

const SQL = {
  isApplied: 'SELECT 1 FROM stats_stream_applied WHERE id = ?',
  addApplied: 'INSERT OR IGNORE INTO stats_stream_applied (id) VALUES (?)',
  dropApplied: 'DELETE FROM stats_stream_applied WHERE id = ?',
  clearApplied: 'DELETE FROM stats_stream_applied',
  producerSeq: 'SELECT seq FROM stats_stream_producer WHERE producer = ?',
  setProducer: `INSERT INTO stats_stream_producer (producer, seq, seen_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (producer) DO UPDATE SET seq = max(seq, excluded.seq), seen_at = excluded.seen_at`,
  producers: 'SELECT producer, seq FROM stats_stream_producer',
  pruneProducers: 'DELETE FROM stats_stream_producer WHERE seen_at < ?',
  counters: `${COUNTER_SELECT} WHERE (c.did, c.repository) > (?, ?) ORDER BY c.did, c.repository LIMIT ${PUBLISH_CHUNK}`,
}

/** A frontend process not heard from in this long is forgotten. */
const PRODUCER_TTL_MS = 30 * 24 * 3600 * 1000

type RawEntry = [id: string, fields: string[]]

/**
 * HOLD_ROLE=writer: applies the counts frontends append to the Redis stream, exactly once. It
 * reads as the one consumer of a consumer group; a batch is added to stats_counter in the same
 * SQLite transaction that records the stream IDs it applied and each frontend process's last
 * sequence number, and only then acknowledged (and deleted from the stream). After a crash the
 * unacknowledged entries are read again, and those already applied are skipped. Each applied
 * pair's counts are then published to a Redis hash, which is what frontends answer getStats
 * from.
 */
export class StreamConsumer {
  /** Entries applied, and skipped as already applied or malformed (metrics, tests). */
  readonly totals = { applied: 0, skipped: 0, malformed: 0 }
  private running: Promise<void> | undefined
  private stopped = false
  /** Pairs applied whose view is not yet in Redis, and producers whose seq is not. */
  private readonly unpublished = new Map<string, [string, string]>()
  private readonly unpublishedSeqs = new Map<string, number>()
  private publishAll = true
  private downSince: number | undefined
  private readonly sql: Statements<keyof typeof SQL>

  private readonly redis: Redis
  private readonly reader: Redis
  private readonly keys: ClusterKeys
  private readonly stats: StatsService
  private readonly log: Logger
  private readonly consumer: string

  constructor(opts: {
    /** For commands. */
    redis: Redis
    /** For the blocking read alone. */
    reader: Redis
    keys: ClusterKeys
    stats: StatsService
    database: Database
    log: Logger
    /** The writer's name in the group; one writer, so one name. */
    consumer?: string
  }) {
    this.redis = opts.redis
    this.reader = opts.reader
    this.keys = opts.keys
    this.stats = opts.stats
    this.log = opts.log
    this.consumer = opts.consumer ?? 'writer'
    this.sql = prepareAll(opts.database.db, SQL)
  }

  start(): void {
    this.running ??= this.run()
  }

  /**
   * Stops reading. Waits for the read in progress, at most STOP_WAIT_MS: a Redis that does not
   * answer must not hold the hold's stop. What was applied is in the counter table with its
   * stream IDs, so an entry left unacknowledged is skipped when it is read again.
   */
  async stop(): Promise<void> {
    this.stopped = true
    if (!this.running) return
    let timer: NodeJS.Timeout | undefined
    const late = await Promise.race([
      this.running.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_WAIT_MS)
      }),
    ])
    clearTimeout(timer)
    if (late) {
      this.log.warn(
        'Redis did not answer within the stop: the counts stream is left as it is, to be read again at the next start',
      )
    }
  }

  private async run(): Promise<void> {
    // Unacknowledged entries first (from ID 0), then new ones (>).
    let cursor = '0'
    let ready = false
    while (!this.stopped) {
      try {
        if (!ready) {
          await this.prepare()
          ready = true
        }
        if (this.publishAll) await this.publishEverything()
        const entries = await this.read(cursor)
        this.up()
        if (cursor !== '>' && entries.length === 0) {
          // Every entry ever delivered is acknowledged: no applied ID can come again.
          this.sql.clearApplied.run()
          cursor = '>'
          continue
        }
        if (entries.length === 0) continue
        this.apply(entries)
        await this.acknowledge(entries.map(([id]) => id))
        if (cursor !== '>') cursor = entries[entries.length - 1][0]
        await this.publish()
        this.up()
      } catch (err) {
        this.down(err)
        cursor = '0'
        ready = false
        await new Promise((r) => setTimeout(r, RETRY_MS))
      }
    }
  }

  private up(): void {
    if (this.downSince === undefined) return
    this.log.info(
      { downMs: Date.now() - this.downSince },
      'reading counts from Redis again',
    )
    this.downSince = undefined
  }

  private down(err: unknown): void {
    if (this.downSince !== undefined) {
      this.log.debug({ err }, 'reading or applying counts failed again')
      return
    }
    this.downSince = Date.now()
    this.log.warn(
      { err },
      'reading or applying counts from Redis failed; frontends keep counting, and it is tried again',
    )
  }

  /** The group (and the stream) if missing, from the stream's start. */
  private async prepare(): Promise<void> {
    try {
      await this.redis.xgroup(
        'CREATE',
        this.keys.stream,
        this.keys.group,
        '0',
        'MKSTREAM',
      )
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err
    }
    this.sql.pruneProducers.run(Date.now() - PRODUCER_TTL_MS)
  }

  private async read(cursor: string): Promise<RawEntry[]> {
    const args: (string | number)[] = [
      'GROUP',
      this.keys.group,
      this.consumer,
      'COUNT',
      READ_COUNT,
    ]
    if (cursor === '>') args.push('BLOCK', BLOCK_MS)
    args.push('STREAMS', this.keys.stream, cursor)
    const res = (await this.reader.call('XREADGROUP', ...args)) as
      unknown[] | null
    if (!res || res.length === 0) return []
    // RESP3 answers a map (flattened: stream, entries); RESP2 a list of [stream, entries].
    const entries = (
      typeof res[0] === 'string' ? res[1] : (res[0] as unknown[])[1]
    ) as [string, string[] | null][]
    // A pending entry deleted meanwhile comes back with no fields: it was acknowledged.
    return entries.map(([id, fields]) => [id, fields ?? []])
  }

  /** Adds the batch's new entries to the counter table, recording what it applied, at once. */
  private apply(entries: RawEntry[]): void {
    const deltas: Delta[] = []
    const seqs = new Map<string, number>()
    const fresh: string[] = []
    for (const [id, fields] of entries) {
      if (fields.length === 0 || this.sql.isApplied.get(id)) {
        this.totals.skipped++
        continue
      }
      let entry
      try {
        entry = decodeEntry(fields)
      } catch (err) {
        if (!(err instanceof BadEntryError)) throw err
        this.totals.malformed++
        this.log.warn(
          { id, reason: err.message },
          'skipped a malformed counts entry',
        )
        fresh.push(id)
        continue
      }
      const last =
        seqs.get(entry.producer) ??
        (
          this.sql.producerSeq.get(entry.producer) as
            { seq: number } | undefined
        )?.seq ??
        0
      fresh.push(id)
      if (entry.seq <= last) {
        this.totals.skipped++
        continue
      }
      seqs.set(entry.producer, entry.seq)
      deltas.push(...entry.deltas)
      this.totals.applied++
    }
    if (fresh.length === 0) return
    const now = Date.now()
    this.stats.counters.writeTable(deltas, () => {
      for (const id of fresh) this.sql.addApplied.run(id)
      for (const [producer, seq] of seqs) {
        this.sql.setProducer.run(producer, seq, now)
      }
    })
    for (const d of deltas) {
      this.unpublished.set(keyOf(d.did, d.repository), [d.did, d.repository])
    }
    for (const [producer, seq] of seqs) this.unpublishedSeqs.set(producer, seq)
  }

  private async acknowledge(ids: string[]): Promise<void> {
    await this.redis
      .multi()
      .xack(this.keys.stream, this.keys.group, ...ids)
      .xdel(this.keys.stream, ...ids)
      .exec()
    for (const id of ids) this.sql.dropApplied.run(id)
  }

  /**
   * The applied pairs' counts into their views, with each producer's applied sequence number,
   * in one MULTI: a frontend that reads both at once never sees one without the other.
   */
  private async publish(): Promise<void> {
    if (this.unpublished.size === 0 && this.unpublishedSeqs.size === 0) return
    const multi = this.redis.multi()
    for (const [did, repository] of this.unpublished.values()) {
      const view = this.stats.get(did, repository)
      multi.hset(this.keys.view(did), repository, JSON.stringify(view))
    }
    for (const [producer, seq] of this.unpublishedSeqs) {
      multi.hset(this.keys.producers, producer, seq)
    }
    await multi.exec()
    this.unpublished.clear()
    this.unpublishedSeqs.clear()
  }

  /** Every counter's view and every producer's sequence number (at start, after a failure). */
  private async publishEverything(): Promise<void> {
    let after: [string, string] = ['', '']
    for (;;) {
      const rows = this.sql.counters.all(...after) as CounterRow[]
      if (rows.length === 0) break
      const multi = this.redis.multi()
      for (const row of rows) {
        const view = toView(
          row,
          this.stats.counters.pendingOf(row.did, row.repository),
          row.did,
          row.repository,
        )
        multi.hset(
          this.keys.view(row.did),
          row.repository,
          JSON.stringify(view),
        )
      }
      await multi.exec()
      const last = rows[rows.length - 1]
      after = [last.did, last.repository]
    }
    const producers = this.sql.producers.all() as {
      producer: string
      seq: number
    }[]
    if (producers.length > 0) {
      await this.redis.hset(
        this.keys.producers,
        Object.fromEntries(producers.map((p) => [p.producer, p.seq])),
      )
    }
    this.publishAll = false
  }

  /** After a change not made through the stream (setStats, a reset, an import): all again. */
  republish(): void {
    this.publishAll = true
  }

  /** Whether the last read or apply failed, since when (metrics, health). */
  get failingSince(): number | undefined {
    return this.downSince
  }
}
