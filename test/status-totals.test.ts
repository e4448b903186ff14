import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { TOTALS_SQL } from '../src/stats/queries.ts'
import { TOP_KEPT } from '../src/stats/top-pairs.ts'
import { GET_BLOB, sha256Hex } from './_access.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  tempDir,
  xrpc,
  type TestHold,
} from './_util.ts'
import { schemaBefore } from './_schema.ts'

/** Totals and the most pulled pairs computed the slow way, from every row of the tables. */
const recount = (db: DatabaseSync, limit = 10) => ({
  totals: db
    .prepare(
      `SELECT count(*) AS pairs,
              coalesce(sum(c.pull_count + coalesce(b.pull_count, 0)), 0) AS pulls,
              coalesce(sum(c.push_count + coalesce(b.push_count, 0)), 0) AS pushes
       FROM stats_counter c
       LEFT JOIN stats_baseline b ON b.did = c.did AND b.repository = c.repository`,
    )
    .get(),
  top: db
    .prepare(
      `SELECT c.did, c.repository FROM stats_counter c
       LEFT JOIN stats_baseline b ON b.did = c.did AND b.repository = c.repository
       ORDER BY c.pull_count + coalesce(b.pull_count, 0) DESC,
                c.push_count + coalesce(b.push_count, 0) DESC, c.did, c.repository
       LIMIT ?`,
    )
    .all(limit)
    .map((r) => `${r.did as string} ${r.repository as string}`),
})

const plan = (db: DatabaseSync, sql: string, ...params: number[]) =>
  db
    .prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .all(...params)
    .map((r) => r.detail as string)

const ALICE = 'did:plc:statustotalsalice000000000'
const BOB = 'did:plc:statustotalsbob00000000000'

describe('the status page’s totals and top pairs', () => {
  const dirs: string[] = []
  afterAll(async () => {
    for (const d of dirs) await removeDir(d)
  })

  it('totals are one row the database keeps, not a scan of the counter table', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const database = new Database(join(dir, 'hold.sqlite'))
    try {
      expect(plan(database.db, TOTALS_SQL)).toEqual([
        expect.stringMatching(/^SEARCH stats_total /),
      ])
    } finally {
      await database.close()
    }
  })

  it('the most pulled pairs are read from the table once, then kept right as counts grow', async () => {
    const h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
    dirs.push(h.dataDir)
    try {
      const { stats, db } = h.hold.ctx
      const pairs = Array.from({ length: TOP_KEPT + 60 }, (_, i) => ({
        did: `did:plc:topkept${String(i % 7).padStart(17, '0')}`,
        repo: `r${i}`,
      }))
      let seed = 11
      const random = (n: number) => {
        // xorshift32: a fixed sequence, spread over every residue
        seed ^= seed << 13
        seed ^= seed >>> 17
        seed ^= seed << 5
        return (seed >>> 0) % n
      }
      const countSome = (n: number) => {
        for (let i = 0; i < n; i++) {
          const p = pairs[random(pairs.length)]
          if (random(5) === 0) stats.countPush(p.did, p.repo)
          else stats.countPull(p.did, p.repo)
        }
      }
      const names = (views: { did: string; repository: string }[]) =>
        views.map((s) => `${s.did} ${s.repository}`)
      // First read while the hold has fewer pairs than are kept: the set fills as pairs arrive.
      countSome(20)
      expect(names(stats.top(10))).toEqual(recount(db.db).top)
      expect(stats.topReads).toBe(1)
      // Rounds of counts, each persisted before the next look: pairs climb into the kept set,
      // push others out, tie with them.
      for (let round = 0; round < 60; round++) {
        countSome(1 + random(60))
        expect(names(stats.top(10)), `round ${round}`).toEqual(
          recount(db.db).top,
        )
        expect(names(stats.top(TOP_KEPT))).toEqual(recount(db.db, TOP_KEPT).top)
      }
      expect(stats.topReads).toBe(1)

      stats.importBaselines([
        {
          did: pairs[0].did,
          repository: pairs[0].repo,
          pullCount: 1000,
          pushCount: 0,
        },
      ])
      expect(names(stats.top(10))).toEqual(recount(db.db).top)
      expect(stats.topReads).toBe(2)
      await stats.reset(pairs[0].did, pairs[0].repo)
      expect(names(stats.top(10))).toEqual(recount(db.db).top)
      expect(stats.topReads).toBe(3)
      // More than are kept is a sort of the table, and right too.
      expect(names(stats.top(TOP_KEPT + 20))).toEqual(
        recount(db.db, TOP_KEPT + 20).top,
      )
    } finally {
      await h.stop()
    }
  })

  it('agree with a full recount through counts, pushes, imports, resets and a restart', async () => {
    const env = {
      HOLD_STATS_FLUSH_MS: '3600000',
      HOLD_NEW_PAIRS_PER_HOUR: '0',
    }
    let h: TestHold = await startHold({ env })
    dirs.push(h.dataDir)
    const check = () => {
      const { stats, db } = h.hold.ctx
      const overall = stats.overall()
      const top = stats.top(10).map((s) => `${s.did} ${s.repository}`)
      expect({ totals: { ...overall }, top }).toEqual(recount(db.db))
    }
    const blob = randomBytes(64)
    const cid = `sha256:${sha256Hex(blob)}`
    expect((await pushBlob(h.url, blob, { did: TEST_OWNER })).status).toBe(201)
    const pull = async (did: string, repo: string, n: number) => {
      for (let i = 0; i < n; i++) {
        expect((await xrpc(h.url, GET_BLOB, { did, cid, repo })).status).toBe(
          200,
        )
      }
    }
    check()
    for (let r = 0; r < 14; r++) await pull(ALICE, `repo-${r}`, (r * 7) % 5)
    await pull(BOB, 'app', 3)
    expect(
      (
        await pushBlob(h.url, randomBytes(16), {
          did: TEST_OWNER,
          repo: 'pushed',
        })
      ).status,
    ).toBe(201)
    check()

    const { stats } = h.hold.ctx
    // New pairs, pairs with counts, then the same pairs again with lower numbers.
    stats.importBaselines([
      { did: ALICE, repository: 'repo-3', pullCount: 40, pushCount: 2 },
      { did: BOB, repository: 'imported', pullCount: 25, pushCount: 0 },
      { did: BOB, repository: 'app', pullCount: 9, pushCount: 4 },
    ])
    check()
    stats.importBaselines([
      { did: ALICE, repository: 'repo-3', pullCount: 1, pushCount: 0 },
      { did: BOB, repository: 'imported', pullCount: 30, pushCount: 1 },
    ])
    await pull(BOB, 'imported', 2)
    check()

    await stats.reset(BOB, 'app')
    check()
    await pull(BOB, 'app', 1)
    await stats.reset(ALICE)
    check()

    const { dataDir, port } = h
    await h.stop()
    h = await startHold({ env, dataDir, port })
    check()
    expect(h.hold.ctx.stats.overall().pairs).toBeGreaterThan(0)
    await h.stop()
  })

  it('are right from the first start of a data dir that has counters and baselines already', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, 'hold.sqlite')
    const old = schemaBefore(path, 'stats_total')
    const at = '2025-01-01T00:00:00.000Z'
    const counter = old.prepare(
      `INSERT INTO stats_counter (did, repository, pull_count, push_count, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    )
    const baseline = old.prepare(
      `INSERT INTO stats_baseline (did, repository, pull_count, push_count, imported_at)
       VALUES (?, ?, ?, ?, ?)`,
    )
    for (let i = 0; i < 30; i++) {
      counter.run(ALICE, `r${i}`, (i * 13) % 17, i % 3, at, at)
      if (i % 4 === 0) baseline.run(ALICE, `r${i}`, (i * 5) % 23, 1, at)
    }
    const expected = recount(old)
    old.close()

    const database = new Database(path)
    try {
      expect(recount(database.db)).toEqual(expected)
      expect({ ...(database.db.prepare(TOTALS_SQL).get() as object) }).toEqual(
        expected.totals,
      )
      // Each counter row carries its baseline's counts (0 without one).
      const mirrored = database.db
        .prepare(
          `SELECT count(*) AS n FROM stats_counter c
           LEFT JOIN stats_baseline b ON b.did = c.did AND b.repository = c.repository
           WHERE c.baseline_pull IS NOT coalesce(b.pull_count, 0)
              OR c.baseline_push IS NOT coalesce(b.push_count, 0)`,
        )
        .get()
      expect(mirrored).toEqual({ n: 0 })
    } finally {
      await database.close()
    }
  })
})
