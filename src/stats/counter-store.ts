import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import { iso, keyOf, type PendingCounts } from './counter-row.ts'
import { Sketch, type ClientHasher } from './hll.ts'
import { type History } from './history.ts'
import { DAY_MS, mergeDays, rollDay, type DayCarrier } from './days.ts'
import type { CountJournal, JournalLine } from './journal.ts'
import type { RefCounts } from './refs.ts'
import type { TopPairs } from './top-pairs.ts'

/**
 * Pairs kept in memory while the counter table cannot be written (a full disk): counts for
 * these go on adding up; a count for any other pair is dropped (`unrecorded`).
 */
export const MAX_PENDING_PAIRS = 100_000
/** While writes fail, how often pending counts are tried again (instead of every persist). */
const FAILING_RETRY_MS = 1000
/** Pairs remembered as having a counter row, so most checks for a new pair never reach SQLite. */
const KNOWN_PAIRS = 50_000
const MINUTE_MS = 60_000
/** With the journal, how often its counts go into the counter table (reads take them sooner). */
const TABLE_WRITE_MS = 1000

/**
 * A persist's row write: the pair's counts, and (with history kept) what it adds to its open
 * day (`?8`, see History.open). `roll` is for a row whose open day may be another: it moves the
 * open day to `?8`, its counts starting over (History.open has folded the old ones into
 * stats_day first). Without `roll` the open day is left as it is, so the index on it is not
 * touched.
 */
const upsertSql = (roll: boolean, ranked: boolean) => `
  INSERT INTO stats_counter
    (did, repository, pull_count, push_count, last_pull, last_push, created_at, updated_at,
     open_day, open_pulls, open_pushes)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)
  ON CONFLICT (did, repository) DO UPDATE SET
    pull_count = pull_count + excluded.pull_count,
    push_count = push_count + excluded.push_count,
    last_pull = CASE WHEN excluded.last_pull IS NOT NULL AND (last_pull IS NULL OR excluded.last_pull > last_pull)
                THEN excluded.last_pull ELSE last_pull END,
    last_push = CASE WHEN excluded.last_push IS NOT NULL AND (last_push IS NULL OR excluded.last_push > last_push)
                THEN excluded.last_push ELSE last_push END,
    updated_at = CASE WHEN excluded.updated_at > updated_at THEN excluded.updated_at ELSE updated_at END,
    ${
      roll
        ? `open_pulls = CASE WHEN open_day = excluded.open_day THEN open_pulls ELSE 0 END + excluded.open_pulls,
    open_pushes = CASE WHEN open_day = excluded.open_day THEN open_pushes ELSE 0 END + excluded.open_pushes,
    open_day = excluded.open_day,`
        : `open_pulls = open_pulls + excluded.open_pulls,
    open_pushes = open_pushes + excluded.open_pushes,`
    }
    version = version + 1${
      ranked
        ? `
  RETURNING pull_count + baseline_pull AS pulls, push_count + baseline_push AS pushes`
        : ''
    }`

const SQL = {
  upsert: upsertSql(false, false),
  upsertRoll: upsertSql(true, false),
  /** The upserts, answering the pair's counts: used while the most pulled pairs are kept. */
  upsertRanked: upsertSql(false, true),
  upsertRollRanked: upsertSql(true, true),
  hasCounter: 'SELECT 1 FROM stats_counter WHERE did = ? AND repository = ?',
  /** The journal's last line the table holds. */
  folded: 'SELECT folded FROM stats_journal WHERE id = 1',
  setFolded: 'UPDATE stats_journal SET folded = ? WHERE id = 1',
  /** The hold's totals follow each persist (inserts and baselines are the triggers'). */
  addTotals:
    'UPDATE stats_total SET pulls = pulls + ?, pushes = pushes + ? WHERE id = 1',
}

/** A pair's counts taken since the last persist. */
export type Delta = PendingCounts &
  DayCarrier & {
    did: string
    repository: string
    /** When the first of them was taken. */
    first: number
  }

/**
 * Where a persist sends its batch instead of the counter table: with HOLD_ROLE=frontend, the
 * Redis stream the writer applies (src/stats/stream-sink.ts). It takes the map as its own.
 */
export type DeltaSink = { accept(batch: Map<string, Delta>): void }

/**
 * Where counts are taken and kept: a count is a map update in memory (no I/O on the request
 * path). Every `persistMs` what was counted since goes into the count journal, one write()
 * (src/stats/journal.ts): the durability point. Once a second, and before any read that must
 * see them, the journaled deltas go into the `stats_counter` table in one transaction. Without
 * a journal (or while it cannot be written) the deltas go into the table every `persistMs`.
 * While the table cannot be written the deltas stay in memory, at most MAX_PENDING_PAIRS pairs
 * of them, and are tried again once a second.
 */
export class CounterStore {
  /** Counted since the last persist. */
  private tick = new Map<string, Delta>()
  /** Pairs in `tick` that `pending` does not have. */
  private tickNew = 0
  /** Journaled (or put back after a failed write), not yet in the table. */
  private pending = new Map<string, Delta>()
  private readonly known = new Set<string>()
  /** Counts taken since the process started. */
  readonly totals = { pulls: 0, pushes: 0 }
  /** Counts dropped because MAX_PENDING_PAIRS pairs were waiting for the table already. */
  unrecorded = 0
  private lastPersistTry = 0
  /** When the table last took what was pending. */
  private lastTableWrite = 0
  private readonly journal: CountJournal | undefined
  /** Set while journal writes fail (logged when they start failing, at most once a minute). */
  private journalFailing = false
  private journalWarned = -Infinity
  private persistTimer: NodeJS.Timeout | undefined
  private lastDid = ''
  private lastRepository = ''
  private lastKey = ''
  private readonly sql: Statements<keyof typeof SQL>

  private readonly database: Database
  private readonly top: TopPairs
  private readonly log: Logger
  /** The day rows, written in the persist's transaction; undefined when none are kept. */
  private readonly history: History | undefined
  /** Set when unique clients are counted: what a client's sketch entry is. */
  readonly clients: ClientHasher | undefined
  private sink: DeltaSink | undefined

  /** Per-tag and per-manifest counts, written in the persist's transaction. */
  private readonly refs: RefCounts | undefined

  constructor(
    database: Database,
    top: TopPairs,
    log: Logger,
    extra: {
      history?: History
      clients?: ClientHasher
      refs?: RefCounts
      /** Where counts are journaled between the table's writes; read back by recover(). */
      journal?: CountJournal
    } = {},
  ) {
    this.database = database
    this.top = top
    this.log = log
    this.history = extra.history
    this.clients = extra.clients
    this.refs = extra.refs
    this.journal = extra.journal
    this.sql = prepareAll(database.db, SQL)
  }

  /**
   * Takes one pull or push of (did, repository): a map update, no I/O. `client` (the caller's
   * DID, or its address) goes into the pair's unique-client sketch of the day, when kept.
   */
  count(
    kind: 'pull' | 'push',
    did: string,
    repository: string,
    now = Date.now(),
    client?: string,
  ): void {
    const d = this.delta(did, repository, now)
    if (!d) return
    const day = Math.floor(now / DAY_MS)
    if (day !== d.day) rollDay(d, day)
    if (client !== undefined && this.clients) {
      ;(d.clients ??= new Sketch()).add(this.clients.of(client))
    }
    if (kind === 'pull') {
      d.pulls++
      d.lastPull = now
      this.totals.pulls++
    } else {
      d.pushes++
      d.lastPush = now
      this.totals.pushes++
    }
  }

  private delta(
    did: string,
    repository: string,
    now: number,
  ): Delta | undefined {
    const key = this.keyOf(did, repository)
    let d = this.tick.get(key)
    if (!d) {
      const known = this.pending.has(key)
      if (!known && this.pending.size + this.tickNew >= MAX_PENDING_PAIRS) {
        this.unrecorded++
        return undefined
      }
      if (!known) this.tickNew++
      d = {
        did,
        repository,
        pulls: 0,
        pushes: 0,
        lastPull: 0,
        lastPush: 0,
        first: now,
        day: Math.floor(now / DAY_MS),
      }
      this.tick.set(key, d)
    }
    return d
  }

  /**
   * Whether (did, repository) has been counted before (or has imported counts): pending in
   * memory, remembered, or in the counter table. Only a miss in memory asks SQLite.
   */
  has(did: string, repository: string): boolean {
    const key = this.keyOf(did, repository)
    if (this.tick.has(key) || this.pending.has(key) || this.known.has(key)) {
      return true
    }
    if (!this.sql.hasCounter.get(did, repository)) return false
    this.remember(key)
    return true
  }

  /** keyOf, remembering the last pair: a count asks has() and then counts the same pair. */
  private keyOf(did: string, repository: string): string {
    if (did !== this.lastDid || repository !== this.lastRepository) {
      this.lastKey = keyOf(did, repository)
      this.lastDid = did
      this.lastRepository = repository
    }
    return this.lastKey
  }

  private remember(key: string): void {
    if (this.known.has(key)) return
    if (this.known.size >= KNOWN_PAIRS) {
      // The oldest entry first: Sets iterate in insertion order.
      this.known.delete(this.known.values().next().value!)
    }
    this.known.add(key)
  }

  /** What is pending for a pair, not yet in the table. */
  pendingOf(did: string, repository: string): PendingCounts | undefined {
    const key = keyOf(did, repository)
    const d = this.pending.get(key)
    const t = this.tick.get(key)
    return d && t ? sumOf(d, t) : (t ?? d)
  }

  /** Every pair with pending counts. */
  *pendingDeltas(): Iterable<
    PendingCounts & { did: string; repository: string }
  > {
    for (const [key, d] of this.pending) {
      const t = this.tick.get(key)
      yield t ? { did: d.did, repository: d.repository, ...sumOf(d, t) } : d
    }
    for (const [key, t] of this.tick) if (!this.pending.has(key)) yield t
  }

  /** Pairs counted in memory and not yet in the counter table. */
  get pendingPairs(): number {
    return this.pending.size + this.tickNew
  }

  /**
   * Moves what was counted since the last call into `pending`, journaled first when there is a
   * journal: whatever is pending is then in the journal (or the journal is failing). Whether
   * the journal took it (false without one).
   */
  settle(): boolean {
    const refs = this.refs?.takeTick()
    if (this.tick.size === 0 && !refs) return this.journalWorks()
    const tick = this.tick
    this.tick = new Map()
    this.tickNew = 0
    let journaled = false
    if (this.journal && !this.sink) {
      try {
        this.journal.appendCounts(tick.values(), refs ?? [])
        journaled = this.noteJournal(this.journal.failure)
      } catch (err) {
        this.noteJournal(err as Error)
      }
    }
    for (const [key, d] of tick) this.addPending(key, d)
    return journaled
  }

  private journalWorks(): boolean {
    return (
      this.journal !== undefined &&
      !this.sink &&
      this.journal.isOpen &&
      this.noteJournal(this.journal.failure)
    )
  }

  /** Notes whether the journal's writes work (logged when that changes); whether they do. */
  private noteJournal(err: Error | undefined): boolean {
    if (err) {
      const now = Date.now()
      if (!this.journalFailing && now - this.journalWarned >= MINUTE_MS) {
        this.journalWarned = now
        // A warning, at most once a minute: a full disk is the database's error to report.
        this.log.warn(
          { err, path: this.journal?.path },
          'writing the count journal failed: counts go into the table at once',
        )
      }
      this.journalFailing = true
      return false
    }
    this.journalFailing = false
    return true
  }

  /** Puts `d` among the pending deltas, `d` counted after any pending for its pair. */
  private addPending(key: string, d: Delta): void {
    const cur = this.pending.get(key)
    if (!cur) {
      this.pending.set(key, d)
    } else if (d.day === cur.day && d.earlier === undefined) {
      // Most often: counts of the same day join the pending delta in place, and its sketch
      // takes the few clients of the last 25 ms (not the other way round).
      cur.pulls += d.pulls
      cur.pushes += d.pushes
      cur.lastPull = Math.max(cur.lastPull, d.lastPull)
      cur.lastPush = Math.max(cur.lastPush, d.lastPush)
      if (d.clients) {
        if (cur.clients) cur.clients.merge(d.clients)
        else cur.clients = d.clients
      }
    } else {
      addOlder(d, cur)
      this.pending.set(key, d)
    }
  }

  /**
   * Reads back the journal's lines the counter table does not hold (a process that ended
   * without its last write into the table) and writes them into it. Called once, before the
   * hold counts.
   */
  recover(): void {
    const journal = this.journal
    if (!journal) return
    const { folded } = this.sql.folded.get() as { folded: number }
    const { lines, bad } = journal.open(folded)
    if (bad > 0) {
      this.log.warn(
        { path: journal.path, lines: bad },
        'skipped count journal lines that do not parse (a machine crash in the middle of a write)',
      )
    }
    if (lines.length === 0) {
      journal.reset()
      return
    }
    const read = replay(lines, (key, d) => this.addPending(key, d), this.refs)
    this.log.info(
      { lines: lines.length, ...read },
      'counts read back from the count journal',
    )
    try {
      this.persist()
    } catch (err) {
      // Kept pending (and in the journal); the timer tries again.
      this.log.error({ err }, 'writing the journaled counts failed; will retry')
    }
  }

  /**
   * Drops what is pending for a DID's pairs (all, or one repository) and what is remembered of
   * every pair: a reset makes them new again.
   */
  forget(did: string, repository: string | null): void {
    this.known.clear()
    // With a journal, everything counted so far goes into the table first (the reset's delete
    // then removes the pairs'), so no line from before the reset is read back after a crash.
    // Throws, and drops nothing, when the table cannot be written.
    if (this.journal?.isOpen && !this.sink) this.persist()
    this.settle()
    for (const [key, d] of this.pending) {
      if (
        d.did === did &&
        (repository === null || d.repository === repository)
      ) {
        this.pending.delete(key)
      }
    }
  }

  /** From now on, persist() hands each batch to `sink` instead of the counter table. */
  sendTo(sink: DeltaSink): void {
    this.sink = sink
  }

  /** Moves pending deltas into the counter table (or the sink), in one transaction. */
  persist(): number {
    this.settle()
    if (this.pending.size === 0) return 0
    const batch = this.pending
    this.pending = new Map()
    if (this.sink) {
      // The pair is counted now, wherever its counts go on to.
      for (const key of batch.keys()) this.remember(key)
      this.sink.accept(batch)
      return batch.size
    }
    const journal = this.journal?.isOpen ? this.journal : undefined
    try {
      this.writeTable(
        batch.values(),
        journal &&
          (() => {
            // Every journal line so far is in `batch` or was in an earlier write.
            this.refs?.write()
            this.sql.setFolded.run(journal.last)
            this.database.afterCommit(() => {
              journal.tableTookAll()
              journal.reset()
            })
          }),
      )
    } catch (err) {
      this.putBack(batch)
      throw err
    }
    this.lastTableWrite = Date.now()
    return batch.size
  }

  /**
   * Adds deltas to the counter table in one transaction, with `inTxn` run inside it (the
   * writer records the stream entries it applied there). Throws when the table cannot be written.
   */
  writeTable(deltas: Iterable<Delta>, inTxn?: () => void): void {
    const top = this.top.keeping ? this.top : undefined
    const list = Array.isArray(deltas) ? (deltas as Delta[]) : [...deltas]
    const history = this.history
    try {
      this.database.transaction(() => {
        let pulls = 0
        let pushes = 0
        for (const d of list) {
          const last = Math.max(d.lastPull, d.lastPush, d.first)
          const open = history?.open(d)
          const args = [
            d.did,
            d.repository,
            d.pulls,
            d.pushes,
            d.lastPull ? iso(d.lastPull) : null,
            d.lastPush ? iso(d.lastPush) : null,
            iso(last),
            open?.day ?? 0,
            open?.pulls ?? 0,
            open?.pushes ?? 0,
          ] as const
          pulls += d.pulls
          pushes += d.pushes
          const roll = open?.roll === true
          if (!top) {
            ;(roll ? this.sql.upsertRoll : this.sql.upsert).run(...args)
            continue
          }
          const counts = (
            roll ? this.sql.upsertRollRanked : this.sql.upsertRanked
          ).get(...args) as { pulls: number; pushes: number }
          top.saw(d.did, d.repository, counts)
        }
        this.sql.addTotals.run(pulls, pushes)
        history?.wrote(list)
        // With a journal, the tags' journaled counts go in with the line number that covers
        // them (persist's inTxn), never with another's batch (a writer applying a frontend's).
        if (!this.journal?.isOpen) this.refs?.write()
        inTxn?.()
      })
    } catch (err) {
      // The kept most pulled pairs may hold counts the rollback took back.
      this.top.forget()
      history?.rolledBack()
      this.refs?.rolledBack()
      throw err
    }
  }

  /** Deltas a failed persist took out go back, added to any counted since: nothing is lost. */
  private putBack(batch: Map<string, Delta>): void {
    for (const [key, d] of batch) {
      const cur = this.pending.get(key)
      if (!cur) this.pending.set(key, d)
      else addOlder(cur, d)
    }
  }

  /** persist(), for a read that can do without: a disk failure leaves the counts pending. */
  persistIfWritable(): void {
    try {
      this.persist()
    } catch (err) {
      if (!this.database.writeFailure) throw err
    }
  }

  /**
   * Every `persistMs` journals what was counted since, and writes the table once every
   * TABLE_WRITE_MS; without a working journal writes the table every `persistMs`, or once a
   * second while the disk refuses writes.
   */
  start(persistMs: number): void {
    this.persistTimer = setInterval(() => {
      const now = Date.now()
      // Journaled every time, the table refusing writes or not.
      const journaled = this.settle()
      if (this.database.writeFailure) {
        // While the disk refuses writes, a retry every persist would only burn CPU.
        if (now - this.lastPersistTry < FAILING_RETRY_MS) return
      } else if (journaled && now - this.lastTableWrite < TABLE_WRITE_MS) {
        return
      }
      this.lastPersistTry = now
      try {
        this.persist()
      } catch (err) {
        // A disk failure is logged by the database (at most once a minute).
        if (!this.database.writeFailure) {
          this.log.error({ err }, 'persisting stats failed; will retry')
        }
      }
    }, persistMs)
  }

  stop(): void {
    clearInterval(this.persistTimer)
  }

  /** Closes the journal once its writes are done (after the last persist). */
  async close(): Promise<void> {
    await this.journal?.close()
  }
}

/** A pair's counts in two deltas, added (what a read of them needs). */
const sumOf = (a: PendingCounts, b: PendingCounts): PendingCounts => ({
  pulls: a.pulls + b.pulls,
  pushes: a.pushes + b.pushes,
  lastPull: Math.max(a.lastPull, b.lastPull),
  lastPush: Math.max(a.lastPush, b.lastPush),
})

/** Adds `older` (counted before `newer`) into `newer`. */
const addOlder = (newer: Delta, older: Delta): void => {
  mergeDays(newer, older)
  newer.pulls += older.pulls
  newer.pushes += older.pushes
  newer.lastPull = Math.max(newer.lastPull, older.lastPull)
  newer.lastPush = Math.max(newer.lastPush, older.lastPush)
  newer.first = Math.min(newer.first, older.first)
}

/** Applies journal lines in order, each counted after those before it. What was read, for the log. */
const replay = (
  lines: JournalLine[],
  add: (key: string, d: Delta) => void,
  refs: RefCounts | undefined,
): { pulls: number; pushes: number } => {
  const read = { pulls: 0, pushes: 0 }
  const pending = new Map<string, Delta>()
  for (const line of lines) {
    for (const d of line.counts) {
      const key = keyOf(d.did, d.repository)
      const cur = pending.get(key)
      if (cur) addOlder(d, cur)
      pending.set(key, d)
      read.pulls += d.pulls - (cur?.pulls ?? 0)
      read.pushes += d.pushes - (cur?.pushes ?? 0)
    }
    for (const p of line.refs) refs?.replay(p)
  }
  for (const [key, d] of pending) add(key, d)
  return read
}
