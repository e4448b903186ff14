import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Redis } from 'ioredis'
import type { ClusterKeys } from '../cluster/redis.ts'
import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import { keyOf, type PendingCounts } from './counter-row.ts'
import { dayOf, mergeDays, rollDay } from './days.ts'
import type { CounterStore, Delta, DeltaSink } from './counter-store.ts'
import { encodeEntry, type StreamEntry } from './stream-entry.ts'

/** While XADD fails, how long before it is tried again. */
const RETRY_MS = 500
/** Spilled pairs sent in one entry. */
const DRAIN_PAIRS = 5000
/**
 * Entries sent and not yet known applied, kept so getStats on this frontend includes them: at
 * one entry per batch window, about a minute of them. Older ones are let go (getStats then
 * shows them once the writer has applied them).
 */
const SENT_KEPT = 2400

const SQL = {
  spilled: `SELECT did, repository, pull_count, push_count, last_pull, last_push, created_at
    FROM stats_counter LIMIT ${DRAIN_PAIRS}`,
  spilledOf: `SELECT pull_count, push_count, last_pull, last_push
    FROM stats_counter WHERE did = ? AND repository = ?`,
  unspill: 'DELETE FROM stats_counter WHERE did = ? AND repository = ?',
  hasSpill: 'SELECT 1 FROM stats_counter LIMIT 1',
  outbox: 'SELECT producer, seq, body FROM stats_outbox ORDER BY producer, seq',
  addOutbox: 'INSERT INTO stats_outbox (producer, seq, body) VALUES (?, ?, ?)',
  dropOutbox: 'DELETE FROM stats_outbox WHERE producer = ? AND seq = ?',
}

type SpilledRow = {
  did: string
  repository: string
  pull_count: number
  push_count: number
  last_pull: string | null
  last_push: string | null
  created_at: string
}

type Sending = {
  /** The entry's XADD fields, the same on every try (the writer applies a (producer, seq) once). */
  fields: [string, string]
  producer: string
  seq: number
  deltas: Map<string, Delta>
  /** Kept in stats_outbox until Redis has it (spilled counts, and what a stop could not send). */
  durable: boolean
}

/**
 * HOLD_ROLE=frontend: where the CounterStore's batches go. They are merged into an outbox, and
 * one entry at a time is appended to the Redis stream (XADD) the writer applies; an entry whose
 * reply is lost is sent again as it was. While Redis is down the outbox keeps growing, up to
 * HOLD_REDIS_BUFFER_PAIRS pairs; past that it is spilled into this machine's counter table
 * (and logged, and counted in metrics), and sent from there once Redis is back. A pull never
 * waits on any of it.
 */
export class StreamSink implements DeltaSink {
  readonly producer = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
  private outbox = new Map<string, Delta>()
  private sending: Sending | undefined
  private inFlight: Promise<void> | undefined
  /** Sent, by sequence number, and not yet known to be applied. */
  private readonly sent = new Map<number, Map<string, Delta>>()
  private nextSeq = 1
  private appliedSeq = 0
  private retryAt = 0
  private timer: NodeJS.Timeout | undefined
  private spillNoted = false
  private downSince: number | undefined
  /** Whether stats_counter may hold spilled counts, and stats_outbox entries. */
  private spilled: boolean
  private outboxRows = true
  /** Entries appended, counts spilled, and whether Redis answered the last append (metrics). */
  readonly totals = { entries: 0, spilledCounts: 0, failedAppends: 0 }

  private readonly redis: Redis
  private readonly keys: ClusterKeys
  private readonly counters: CounterStore
  private readonly database: Database
  private readonly log: Logger
  private readonly bufferPairs: number
  private readonly sql: Statements<keyof typeof SQL>

  constructor(opts: {
    redis: Redis
    keys: ClusterKeys
    counters: CounterStore
    database: Database
    log: Logger
    bufferPairs: number
  }) {
    this.redis = opts.redis
    this.keys = opts.keys
    this.counters = opts.counters
    this.database = opts.database
    this.log = opts.log
    this.bufferPairs = opts.bufferPairs
    this.sql = prepareAll(opts.database.db, SQL)
    this.spilled = this.sql.hasSpill.get() !== undefined
  }

  /** Pairs waiting in memory for Redis. */
  get bufferedPairs(): number {
    return this.outbox.size + (this.sending?.deltas.size ?? 0)
  }

  /** Since when appends fail (undefined while Redis takes them). */
  get redisDownSince(): number | undefined {
    return this.downSince
  }

  accept(batch: Map<string, Delta>): void {
    for (const [key, d] of batch) {
      const cur = this.outbox.get(key)
      if (cur) {
        // The merged delta's day is the later one; the earlier's counts keep their days.
        if (d.day > cur.day) rollDay(cur, d.day)
        mergeDays(cur, d)
        add(cur, d)
      } else this.outbox.set(key, d)
    }
    if (this.outbox.size > this.bufferPairs) this.spill()
    this.pump()
  }

  /** The outbox into this machine's counter table: past the bound, memory is not the place. */
  private spill(): void {
    let counts = 0
    for (const d of this.outbox.values()) counts += d.pulls + d.pushes
    try {
      this.counters.writeTable(this.outbox.values())
    } catch (err) {
      this.log.error(
        { err, pairs: this.outbox.size },
        'spilling counts to the local counter table failed; they stay in memory',
      )
      return
    }
    this.outbox = new Map()
    this.spilled = true
    this.totals.spilledCounts += counts
    if (!this.spillNoted) {
      this.spillNoted = true
      this.log.warn(
        { bufferPairs: this.bufferPairs },
        'Redis is down and HOLD_REDIS_BUFFER_PAIRS pairs are waiting: counts now spill into the local counter table until Redis is back',
      )
    }
  }

  /** Sends the next entry unless one is on its way; called at every batch and every tick. */
  private pump(): void {
    if (this.inFlight || Date.now() < this.retryAt) return
    this.sending ??= this.next()
    const sending = this.sending
    if (!sending) return
    this.inFlight = this.redis
      .xadd(this.keys.stream, '*', ...sending.fields)
      .then(
        () => this.sentOk(sending),
        (err: unknown) => this.sendFailed(err),
      )
      .finally(() => {
        this.inFlight = undefined
      })
  }

  /** The next entry: what the outbox holds, else a left-over durable entry, else spilled counts. */
  private next(): Sending | undefined {
    if (this.outbox.size > 0) {
      const deltas = this.outbox
      this.outbox = new Map()
      return this.entry(deltas, false)
    }
    const row = this.outboxRows
      ? (this.sql.outbox.get() as
          { producer: string; seq: number; body: string } | undefined)
      : undefined
    this.outboxRows = row !== undefined
    if (row) {
      return {
        fields: ['c', row.body],
        producer: row.producer,
        seq: row.seq,
        deltas: new Map(),
        durable: true,
      }
    }
    if (this.spilled && this.downSince === undefined) return this.drainSpill()
    return undefined
  }

  private entry(deltas: Map<string, Delta>, durable: boolean): Sending {
    const e: StreamEntry = {
      producer: this.producer,
      seq: this.nextSeq++,
      deltas: [...deltas.values()],
    }
    return {
      fields: encodeEntry(e),
      producer: e.producer,
      seq: e.seq,
      deltas,
      durable,
    }
  }

  /** Spilled rows out of the counter table and into an outbox entry, in one transaction. */
  private drainSpill(): Sending | undefined {
    const rows = this.sql.spilled.all() as SpilledRow[]
    if (rows.length === 0) {
      this.spilled = false
      return undefined
    }
    const deltas = new Map<string, Delta>()
    for (const r of rows) {
      const lastPull = r.last_pull ? Date.parse(r.last_pull) : 0
      const lastPush = r.last_push ? Date.parse(r.last_push) : 0
      const first = Date.parse(r.created_at)
      deltas.set(keyOf(r.did, r.repository), {
        did: r.did,
        repository: r.repository,
        pulls: r.pull_count,
        pushes: r.push_count,
        lastPull,
        lastPush,
        first,
        // A spill keeps totals, not days: its counts go to the day of the last of them.
        day: dayOf(Math.max(lastPull, lastPush, first)),
      })
    }
    const sending = this.entry(deltas, true)
    this.database.transaction(() => {
      for (const r of rows) this.sql.unspill.run(r.did, r.repository)
      this.sql.addOutbox.run(sending.producer, sending.seq, sending.fields[1])
      this.outboxRows = true
    })
    return sending
  }

  private sentOk(sending: Sending): void {
    this.sending = undefined
    this.totals.entries++
    if (sending.durable) {
      this.sql.dropOutbox.run(sending.producer, sending.seq)
    }
    if (sending.producer === this.producer && sending.deltas.size > 0) {
      this.sent.set(sending.seq, sending.deltas)
      if (this.sent.size > SENT_KEPT) {
        this.sent.delete(this.sent.keys().next().value!)
      }
    }
    if (this.downSince !== undefined) {
      this.log.info(
        { downMs: Date.now() - this.downSince },
        'Redis takes counts again',
      )
      this.downSince = undefined
      this.spillNoted = false
    }
  }

  private sendFailed(err: unknown): void {
    this.totals.failedAppends++
    this.retryAt = Date.now() + RETRY_MS
    if (this.downSince === undefined) {
      this.downSince = Date.now()
      this.log.warn(
        { err },
        'appending counts to Redis failed; they wait in memory and are sent again',
      )
    }
  }

  /** The writer has applied this process's entries up to `seq`: they are in its table now. */
  applied(seq: number): void {
    if (seq <= this.appliedSeq) return
    this.appliedSeq = seq
    for (const s of this.sent.keys()) {
      if (s > seq) break
      this.sent.delete(s)
    }
  }

  /**
   * What this process counted for a pair that the writer's table may not have yet: pending,
   * in the outbox, on its way, sent and not known applied at `appliedSeq`, and spilled.
   */
  unapplied(
    did: string,
    repository: string,
    appliedSeq: number,
  ): PendingCounts | undefined {
    const key = keyOf(did, repository)
    const sum: PendingCounts = { pulls: 0, pushes: 0, lastPull: 0, lastPush: 0 }
    let any = false
    const take = (d: Delta | PendingCounts | undefined) => {
      if (!d) return
      any = true
      add(sum, d)
    }
    take(this.counters.pendingOf(did, repository))
    take(this.outbox.get(key))
    if (this.sending?.producer === this.producer) {
      take(this.sending.deltas.get(key))
    }
    for (const [seq, deltas] of this.sent) {
      if (seq > appliedSeq) take(deltas.get(key))
    }
    if (this.spilled) {
      const row = this.sql.spilledOf.get(did, repository) as
        Omit<SpilledRow, 'did' | 'repository' | 'created_at'> | undefined
      if (row) {
        take({
          pulls: row.pull_count,
          pushes: row.push_count,
          lastPull: row.last_pull ? Date.parse(row.last_pull) : 0,
          lastPush: row.last_push ? Date.parse(row.last_push) : 0,
        })
      }
    }
    return any ? sum : undefined
  }

  /** Repositories of a DID this process holds counts for that may not be applied yet. */
  unappliedRepositories(did: string): Set<string> {
    const out = new Set<string>()
    const scan = (deltas: Iterable<{ did: string; repository: string }>) => {
      for (const d of deltas) if (d.did === did) out.add(d.repository)
    }
    scan(this.counters.pendingDeltas())
    scan(this.outbox.values())
    if (this.sending) scan(this.sending.deltas.values())
    for (const deltas of this.sent.values()) scan(deltas.values())
    return out
  }

  start(tickMs: number): void {
    this.timer = setInterval(() => this.pump(), tickMs)
  }

  /**
   * Stops the ticks and sends what is left, for at most `withinMs`; what Redis did not take by
   * then is kept in stats_outbox (sent by the next process on this data dir) and logged.
   */
  async stop(withinMs: number): Promise<void> {
    clearInterval(this.timer)
    const until = Date.now() + withinMs
    while (Date.now() < until) {
      await this.inFlight
      if (!this.sending && this.outbox.size === 0) return
      this.retryAt = Math.min(this.retryAt, until)
      this.pump()
      if (!this.inFlight) {
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    await this.inFlight
    const left = [
      this.sending,
      this.outbox.size > 0 ? this.entry(this.outbox, false) : undefined,
    ]
    this.outbox = new Map()
    // A durable entry is in stats_outbox already.
    for (const s of left) {
      if (s && !s.durable)
        this.sql.addOutbox.run(s.producer, s.seq, s.fields[1])
    }
    this.sending = undefined
    if (left.some(Boolean)) {
      this.log.warn(
        'Redis did not take every count before the stop; they are kept in the data dir and sent at the next start on it',
      )
    }
  }
}

const add = (into: PendingCounts, d: PendingCounts & { first?: number }) => {
  into.pulls += d.pulls
  into.pushes += d.pushes
  into.lastPull = Math.max(into.lastPull, d.lastPull)
  into.lastPush = Math.max(into.lastPush, d.lastPush)
  if ('first' in into && d.first !== undefined) {
    ;(into as Delta).first = Math.min((into as Delta).first, d.first)
  }
}
