import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { HoldServer } from '../src/server.ts'
import { startLogged } from './_logged.ts'
import { removeDir, spawnHold, tempDir, xrpc } from './_util.ts'
import { ids } from '../src/ids.ts'

const SKIPPED = 'clean stop: tree check skipped'
// Fixed (the DID names it, and each start has a new port) and on localhost.
const URL_ENV = { HOLD_PUBLIC_URL: 'http://localhost:1' }

const inDb = <T>(dataDir: string, fn: (db: DatabaseSync) => T): T => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'))
  try {
    return fn(db)
  } finally {
    db.close()
  }
}

const mark = (dataDir: string) =>
  inDb(
    dataDir,
    (db) =>
      db.prepare('SELECT root FROM repo_clean_stop').get() as
        { root: string } | undefined,
  )

const root = (dataDir: string) =>
  inDb(
    dataDir,
    (db) =>
      (db.prepare('SELECT cid FROM repo_root').get() as { cid: string }).cid,
  )

/** Some stats records, so the tree has inner nodes and record blocks to walk. */
const countSome = async (url: string, hold: HoldServer) => {
  for (let i = 0; i < 50; i++) {
    hold.ctx.stats.countPull(
      `did:plc:cleanstop${String(i).padStart(9, '0')}`,
      'app',
    )
  }
  const flush = await hold.ctx.stats.flush()
  expect(flush.records).toBe(50)
  expect((await xrpc(url, '_health')).status).toBe(200)
}

describe('the start-up tree check after a clean stop', () => {
  const dirs: string[] = []
  const running: HoldServer[] = []
  let dataDir: string

  beforeAll(async () => {
    dataDir = await tempDir()
    dirs.push(dataDir)
  })
  afterEach(async () => {
    for (const hold of running.splice(0)) await hold.destroy()
  })
  afterAll(async () => {
    for (const dir of dirs) await removeDir(dir)
  })

  it('a first start walks the tree, a clean stop marks its head, and the next start skips the walk', async () => {
    const first = await startLogged(dataDir, URL_ENV, { running })
    expect(first.logs.some((l) => l.msg === SKIPPED)).toBe(false)
    await countSome(first.url, first.hold)
    expect(mark(dataDir)).toBeUndefined()
    await first.stop()
    expect(mark(dataDir)).toEqual({ root: root(dataDir) })

    const second = await startLogged(dataDir, URL_ENV, { running })
    expect(second.logs.some((l) => l.msg === SKIPPED)).toBe(true)
    // Taken at start: a crash from here on leaves no mark behind.
    expect(mark(dataDir)).toBeUndefined()
    // The repo is served as before, records included.
    const res = await xrpc<{ records: unknown[] }>(
      second.url,
      ids.RepoListRecords,
      { repo: second.did, collection: ids.HoldStats, limit: 100 },
    )
    expect(res.status).toBe(200)
    expect(res.body.records).toHaveLength(50)
    await second.stop()
  })

  it('a block removed after the stop drops the mark, so the next start walks the tree', async () => {
    const hold = await startLogged(dataDir, URL_ENV, { running })
    await hold.stop()
    expect(mark(dataDir)).toBeDefined()
    inDb(dataDir, (db) => {
      const head = root(dataDir)
      db.prepare('DELETE FROM repo_block WHERE cid = ?').run(head)
    })
    expect(mark(dataDir)).toBeUndefined()
  })

  it('a stop with HOLD_REPAIR set still walks the tree', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const a = await startLogged(dir, URL_ENV, { running })
    await a.stop()
    const b = await startLogged(
      dir,
      { ...URL_ENV, HOLD_REPAIR: 'rebuild-tree' },
      { running },
    )
    expect(b.logs.some((l) => l.msg === SKIPPED)).toBe(false)
    expect(b.warnings()).toContain(
      'HOLD_REPAIR is set but the repo is whole: nothing to repair; unset HOLD_REPAIR',
    )
    await b.stop()
  })

  it('after kill -9 there is no mark, and the next start walks the tree', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const spawned = await spawnHold({ dataDir: dir, env: URL_ENV })
    spawned.proc.kill('SIGKILL')
    await spawned.exited
    expect(mark(dir)).toBeUndefined()
    const next = await startLogged(dir, URL_ENV, { running })
    expect(next.logs.some((l) => l.msg === SKIPPED)).toBe(false)
    await next.stop()
  })
})
