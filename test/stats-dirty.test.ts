import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { ids } from '../src/lexicons.ts'
import type { RepoWriter } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { schemaBefore } from './_schema.ts'
import { removeDir, startHold, tempDir, type TestHold } from './_util.ts'

type Dirty = { did: string; repository: string; version: number }

const dirtyRows = (db: Database): Dirty[] =>
  (
    db.db
      .prepare(
        'SELECT did, repository, version FROM stats_dirty ORDER BY did, repository',
      )
      .all() as Dirty[]
  ).map((r) => ({ ...r }))

describe('the pairs whose records are behind (stats_dirty)', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await removeDir(dir)
  })

  const open = async (): Promise<{ db: Database; path: string }> => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, 'hold.sqlite')
    return { db: new Database(path), path }
  }

  it('come from record_version at the first start after an upgrade, and the column goes', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, 'hold.sqlite')
    const old = schemaBefore(path, 'stats_dirty')
    const put = old.prepare(
      `INSERT INTO stats_counter (did, repository, pull_count, created_at, updated_at,
         version, record_version) VALUES (?, ?, 1, 'x', 'x', ?, ?)`,
    )
    put.run('did:plc:a', 'flushed', 4, 4)
    put.run('did:plc:a', 'behind', 7, 5)
    put.run('did:plc:b', 'never', 1, 0)
    put.run('did:plc:b', 'reset', 3, 0)
    old.close()

    const db = new Database(path)
    try {
      expect(dirtyRows(db)).toEqual([
        { did: 'did:plc:a', repository: 'behind', version: 7 },
        { did: 'did:plc:b', repository: 'never', version: 1 },
        { did: 'did:plc:b', repository: 'reset', version: 3 },
      ])
      const columns = db.db
        .prepare("SELECT name FROM pragma_table_info('stats_counter')")
        .all() as { name: string }[]
      expect(columns.map((c) => c.name)).not.toContain('record_version')
      expect(columns.map((c) => c.name)).toContain('version')
      const indexes = db.db
        .prepare(
          "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'stats_counter'",
        )
        .all() as { name: string }[]
      expect(indexes.map((i) => i.name)).not.toContain(
        'stats_counter_dirty_idx',
      )
    } finally {
      db.db.close()
    }
  })

  it('follow every write of a counter: a new pair, a new version, a deleted pair; nothing else', async () => {
    const { db } = await open()
    try {
      const insert = db.db.prepare(
        `INSERT INTO stats_counter (did, repository, created_at, updated_at)
         VALUES (?, ?, 'x', 'x')`,
      )
      insert.run('did:plc:a', 'one')
      insert.run('did:plc:a', 'two')
      expect(dirtyRows(db)).toEqual([
        { did: 'did:plc:a', repository: 'one', version: 1 },
        { did: 'did:plc:a', repository: 'two', version: 1 },
      ])
      db.db.exec('DELETE FROM stats_dirty')
      // Columns other than the version (a day's counts moving out) leave the record as it is.
      db.db.exec(
        "UPDATE stats_counter SET open_pulls = 5 WHERE repository = 'one'",
      )
      expect(dirtyRows(db)).toEqual([])
      db.db.exec(
        "UPDATE stats_counter SET version = version + 1, pull_count = 3 WHERE repository = 'one'",
      )
      expect(dirtyRows(db)).toEqual([
        { did: 'did:plc:a', repository: 'one', version: 2 },
      ])
      db.db.exec(
        "UPDATE stats_counter SET version = version + 1 WHERE repository = 'one'",
      )
      expect(dirtyRows(db)).toEqual([
        { did: 'did:plc:a', repository: 'one', version: 3 },
      ])
      db.db.exec("DELETE FROM stats_counter WHERE repository = 'one'")
      expect(dirtyRows(db)).toEqual([])
    } finally {
      db.db.close()
    }
  })
})

describe('a flush and a count that lands while its commit is made', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '86400000' } })
  })
  afterAll(() => h.stop())

  it('leaves the pair behind, and the next flush writes the later count', async () => {
    const { stats, reader, writer, db } = h.hold.ctx
    const did = 'did:plc:racingaaaaaaaaaaaaaaaaaa'
    stats.countPull(did, 'app')
    stats.persist()
    expect(stats.dirtyCounters()).toBe(1)

    // A pull counted and persisted after the flush read the rows, before its commit.
    const original = writer.putRecordsFrom.bind(writer)
    const patched: RepoWriter['putRecordsFrom'] = (build, inTxn) =>
      original(() => {
        const puts = build()
        stats.countPull(did, 'app')
        stats.persist()
        return puts
      }, inTxn)
    writer.putRecordsFrom = patched
    try {
      expect((await stats.flush()).records).toBe(1)
    } finally {
      writer.putRecordsFrom = original
    }
    const key = statsRecordKey(did, 'app')
    expect(reader.get(ids.HoldStats, key)?.value).toMatchObject({
      pullCount: 1,
    })
    expect(stats.get(did, 'app').pullCount).toBe(2)
    expect(stats.dirtyCounters()).toBe(1)
    expect(dirtyRows(db)).toEqual([{ did, repository: 'app', version: 2 }])

    expect((await stats.flush()).records).toBe(1)
    expect(reader.get(ids.HoldStats, key)?.value).toMatchObject({
      pullCount: 2,
    })
    expect(stats.dirtyCounters()).toBe(0)
    expect((await stats.flush()).records).toBe(0)
  })
})
