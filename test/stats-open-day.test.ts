import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { createRootLogger } from '../src/logger.ts'
import { CounterStore } from '../src/stats/counter-store.ts'
import { ClientHasher, Sketch, hash32 } from '../src/stats/hll.ts'
import type { ExportPosition, ExportRow } from '../src/stats/day-export.ts'
import { History } from '../src/stats/history.ts'
import { DAY_MS, dayOf, dayString } from '../src/stats/days.ts'
import { TopPairs } from '../src/stats/top-pairs.ts'
import { removeDir, tempDir } from './_util.ts'
import { schemaBefore } from './_schema.ts'

const log = createRootLogger('silent')
const DID = 'did:plc:opendayaaaaaaaaaaaaaaaaa'
/** Midnight UTC of a day far enough ahead that the real clock never reaches it in a test. */
const D0 = (dayOf(Date.now()) + 1000) * DAY_MS
const day = (n: number) => dayOf(D0) + n

const dirs: string[] = []
const opened: Database[] = []
afterEach(async () => {
  for (const db of opened.splice(0)) db.db.close()
  for (const dir of dirs.splice(0)) await removeDir(dir)
})

const openParts = (path: string) => {
  const db = new Database(path)
  opened.push(db)
  const history = new History(db, 400, log)
  const counters = new CounterStore(db, new TopPairs(db), log, {
    history,
    clients: new ClientHasher(Buffer.alloc(32, 7)),
  })
  return { db, history, counters }
}

const make = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return {
    path: join(dir, 'hold.sqlite'),
    ...openParts(join(dir, 'hold.sqlite')),
  }
}

const row = (db: Database, repository: string) =>
  db.db
    .prepare(
      'SELECT open_day, open_pulls, open_pushes FROM stats_counter WHERE did = ? AND repository = ?',
    )
    .get(DID, repository) as
    { open_day: number; open_pulls: number; open_pushes: number } | undefined

const closedDays = (db: Database, repository: string) =>
  db.db
    .prepare(
      'SELECT day, pulls, pushes FROM stats_day WHERE did = ? AND repository = ? ORDER BY day',
    )
    .all(DID, repository)
    .map((r) => ({ ...r }))

/** Every export row from `since`, page by page, with the position each page ends at. */
const exportAll = (history: History, since: number, limit: number) => {
  const rows: ExportRow[] = []
  let after: ExportPosition | undefined
  let pages = 0
  for (;;) {
    const page = history.exportRows(since, limit, after)
    pages++
    expect(page.rows.length).toBeLessThanOrEqual(limit)
    rows.push(...page.rows)
    if (!page.more) return { rows, pages }
    const last = page.rows.at(-1)!
    after = {
      did: last.did,
      repository: last.repository,
      day: dayOf(Date.parse(`${last.day}T00:00:00Z`)),
    }
  }
}

describe("a pair's open day (its latest, in its counter row)", () => {
  it('stays in the counter row until a later day is counted, then becomes a day row', async () => {
    const { db, counters, history } = await make()
    counters.count('pull', DID, 'a', D0)
    counters.count('push', DID, 'a', D0 + 1)
    counters.persist()
    counters.count('pull', DID, 'a', D0 + 2)
    counters.persist()
    expect(row(db, 'a')).toEqual({
      open_day: day(0),
      open_pulls: 2,
      open_pushes: 1,
    })
    expect(closedDays(db, 'a')).toEqual([])

    counters.count('pull', DID, 'a', D0 + DAY_MS)
    counters.persist()
    expect(row(db, 'a')).toEqual({
      open_day: day(1),
      open_pulls: 1,
      open_pushes: 0,
    })
    expect(closedDays(db, 'a')).toEqual([{ day: day(0), pulls: 2, pushes: 1 }])
    expect(history.range(DID, 'a', day(0), day(2))).toEqual([
      { day: dayString(day(0)), pulls: 2, pushes: 1 },
      { day: dayString(day(1)), pulls: 1, pushes: 0 },
      { day: dayString(day(2)), pulls: 0, pushes: 0 },
    ])
  })

  it('takes a late count for an earlier day as a day row, and reads add both parts', async () => {
    const { db, counters, history } = await make()
    counters.count('pull', DID, 'a', D0 + 2 * DAY_MS)
    counters.persist()
    // A frontend's batch from the day before, applied after today's counts.
    counters.count('pull', DID, 'a', D0 + DAY_MS)
    counters.count('pull', DID, 'b', D0 + DAY_MS)
    counters.persist()
    expect(row(db, 'a')?.open_day).toBe(day(2))
    expect(closedDays(db, 'a')).toEqual([{ day: day(1), pulls: 1, pushes: 0 }])
    // b was never counted on the latest day: its late count is a day row too.
    expect(closedDays(db, 'b')).toEqual([{ day: day(1), pulls: 1, pushes: 0 }])
    expect(history.range(DID, 'a', day(1), day(2))).toEqual([
      { day: dayString(day(1)), pulls: 1, pushes: 0 },
      { day: dayString(day(2)), pulls: 1, pushes: 0 },
    ])
  })

  it('is right for a restarted process, which knows no open days, and after the clock went back', async () => {
    const { path, db, counters } = await make()
    counters.count('pull', DID, 'a', D0 + 3 * DAY_MS)
    counters.persist()
    db.db.close()
    opened.splice(opened.indexOf(db), 1)
    const again = openParts(path)
    // The new process takes day 1 as its latest: day 3's open counts are folded first.
    again.counters.count('pull', DID, 'a', D0 + DAY_MS)
    again.counters.persist()
    again.counters.count('pull', DID, 'a', D0 + 3 * DAY_MS + 5)
    again.counters.persist()
    expect(again.history.range(DID, 'a', day(0), day(3))).toEqual([
      { day: dayString(day(0)), pulls: 0, pushes: 0 },
      { day: dayString(day(1)), pulls: 1, pushes: 0 },
      { day: dayString(day(2)), pulls: 0, pushes: 0 },
      { day: dayString(day(3)), pulls: 2, pushes: 0 },
    ])
    const total = again.db.db
      .prepare(
        `SELECT (SELECT sum(pulls) FROM stats_day WHERE did = ?1)
           + (SELECT sum(open_pulls) FROM stats_counter WHERE did = ?1) AS days,
           (SELECT pull_count FROM stats_counter WHERE did = ?1) AS total`,
      )
      .get(DID)
    expect({ ...total }).toEqual({ days: 3, total: 3 })
  })

  it('is in the trending windows after a restart', async () => {
    const { path, db, counters } = await make()
    for (let i = 0; i < 4; i++) counters.count('pull', DID, 'a', Date.now())
    counters.count('pull', DID, 'b', Date.now() - 2 * DAY_MS)
    counters.persist()
    db.db.close()
    opened.splice(opened.indexOf(db), 1)
    const again = openParts(path)
    await again.history.ready
    expect(
      again.history
        .trending(7, 10, undefined)
        .map((r) => [r.repository, r.pulls]),
    ).toEqual([
      ['a', 4],
      ['b', 1],
    ])
  })

  it('are read at start a batch at a time, exact with the pulls and resets that commit meanwhile', async () => {
    const { path, db, counters } = await make()
    const now = Date.now()
    for (let i = 0; i < 25_000; i++) counters.count('pull', DID, `p${i}`, now)
    counters.count('pull', DID, 'p7', now - DAY_MS)
    counters.persist()
    db.db.close()
    opened.splice(opened.indexOf(db), 1)
    const again = openParts(path)
    let loaded = false
    void again.history.ready.then(() => (loaded = true))
    // Committed while the windows are being read: p1's pulls are not in the snapshot, and p2
    // is reset (its days are gone), so neither may come out wrong.
    for (let i = 0; i < 3; i++) again.counters.count('pull', DID, 'p1', now)
    again.counters.persist()
    again.db.transaction(() => {
      again.history.forget(DID, 'p2')
      again.db.db
        .prepare('DELETE FROM stats_counter WHERE did = ? AND repository = ?')
        .run(DID, 'p2')
    })
    expect(loaded).toBe(false)
    await again.history.ready
    const ranked = new Map(
      again.history
        .trending(7, 30_000, undefined)
        .map((r) => [r.repository, r.pulls]),
    )
    expect(ranked.get('p1')).toBe(4)
    expect(ranked.get('p7')).toBe(2)
    expect(ranked.has('p2')).toBe(false)
    expect(ranked.get('p24999')).toBe(1)
    expect(ranked.size).toBe(24_999)
  })

  it('goes with a reset, and leaves the day totals equal to what the other pairs have', async () => {
    const { db, counters, history } = await make()
    for (const repository of ['a', 'b']) {
      counters.count('pull', DID, repository, D0)
      counters.count('pull', DID, repository, D0 + DAY_MS)
      counters.count('push', DID, repository, D0 + DAY_MS + 1)
    }
    counters.persist()
    db.transaction(() => {
      history.forget(DID, 'a')
      db.db
        .prepare('DELETE FROM stats_counter WHERE did = ? AND repository = ?')
        .run(DID, 'a')
    })
    expect(history.range(DID, 'a', day(0), day(1))).toEqual([
      { day: dayString(day(0)), pulls: 0, pushes: 0 },
      { day: dayString(day(1)), pulls: 0, pushes: 0 },
    ])
    expect(history.dailyTotals(day(0), day(1))).toEqual(
      history.range(DID, 'b', day(0), day(1)),
    )
  })

  it('is pruned with the days past HOLD_STATS_HISTORY_DAYS when its pair was not counted since', async () => {
    const { db, counters, history } = await make()
    counters.count('pull', DID, 'old', D0)
    counters.count('pull', DID, 'new', D0 + 500 * DAY_MS)
    counters.persist()
    expect(row(db, 'old')?.open_pulls).toBe(1)
    expect(history.prune(D0 + 500 * DAY_MS)).toBe(1)
    expect(row(db, 'old')).toMatchObject({ open_pulls: 0 })
    const pruned = db.db
      .prepare('SELECT did, repository, pulls FROM stats_day_pruned')
      .all()
      .map((r) => ({ ...r }))
    expect(pruned).toEqual([{ did: DID, repository: 'old', pulls: 1 }])
    expect(history.range(DID, 'new', day(500), day(500))[0].pulls).toBe(1)
  })
})

describe('the export of day rows', () => {
  it('gives every day of every pair once, whatever the page size, open days included', async () => {
    const { counters, history } = await make()
    const expected = new Map<string, number>()
    // Pairs whose last day is open, with closed days before it, some sharing a day with a
    // late count (a day row and an open part of the same day).
    for (let p = 0; p < 7; p++) {
      for (let d = 0; d <= p % 4; d++) {
        for (let k = 0; k <= (p + d) % 3; k++) {
          counters.count('pull', DID, `r${p}`, D0 + d * DAY_MS + k)
          const key = `r${p} ${dayString(day(d))}`
          expected.set(key, (expected.get(key) ?? 0) + 1)
        }
        counters.persist()
      }
    }
    // Pairs with an open day only, after every day row in the export's order.
    for (let p = 0; p < 6; p++) {
      counters.count('pull', DID, `s${p}`, D0 + 3 * DAY_MS)
      expected.set(`s${p} ${dayString(day(3))}`, 1)
    }
    counters.count('pull', DID, 'r3', D0 + 2 * DAY_MS + 50)
    counters.persist()
    expected.set(
      `r3 ${dayString(day(2))}`,
      expected.get(`r3 ${dayString(day(2))}`)! + 1,
    )
    const want = [...expected].sort(([a], [b]) => (a < b ? -1 : 1))
    for (const limit of [1, 2, 3, 5, 100]) {
      const { rows, pages } = exportAll(history, day(0), limit)
      expect(rows.map((r) => [`${r.repository} ${r.day}`, r.pulls])).toEqual(
        want,
      )
      expect(pages).toBeGreaterThanOrEqual(Math.ceil(want.length / limit))
    }
  })
})

describe('unique-client sketches after the upgrade', () => {
  it('moves sketches out of the day rows and answers their estimates', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, 'hold.sqlite')
    const old = schemaBefore(path, 'open_day')
    const sketch = new Sketch()
    for (let i = 0; i < 40; i++) sketch.add(hash32(`did:plc:client${i}`))
    const at = '2025-01-01T00:00:00.000Z'
    old
      .prepare(
        `INSERT INTO stats_counter (did, repository, pull_count, push_count, created_at, updated_at)
         VALUES (?, 'a', 40, 0, ?, ?)`,
      )
      .run(DID, at, at)
    old
      .prepare(
        `INSERT INTO stats_day (did, repository, day, pulls, pushes, clients)
         VALUES (?, 'a', ?, 40, 0, ?)`,
      )
      .run(DID, day(0), sketch.toBytes())
    old.close()

    const { history } = openParts(path)
    expect(history.range(DID, 'a', day(0), day(0))).toEqual([
      {
        day: dayString(day(0)),
        pulls: 40,
        pushes: 0,
        uniqueClients: sketch.estimate(),
      },
    ])
    expect(sketch.estimate()).toBe(40)
  })
})
