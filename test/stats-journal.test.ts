import { appendFileSync, copyFileSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { createRootLogger } from '../src/logger.ts'
import { CounterStore } from '../src/stats/counter-store.ts'
import { DAY_MS, dayOf, dayString } from '../src/stats/days.ts'
import { ClientHasher } from '../src/stats/hll.ts'
import { History } from '../src/stats/history.ts'
import { COUNT_JOURNAL_FILE, CountJournal } from '../src/stats/journal.ts'
import { RefCounts } from '../src/stats/refs.ts'
import { TopPairs } from '../src/stats/top-pairs.ts'
import { removeDir, tempDir } from './_util.ts'

type LogLine = { level: number; msg: string; lines?: number }

const A = 'did:plc:journalaaaaaaaaaaaaaaaa'
const B = 'did:plc:journalbbbbbbbbbbbbbbbb'
/** Midnight UTC of a day far enough ahead that the real clock never reaches it in a test. */
const D0 = (dayOf(Date.now()) + 1000) * DAY_MS
const day = (n: number) => dayOf(D0) + n

const dirs: string[] = []
const opened: { db: Database; counters: CounterStore }[] = []
afterEach(async () => {
  for (const p of opened.splice(0)) {
    await p.counters.close()
    if (p.db.db.isOpen) p.db.db.close()
  }
  for (const dir of dirs.splice(0)) await removeDir(dir)
})

/**
 * The counting parts of a hold over `dir`, as StatsService builds them, the journal read back.
 * Dropping them without a persist is what a kill -9 leaves: the database as last committed and
 * the journal as last written.
 */
const openParts = (dir: string) => {
  const lines: LogLine[] = []
  const log = createRootLogger('info', {
    pretty: false,
    destination: {
      write: (line: string) => {
        lines.push(JSON.parse(line) as LogLine)
      },
    },
  })
  const db = new Database(join(dir, 'hold.sqlite'))
  const history = new History(db, 400, log)
  const refs = new RefCounts(db)
  const journal = new CountJournal(join(dir, COUNT_JOURNAL_FILE))
  const counters = new CounterStore(db, new TopPairs(db), log, {
    history,
    clients: new ClientHasher(Buffer.alloc(32, 7)),
    refs,
    journal,
  })
  opened.push({ db, counters })
  counters.recover()
  return { db, history, refs, journal, counters, lines }
}

/**
 * Ends a process's parts once the journal writes under way have landed (a few microseconds
 * after each persist), without writing anything more: a crash.
 */
const crash = async (parts: ReturnType<typeof openParts>) => {
  const i = opened.findIndex((p) => p.counters === parts.counters)
  opened.splice(i, 1)
  await parts.counters.close()
  parts.db.db.close()
}

const make = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return { dir, ...openParts(dir) }
}

const counter = (db: Database, did: string, repository: string) =>
  db.db
    .prepare(
      'SELECT pull_count, push_count, last_pull, last_push FROM stats_counter WHERE did = ? AND repository = ?',
    )
    .get(did, repository) as
    | { pull_count: number; push_count: number; last_pull: string | null }
    | undefined

const journalBytes = (dir: string) =>
  statSync(join(dir, COUNT_JOURNAL_FILE)).size

describe('the count journal', () => {
  it('gives back, after a crash, every count journaled and not yet in the table: days, clients and tags too', async () => {
    const first = await make()
    const { counters, refs } = first
    for (let i = 0; i < 5; i++) {
      counters.count('pull', A, 'app', D0 + i, `client${i}`)
    }
    counters.count('push', A, 'app', D0 + 10)
    counters.count('pull', B, 'tools/x', D0 + 20, 'client0')
    refs.count('pull', A, 'app', 'tag', 'latest', D0 + 30)
    // The persist timer's step: one journal line.
    expect(counters.settle()).toBe(true)
    // The same day again: joins the pending delta in place.
    counters.count('pull', A, 'app', D0 + 40, 'client5')
    expect(counters.settle()).toBe(true)
    // A midnight passes; the next line carries both days of A's delta.
    counters.count('pull', A, 'app', D0 + DAY_MS - 1, 'client9')
    counters.count('pull', A, 'app', D0 + DAY_MS + 5, 'client9')
    refs.count('pull', A, 'app', 'tag', 'latest', D0 + DAY_MS + 6)
    // Reads add what is journaled and what is not yet, without a write.
    expect(counters.pendingOf(A, 'app')).toEqual({
      pulls: 8,
      pushes: 1,
      lastPull: D0 + DAY_MS + 5,
      lastPush: D0 + 10,
    })
    expect(counters.pendingPairs).toBe(2)
    expect(counters.settle()).toBe(true)
    // Nothing is in the table yet: it takes the journal once a second.
    expect(counter(first.db, A, 'app')).toBeUndefined()
    await first.journal.written()
    expect(journalBytes(first.dir)).toBeGreaterThan(0)
    await crash(first)

    const second = openParts(first.dir)
    expect(counter(second.db, A, 'app')).toMatchObject({
      pull_count: 8,
      push_count: 1,
      last_pull: new Date(D0 + DAY_MS + 5).toISOString(),
    })
    expect(counter(second.db, B, 'tools/x')).toMatchObject({
      pull_count: 1,
      push_count: 0,
    })
    expect(second.history.range(A, 'app', day(0), day(1))).toEqual([
      { day: dayString(day(0)), pulls: 7, pushes: 1, uniqueClients: 7 },
      { day: dayString(day(1)), pulls: 1, pushes: 0, uniqueClients: 1 },
    ])
    expect(second.refs.get(A, 'app', 'tag', 'latest')).toMatchObject({
      pullCount: 2,
    })
    expect(
      second.lines.find(
        (l) => l.msg === 'counts read back from the count journal',
      ),
    ).toMatchObject({ lines: 3 })
    // What the table took, the file no longer holds.
    await second.journal.written()
    expect(journalBytes(first.dir)).toBe(0)

    // A third start reads nothing back, and counts on from there.
    await crash(second)
    const third = openParts(first.dir)
    expect(counter(third.db, A, 'app')?.pull_count).toBe(8)
    third.counters.count('pull', A, 'app', D0 + DAY_MS + 60)
    third.counters.persist()
    expect(counter(third.db, A, 'app')?.pull_count).toBe(9)
  })

  it('writes into the table what many persists journaled: counts, days and clients', async () => {
    const { db, counters, history } = await make()
    for (let tick = 0; tick < 4; tick++) {
      for (let i = 0; i <= tick; i++) {
        counters.count(
          'pull',
          A,
          'app',
          D0 + 10 * tick + i,
          `client${tick}-${i}`,
        )
      }
      counters.settle()
    }
    counters.count('pull', A, 'app', D0 + DAY_MS, 'client-next-day')
    counters.settle()
    counters.persist()
    expect(counter(db, A, 'app')?.pull_count).toBe(11)
    expect(history.range(A, 'app', day(0), day(1))).toEqual([
      { day: dayString(day(0)), pulls: 10, pushes: 0, uniqueClients: 10 },
      { day: dayString(day(1)), pulls: 1, pushes: 0, uniqueClients: 1 },
    ])
  })

  it('does not count twice what the table took before the file was emptied', async () => {
    const first = await make()
    const { counters } = first
    counters.count('pull', A, 'app', D0)
    counters.count('pull', A, 'app', D0 + 1)
    counters.settle()
    await first.journal.written()
    const copy = join(first.dir, 'journal-before-write')
    copyFileSync(join(first.dir, COUNT_JOURNAL_FILE), copy)
    counters.persist()
    expect(counter(first.db, A, 'app')?.pull_count).toBe(2)
    await first.journal.written()
    expect(journalBytes(first.dir)).toBe(0)
    // A crash between the table's commit and the file being emptied leaves the lines behind.
    await crash(first)
    copyFileSync(copy, join(first.dir, COUNT_JOURNAL_FILE))

    const second = openParts(first.dir)
    expect(counter(second.db, A, 'app')?.pull_count).toBe(2)
    // Lines written after those are read back, once.
    second.counters.count('pull', A, 'app', D0 + 2)
    second.counters.settle()
    await crash(second)
    const third = openParts(first.dir)
    expect(counter(third.db, A, 'app')?.pull_count).toBe(3)
  })

  it('reads back nothing from before a reset', async () => {
    const first = await make()
    const { db, counters, refs } = first
    counters.count('pull', A, 'app', D0)
    counters.count('pull', A, 'web', D0)
    counters.count('pull', B, 'app', D0)
    refs.count('pull', A, 'app', 'tag', 'v1', D0)
    counters.settle()
    // A reset of A's app as StatsMaintenance.reset makes it: the store forgets the pair
    // (everything counted goes into the table first), then its rows go.
    counters.forget(A, 'app')
    db.transaction(() => {
      db.db
        .prepare('DELETE FROM stats_counter WHERE did = ? AND repository = ?')
        .run(A, 'app')
      refs.forget(A, 'app')
    })
    counters.count('pull', A, 'app', D0 + 5)
    counters.settle()
    await crash(first)

    const second = openParts(first.dir)
    expect(counter(second.db, A, 'app')?.pull_count).toBe(1)
    expect(counter(second.db, A, 'web')?.pull_count).toBe(1)
    expect(counter(second.db, B, 'app')?.pull_count).toBe(1)
    expect(second.refs.get(A, 'app', 'tag', 'v1').pullCount).toBe(0)
  })

  it('skips a line cut short by a machine crash, and reads the lines before it', async () => {
    const first = await make()
    const { counters } = first
    counters.count('pull', A, 'app', D0)
    counters.settle()
    counters.count('pull', B, 'app', D0)
    counters.settle()
    await crash(first)
    const path = join(first.dir, COUNT_JOURNAL_FILE)
    const whole = readFileSync(path, 'utf8')
    expect(whole.split('\n').filter(Boolean)).toHaveLength(2)
    appendFileSync(path, whole.slice(0, 25))

    const second = openParts(first.dir)
    expect(counter(second.db, A, 'app')?.pull_count).toBe(1)
    expect(counter(second.db, B, 'app')?.pull_count).toBe(1)
    expect(
      second.lines.find((l) => l.msg.startsWith('skipped count journal')),
    ).toMatchObject({ level: 40, lines: 1 })
    await second.journal.written()
    expect(journalBytes(first.dir)).toBe(0)
  })

  it('writes the table at once while the journal cannot be written, losing nothing', async () => {
    const first = await make()
    const { counters } = first
    counters.count('pull', A, 'app', D0)
    counters.settle()
    // The journal's file is closed under the store: every write to it now fails.
    await first.journal.close()
    counters.count('pull', A, 'app', D0 + 1)
    expect(counters.settle()).toBe(false)
    expect(
      first.lines.find((l) =>
        l.msg.startsWith('writing the count journal failed'),
      ),
    ).toMatchObject({ level: 40 })
    counters.persist()
    expect(counter(first.db, A, 'app')?.pull_count).toBe(2)
  })

  it("counts a tag once when a writer applies another process's batch between its own persists", async () => {
    const first = await make()
    const { counters, refs } = first
    counters.count('pull', A, 'app', D0)
    refs.count('pull', A, 'app', 'tag', 'v1', D0)
    counters.settle()
    // A frontend's batch, applied by the writer in a transaction of its own (stream-consumer.ts).
    counters.writeTable([
      {
        did: B,
        repository: 'app',
        pulls: 3,
        pushes: 0,
        lastPull: D0 + 1,
        lastPush: 0,
        first: D0 + 1,
        day: day(0),
      },
    ])
    await crash(first)

    const second = openParts(first.dir)
    expect(second.refs.get(A, 'app', 'tag', 'v1').pullCount).toBe(1)
    expect(counter(second.db, A, 'app')?.pull_count).toBe(1)
    expect(counter(second.db, B, 'app')?.pull_count).toBe(3)
  })

  it('cuts a line cut short off the file when it opens it, so the next line starts on its own', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, COUNT_JOURNAL_FILE)
    const good = '{"s":1,"c":[],"r":[]}\n'
    appendFileSync(path, `${good}{"s":2,"c":[["did:pl`)
    const journal = new CountJournal(path)
    expect(journal.open(0)).toMatchObject({ bad: 1 })
    expect(readFileSync(path, 'utf8')).toBe(good)
    expect(journal.last).toBe(1)
    await journal.close()
  })

  it('takes a failed write as failing until the table holds its counts, whatever writes work after it', async () => {
    const { db, journal, counters } = await make()
    counters.count('pull', A, 'app', D0)
    counters.settle()
    // What a write that failed in the thread pool leaves (its line cut back off the file).
    journal.failure = new Error('ENOSPC')
    counters.count('pull', A, 'app', D0 + 1)
    expect(counters.settle()).toBe(false)
    await journal.written()
    expect(counters.settle()).toBe(false)
    counters.persist()
    expect(counter(db, A, 'app')?.pull_count).toBe(2)
    expect(journal.failure).toBeUndefined()
    counters.count('pull', A, 'app', D0 + 2)
    expect(counters.settle()).toBe(true)
  })
})
