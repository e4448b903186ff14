import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import { Database, MIGRATIONS } from '../src/db.ts'
import { TOP_SQL, TOTALS_SQL } from '../src/stats/service.ts'
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

/** Totals and the most pulled pairs computed the slow way, from every row of the tables. */
const recount = (db: DatabaseSync) => ({
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
       LIMIT 10`,
    )
    .all()
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

  it('are read from maintained totals and an index, never by scanning the counter table', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const database = new Database(join(dir, 'hold.sqlite'))
    try {
      const totals = plan(database.db, TOTALS_SQL)
      expect(totals).toEqual([expect.stringMatching(/^SEARCH stats_total /)])
      const top = plan(database.db, TOP_SQL, 10)
      expect(top[0]).toBe('SCAN c USING INDEX stats_counter_top_idx')
      expect(top.join('\n')).not.toMatch(/TEMP B-TREE|SCAN b/)
    } finally {
      await database.close()
    }
  })

  it('agree with a full recount through counts, pushes, imports, resets and a restart', async () => {
    const env = {
      HOLD_STATS_FLUSH_MS: '3600000',
      HOLD_STATS_NEW_PAIRS_PER_HOUR: '0',
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
    const before = MIGRATIONS.findIndex((m) => m.includes('stats_total'))
    expect(before).toBeGreaterThan(0)
    const old = new DatabaseSync(path)
    for (const sql of MIGRATIONS.slice(0, before)) old.exec(sql)
    old.exec(`PRAGMA user_version = ${before}`)
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
      const top = database.db
        .prepare(TOP_SQL)
        .all(10)
        .map((r) => `${r.did as string} ${r.repository as string}`)
      expect(top).toEqual(expected.top)
    } finally {
      await database.close()
    }
  })
})
