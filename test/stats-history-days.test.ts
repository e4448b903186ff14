import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { createRootLogger } from '../src/logger.ts'
import { CounterStore } from '../src/stats/counter-store.ts'
import { ClientHasher } from '../src/stats/hll.ts'
import { HISTORY_SQL, History } from '../src/stats/history.ts'
import { RECENT_PULLS_SQL } from '../src/stats/trending-load.ts'
import { DAY_MS, dayOf, dayString, parseDay } from '../src/stats/days.ts'
import { TopPairs } from '../src/stats/top-pairs.ts'
import { daySums } from './_stats.ts'
import { removeDir, tempDir } from './_util.ts'

const log = createRootLogger('silent')
const DID = 'did:plc:historydaysaaaaaaaaaaaa'
/** Midnight UTC of a day far enough ahead that the real clock never reaches it in a test. */
const D0 = (dayOf(Date.now()) + 1000) * DAY_MS

type Parts = { db: Database; history: History; counters: CounterStore }

const dirs: string[] = []
const open: Database[] = []
const make = async (keepDays = 400): Promise<Parts> => {
  const dir = await tempDir()
  dirs.push(dir)
  const db = new Database(join(dir, 'hold.sqlite'))
  open.push(db)
  const history = new History(db, keepDays, log)
  const counters = new CounterStore(db, new TopPairs(db), log, {
    history,
    // A fixed key, so which clients share a register is the same in every run.
    clients: new ClientHasher(Buffer.alloc(32, 7)),
  })
  return { db, history, counters }
}

afterEach(async () => {
  for (const db of open.splice(0)) db.db.close()
  for (const dir of dirs.splice(0)) await removeDir(dir)
})

/** Each pair's own counts beside the sum of its days (pruned ones included). */
const sums = (db: Database) => daySums(db.db)

const dayRows = (db: Database, repository: string) =>
  db.db
    .prepare(
      `SELECT day, sum(pulls) AS pulls, sum(pushes) AS pushes FROM (
         SELECT day, pulls, pushes FROM stats_day WHERE did = ?1 AND repository = ?2
         UNION ALL
         SELECT open_day, open_pulls, open_pushes FROM stats_counter
         WHERE did = ?1 AND repository = ?2 AND (open_pulls <> 0 OR open_pushes <> 0))
       GROUP BY day ORDER BY day`,
    )
    .all(DID, repository) as { day: number; pulls: number; pushes: number }[]

describe('UTC days', () => {
  it('parse only real YYYY-MM-DD dates', () => {
    expect(parseDay('2026-11-30')).toBe(dayOf(Date.parse('2026-11-30T12:00Z')))
    expect(dayString(parseDay('2024-02-29')!)).toBe('2024-02-29')
    for (const bad of [
      '2026-02-30',
      '2025-02-29',
      '2026-13-01',
      '2026-1-01',
      '20261130',
      '2026-11-30T00:00:00Z',
      ' 2026-11-30',
      '',
    ]) {
      expect(parseDay(bad), bad).toBeUndefined()
    }
  })
})

describe('day rows of the counter store', () => {
  it('put a pull at 23:59:59.999 and one at 00:00:00.000 in their own days, within one delta', async () => {
    const { db, counters } = await make()
    counters.count('pull', DID, 'edge', D0 - 1, 'did:plc:client1')
    counters.count('pull', DID, 'edge', D0, 'did:plc:client2')
    counters.count('push', DID, 'edge', D0 + 1)
    counters.persist()
    expect(dayRows(db, 'edge')).toEqual([
      { day: dayOf(D0) - 1, pulls: 1, pushes: 0 },
      { day: dayOf(D0), pulls: 1, pushes: 1 },
    ])
    expect(sums(db)[0]).toMatchObject({ pull_count: 2, day_pulls: 2 })
  })

  it('put them in their days when a persist falls between them', async () => {
    const { db, counters } = await make()
    counters.count('pull', DID, 'edge', D0 - 1)
    counters.persist()
    counters.count('pull', DID, 'edge', D0)
    counters.count('pull', DID, 'edge', D0 + DAY_MS - 1)
    counters.persist()
    expect(dayRows(db, 'edge')).toEqual([
      { day: dayOf(D0) - 1, pulls: 1, pushes: 0 },
      { day: dayOf(D0), pulls: 2, pushes: 0 },
    ])
  })

  it('keep a count taken when the clock went back in the day it names', async () => {
    const { db, counters } = await make()
    counters.count('pull', DID, 'skew', D0 + 10)
    counters.count('pull', DID, 'skew', D0 - 10)
    counters.count('pull', DID, 'skew', D0 + 20)
    counters.count('pull', DID, 'skew', D0 - DAY_MS - 5)
    counters.count('pull', DID, 'skew', D0 + 30)
    counters.persist()
    expect(dayRows(db, 'skew')).toEqual([
      { day: dayOf(D0) - 2, pulls: 1, pushes: 0 },
      { day: dayOf(D0) - 1, pulls: 1, pushes: 0 },
      { day: dayOf(D0), pulls: 3, pushes: 0 },
    ])
  })

  it('add up to the totals after random counts over many days and pairs, with failed persists put back', async () => {
    const { db, counters, history } = await make()
    let seed = 7
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed % n
    }
    db.db.exec(
      `CREATE TABLE fk_parent (id INTEGER PRIMARY KEY);
       CREATE TABLE fk_child (pid INTEGER REFERENCES fk_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
    )
    let now = D0 - 3 * DAY_MS
    const expected = new Map<string, { pulls: number; pushes: number }>()
    const clientsOf = new Map<string, Set<string>>()
    for (let i = 0; i < 20_000; i++) {
      now += rand(60_000)
      const repo = `r${rand(7)}`
      const kind = rand(4) ? 'pull' : 'push'
      const key = `${repo} ${dayOf(now)}`
      const client = `ip:${rand(50)}`
      const seen = clientsOf.get(key) ?? new Set<string>()
      seen.add(client)
      clientsOf.set(key, seen)
      const e = expected.get(key) ?? { pulls: 0, pushes: 0 }
      if (kind === 'pull') e.pulls++
      else e.pushes++
      expected.set(key, e)
      counters.count(kind, DID, repo, now, client)
      const fault = rand(1000)
      if (fault === 0) {
        // A persist that fails at its day totals, after the counters (and any folded open
        // day) were written: the transaction rolls back and the deltas go back to be
        // persisted again.
        db.db.exec(
          `CREATE TRIGGER fail BEFORE INSERT ON stats_day_total
           BEGIN SELECT RAISE(ABORT, 'refused'); END`,
        )
        expect(() => counters.persist()).toThrow(/refused/)
        db.db.exec('DROP TRIGGER fail')
      } else if (fault === 1) {
        // A persist whose every statement worked and whose COMMIT fails (a deferred foreign
        // key, as a full disk would at the commit): nothing of it may show anywhere.
        db.db.exec(
          `CREATE TRIGGER fail AFTER UPDATE ON stats_counter
           BEGIN INSERT INTO fk_child VALUES (1); END;
           CREATE TRIGGER fail2 AFTER INSERT ON stats_counter
           BEGIN INSERT INTO fk_child VALUES (1); END`,
        )
        expect(() => counters.persist()).toThrow(/FOREIGN KEY/)
        db.db.exec('DROP TRIGGER fail; DROP TRIGGER fail2')
      } else if (rand(100) === 0) counters.persist()
    }
    counters.persist()
    const rows = sums(db)
    expect(rows).toHaveLength(7)
    let pulls = 0
    for (const r of rows) {
      expect(r.day_pulls).toBe(r.pull_count)
      expect(r.day_pushes).toBe(r.push_count)
      pulls += r.pull_count
    }
    expect(pulls).toBe(counters.totals.pulls)
    const got = new Map<string, { pulls: number; pushes: number }>()
    for (let r = 0; r < 7; r++) {
      for (const row of dayRows(db, `r${r}`)) {
        got.set(`r${r} ${row.day}`, { pulls: row.pulls, pushes: row.pushes })
      }
    }
    expect(got).toEqual(expected)
    // Unique clients survive the failed persists too: at most 50 a day, counted nearly exactly.
    for (let r = 0; r < 7; r++) {
      const first = dayOf(D0) - 3
      for (const day of history.range(DID, `r${r}`, first, first + 10)) {
        const want = clientsOf.get(`r${r} ${parseDay(day.day)}`)?.size ?? 0
        expect(Math.abs((day.uniqueClients ?? 0) - want)).toBeLessThanOrEqual(1)
      }
    }
    // The windows in memory hold what committed, not what a rolled back persist wrote.
    const ranked = history.trending(30, 100, undefined, now)
    expect(ranked.reduce((n, r) => n + r.pulls, 0)).toBe(pulls)
    for (const r of ranked) expect(r.pulls).toBe(r.pullCount)
  })

  it('keep a client whose persist failed at its commit', async () => {
    const { db, counters, history } = await make()
    counters.count('pull', DID, 'c', D0, 'did:plc:first')
    counters.persist()
    counters.count('pull', DID, 'c', D0 + 1, 'did:plc:second')
    db.db.exec(
      `CREATE TABLE fk_parent (id INTEGER PRIMARY KEY);
       CREATE TABLE fk_child (pid INTEGER REFERENCES fk_parent (id) DEFERRABLE INITIALLY DEFERRED);
       CREATE TRIGGER fail AFTER UPDATE ON stats_counter
       BEGIN INSERT INTO fk_child VALUES (1); END`,
    )
    expect(() => counters.persist()).toThrow(/FOREIGN KEY/)
    db.db.exec('DROP TRIGGER fail')
    counters.persist()
    expect(history.range(DID, 'c', dayOf(D0), dayOf(D0))).toEqual([
      { day: dayString(dayOf(D0)), pulls: 2, pushes: 0, uniqueClients: 2 },
    ])
  })

  it('fold days past HOLD_STATS_HISTORY_DAYS into one sum per pair, keeping the totals', async () => {
    const { db, counters, history } = await make(3)
    for (let d = 0; d < 6; d++) {
      counters.count('pull', DID, 'old', D0 + d * DAY_MS)
      counters.count('pull', DID, 'old', D0 + d * DAY_MS + 1)
      counters.count('push', DID, 'old', D0 + d * DAY_MS + 2)
    }
    counters.persist()
    expect(history.prune(D0 + 5 * DAY_MS)).toBe(3)
    expect(dayRows(db, 'old').map((r) => r.day)).toEqual([
      dayOf(D0) + 3,
      dayOf(D0) + 4,
      dayOf(D0) + 5,
    ])
    expect(sums(db)[0]).toMatchObject({
      pull_count: 12,
      day_pulls: 12,
      push_count: 6,
      day_pushes: 6,
    })
    expect(history.prune(D0 + 5 * DAY_MS)).toBe(0)
  })

  it('find old open days among the pairs with counts alone, every minute', async () => {
    const { db, counters, history } = await make(3)
    // 40 pairs counted on one day, then pruned: their open days are closed (no counts) but
    // keep their day, as nearly every pair of a large hold is between its pulls.
    for (let i = 0; i < 40; i++) counters.count('pull', DID, `idle-${i}`, D0)
    counters.persist()
    expect(history.prune(D0 + 10 * DAY_MS)).toBe(40)
    counters.count('pull', DID, 'stale', D0 + DAY_MS)
    counters.count('pull', DID, 'recent', D0 + 9 * DAY_MS)
    counters.persist()
    // The upkeep's and the start's reads of open days go through the index of open days with
    // counts, which holds 2 rows here, not the 42 counter rows.
    const plan = (sql: string) =>
      db.db
        .prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .all(0)
        .map((r) => r.detail as string)
        .join(' | ')
    expect(plan(HISTORY_SQL.staleOpen)).toMatch(
      /^SEARCH stats_counter USING INDEX stats_counter_open_idx \(open_day<\?\)$/,
    )
    expect(plan(RECENT_PULLS_SQL)).toMatch(
      /SEARCH stats_counter USING INDEX stats_counter_open_idx \(open_day>\?\)/,
    )
    const indexed = db.db
      .prepare(
        `SELECT count(*) AS n FROM stats_counter INDEXED BY stats_counter_open_idx
         WHERE open_day >= 0 AND (open_pulls <> 0 OR open_pushes <> 0)`,
      )
      .get() as { n: number }
    expect(indexed.n).toBe(2)
    // And the upkeep still folds the stale one, and only it.
    expect(history.prune(D0 + 10 * DAY_MS)).toBe(1)
    expect(dayRows(db, 'stale')).toEqual([])
    expect(dayRows(db, 'recent')).toEqual([
      { day: dayOf(D0) + 9, pulls: 1, pushes: 0 },
    ])
    const all = sums(db)
    expect(all).toHaveLength(42)
    expect(all.every((r) => r.pull_count === r.day_pulls)).toBe(true)
  })
})

describe('trending windows (in memory, from committed day rows)', () => {
  it('hold a pull in every window that reaches its day, and move on at midnight', async () => {
    const { counters, history } = await make()
    const today = D0 + 40 * DAY_MS
    // a: 5 pulls today; b: 3 pulls 2 days ago and 1 today; c: 10 pulls 10 days ago.
    for (let i = 0; i < 5; i++) counters.count('pull', DID, 'a', today + i)
    for (let i = 0; i < 3; i++)
      counters.count('pull', DID, 'b', today - 2 * DAY_MS + i)
    counters.count('pull', DID, 'b', today + 9)
    for (let i = 0; i < 10; i++)
      counters.count('pull', DID, 'c', today - 10 * DAY_MS + i)
    counters.count('push', DID, 'd', today)
    counters.persist()
    let at = today
    const top = (days: number) =>
      history
        .trending(days, 10, undefined, at)
        .map((r) => [r.repository, r.pulls])
    expect(top(1)).toEqual([
      ['a', 5],
      ['b', 1],
    ])
    expect(top(3)).toEqual([
      ['a', 5],
      ['b', 4],
    ])
    expect(top(11)).toEqual([
      ['c', 10],
      ['a', 5],
      ['b', 4],
    ])
    expect(top(30)).toEqual([
      ['c', 10],
      ['a', 5],
      ['b', 4],
    ])
    at = today + DAY_MS
    expect(top(1)).toEqual([])
    expect(top(3)).toEqual([
      ['a', 5],
      ['b', 1],
    ])
    expect(top(4)).toEqual([
      ['a', 5],
      ['b', 4],
    ])
    expect(top(11)).toEqual([
      ['a', 5],
      ['b', 4],
    ])
    expect(top(12)).toEqual([
      ['c', 10],
      ['a', 5],
      ['b', 4],
    ])
    at = today + 20 * DAY_MS
    expect(top(30)).toEqual([
      ['a', 5],
      ['b', 4],
    ])
    at = today + 31 * DAY_MS
    expect(top(30)).toEqual([])
  })

  it('page by cursor without skipping or repeating pairs of equal pulls', async () => {
    const { counters, history } = await make()
    const today = D0 + 40 * DAY_MS
    for (let r = 0; r < 25; r++) {
      for (let i = 0; i < (r % 4) + 1; i++)
        counters.count('pull', DID, `p${r}`, today + i)
    }
    counters.persist()
    const seen: string[] = []
    let after
    for (;;) {
      const page = history.trending(7, 6, after, today)
      seen.push(...page.map((r) => r.repository))
      if (page.length < 6) break
      const last = page.at(-1)!
      after = { pulls: last.pulls, did: last.did, repository: last.repository }
    }
    expect(seen).toHaveLength(25)
    expect(new Set(seen).size).toBe(25)
  })
})

describe('dayString', () => {
  it('agrees with Date for every day from 1900 to 2400', () => {
    for (
      let day = dayOf(Date.UTC(1900, 0, 1));
      day <= dayOf(Date.UTC(2400, 0, 1));
      day++
    ) {
      const want = new Date(day * DAY_MS).toISOString().slice(0, 10)
      if (dayString(day) !== want) expect(dayString(day)).toBe(want)
    }
  })
})
