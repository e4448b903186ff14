import {
  close,
  fstatSync,
  ftruncate,
  ftruncateSync,
  openSync,
  readFileSync,
  write,
} from 'node:fs'
import type { Delta } from './counter-store.ts'
import type { RefPending } from './refs.ts'
import { decodeDelta, encodeDelta } from './stream-entry.ts'

/** The count journal's file in the data directory. */
export const COUNT_JOURNAL_FILE = 'stats-counts.journal'

/** One line of the journal, as written and as read back. */
export type JournalLine = { seq: number; counts: Delta[]; refs: RefPending[] }

/**
 * The count journal: what was counted in the last few milliseconds, appended to a file every
 * persist (25 ms) with one write, so a process killed at any moment loses no more than that
 * and the write under way.
 * The counter table takes the journal's counts in bulk once a second (and before any read or
 * flush that needs them in it), in a transaction that also records the last line it holds; then the file is
 * emptied. A start reads back the lines past that one. A write that lands in the kernel's page
 * cache survives the process, as a committed SQLite transaction does under
 * `synchronous = NORMAL`: the same promise, for a write() instead of a commit (a transaction,
 * its pages and the log's upkeep) 40 times a second.
 *
 * Lines are JSON; a write is whole or, if the disk refuses part of it, cut back off the file, so
 * a line that does not parse can only be a machine's crash in the middle of one: it is skipped.
 * Lines are written in order, off the event loop (see append), so `last` may name a line still
 * on its way: the table, which holds it, then makes a read that misses it right.
 */
export class CountJournal {
  readonly path: string
  private fd: number | undefined
  /** The bytes of whole lines in the file. */
  private size = 0
  private seq = 0
  /** Lines to write, and where the file is to be emptied, in order. */
  private queue: (Buffer | typeof EMPTY)[] = []
  private busy = false
  private idle: (() => void)[] = []
  /**
   * Set when a write fails (or the writes stall), and kept until the counter table holds what
   * the failed lines held (`tableTookAll`): a later write that works does not bring them back.
   */
  failure: Error | undefined

  constructor(path: string) {
    this.path = path
  }

  /** The number of the last line queued for writing (or read back). */
  get last(): number {
    return this.seq
  }

  get isOpen(): boolean {
    return this.fd !== undefined
  }

  /**
   * Opens the file for appending and reads back the lines after `folded` (the last line the
   * counter table holds). `bad` counts the lines that did not parse.
   */
  open(folded: number): { lines: JournalLine[]; bad: number } {
    try {
      this.fd = openSync(this.path, 'a+', 0o600)
    } catch (err) {
      throw new Error(
        `cannot open the count journal ${this.path}: ${(err as Error).message}`,
        { cause: err },
      )
    }
    this.size = fstatSync(this.fd).size
    this.seq = folded
    const lines: JournalLine[] = []
    let bad = 0
    if (this.size === 0) return { lines, bad }
    const text = readFileSync(this.fd, 'utf8')
    // A line cut short by a machine crash is cut off, so the next line starts on its own.
    const whole = text.lastIndexOf('\n') + 1
    if (whole < text.length) {
      ftruncateSync(this.fd, Buffer.byteLength(text.slice(0, whole)))
      this.size = Buffer.byteLength(text.slice(0, whole))
    }
    for (const raw of text.split('\n')) {
      if (raw === '') continue
      const line = parseLine(raw)
      if (!line) {
        bad++
        continue
      }
      if (line.seq > this.seq) this.seq = line.seq
      if (line.seq > folded) lines.push(line)
    }
    return { lines, bad }
  }

  /** Appends the counts of one persist; returns its sequence number. */
  appendCounts(counts: Iterable<Delta>, refs: RefPending[]): number {
    const c: unknown[] = []
    for (const d of counts) c.push(encodeDelta(d))
    const r = refs.map((p) => [
      p.did,
      p.repository,
      p.kind,
      p.ref,
      p.pulls,
      p.pushes,
      p.lastPull,
      p.lastPush,
    ])
    return this.append((s) => ({ s, c, r }))
  }

  /**
   * Hands a line to the kernel with write() in libuv's thread pool, after the lines before it:
   * a write can wait on the disk's own traffic (dirty pages being written back, the log's
   * checkpoints), which the event loop must not. A write that fails, or writes part of a line,
   * is cut back off the file and noted in `failure`: the counter store then writes the table.
   */
  private append(make: (seq: number) => object): number {
    if (this.fd === undefined) throw new Error('the count journal is not open')
    const seq = this.seq + 1
    this.queue.push(Buffer.from(`${JSON.stringify(make(seq))}\n`))
    this.seq = seq
    if (this.queue.length > STALLED_LINES) {
      this.failure ??= new Error(
        `writes to ${this.path} stalled: ${this.queue.length} lines waiting`,
      )
    }
    this.next()
    return seq
  }

  /** The counter table now holds every line so far: a failed write no longer matters. */
  tableTookAll(): void {
    this.failure = undefined
  }

  /** Empties the file, after the lines queued so far: the counter table holds them all. */
  reset(): void {
    if (this.fd === undefined) return
    this.queue.push(EMPTY)
    this.next()
  }

  /** Resolves once every line queued so far is written (or has failed). */
  written(): Promise<void> {
    if (!this.busy && this.queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.idle.push(resolve))
  }

  private next(): void {
    const fd = this.fd
    if (this.busy || fd === undefined) return
    if (this.queue.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve()
      return
    }
    this.busy = true
    if (this.queue[0] === EMPTY) {
      this.queue.shift()
      if (this.size === 0) return this.done()
      ftruncate(fd, 0, (err) => {
        if (err) this.failure = err
        else this.size = 0
        this.done()
      })
      return
    }
    // The lines queued while the last write was under way go in one write.
    let end = 0
    while (end < this.queue.length && this.queue[end] !== EMPTY) end++
    const lines = this.queue.splice(0, end) as Buffer[]
    const bytes = lines.length === 1 ? lines[0] : Buffer.concat(lines)
    write(fd, bytes, 0, bytes.length, null, (err, n) => {
      if (!err && n === bytes.length) {
        this.size += n
        return this.done()
      }
      this.failure =
        err ??
        new Error(`short write to ${this.path}: ${n} of ${bytes.length} bytes`)
      // Cut a partial line back off, so the next line starts on a line of its own.
      ftruncate(fd, this.size, () => this.done())
    })
  }

  private done(): void {
    this.busy = false
    this.next()
  }

  /** Closes the file once every queued line is written. */
  async close(): Promise<void> {
    const fd = this.fd
    if (fd === undefined) return
    await this.written()
    this.fd = undefined
    await new Promise<void>((resolve) => close(fd, () => resolve()))
  }
}

/** In the write queue: where the file is emptied. */
const EMPTY = Symbol('empty')
/** Lines waiting for the disk (ten seconds of persists) before the writes count as failing. */
const STALLED_LINES = 400

class BadLine extends Error {}

const str = (v: unknown): string => {
  if (typeof v !== 'string' || v === '') throw new BadLine()
  return v
}
const int = (v: unknown): number => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new BadLine()
  }
  return v
}
const list = (v: unknown): unknown[] => {
  if (!Array.isArray(v)) throw new BadLine()
  return v
}

const decodeRef = (v: unknown): RefPending => {
  const a = list(v)
  const kind = a[2]
  if (kind !== 'tag' && kind !== 'digest') throw new BadLine()
  return {
    did: str(a[0]),
    repository: str(a[1]),
    kind,
    ref: str(a[3]),
    pulls: int(a[4]),
    pushes: int(a[5]),
    lastPull: int(a[6]),
    lastPush: int(a[7]),
  }
}

/** A line of the file, or undefined when it is not one the journal writes. */
const parseLine = (raw: string): JournalLine | undefined => {
  try {
    const o = JSON.parse(raw) as Record<string, unknown>
    if (typeof o !== 'object' || o === null) return undefined
    const seq = int(o.s)
    return {
      seq,
      counts: list(o.c).map(decodeDelta),
      refs: list(o.r).map(decodeRef),
    }
  } catch {
    return undefined
  }
}
