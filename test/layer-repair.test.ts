import { ids } from '../src/ids.ts'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  callAs,
  LAYER,
  manifestBody,
  NOTIFY,
  pushLayers,
  verifiedRecords,
  type Layer,
} from './_appview.ts'
import { startHold, TEST_OWNER, tempDir, xrpc, type TestHold } from './_util.ts'

const USER = TEST_OWNER

/** Deletes the block of one layer record, as two processes writing one data dir could. */
const loseRecordBlock = (dataDir: string, rkey: string): void => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'))
  try {
    const { cid } = db
      .prepare('SELECT cid FROM record WHERE collection = ? AND rkey = ?')
      .get(LAYER, rkey) as { cid: string }
    db.prepare('DELETE FROM repo_block WHERE cid = ?').run(cid)
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
  } finally {
    db.close()
  }
}

describe('layer records lost in a repair', () => {
  let h: TestHold
  let dataDir: string
  let layers: Layer[]
  let body: Record<string, unknown>

  beforeAll(async () => {
    dataDir = await tempDir()
    h = await startHold({ dataDir })
    const port = h.port
    layers = await pushLayers(h.url, 3, { size: 100 })
    body = manifestBody(USER, layers, { repository: 'app' })
    const res = await callAs(h.url, NOTIFY, USER, body)
    expect(res.body.layersCreated).toBe(3)
    const [lost] = h.hold.ctx.layers.rowsOf(USER)
    await h.stop()
    loseRecordBlock(dataDir, lost.rkey)
    h = await startHold({ dataDir, port, env: { HOLD_REPAIR: 'rebuild-tree' } })
  })
  afterAll(() => h.stop())

  it('stop counting towards the quota, and are written again when the manifest is notified again', async () => {
    const quota = await xrpc(h.url, ids.HoldGetQuota, { userDid: USER })
    expect(quota.body).toMatchObject({ uniqueBlobs: 2, totalSize: 200 })
    const again = await callAs(h.url, NOTIFY, USER, body)
    expect(again.status).toBe(200)
    expect(again.body.layersCreated).toBe(1)
    const records = (await verifiedRecords(h.url)).filter(
      (r) => r.collection === LAYER,
    )
    expect(records.map((r) => r.record.digest).sort()).toEqual(
      layers.map((l) => l.digest).sort(),
    )
    const after = await xrpc(h.url, ids.HoldGetQuota, { userDid: USER })
    expect(after.body).toMatchObject({ uniqueBlobs: 3, totalSize: 300 })
  })
})
