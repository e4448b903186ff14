import { join } from 'node:path'
import { MemoryBlockstore, readCarWithRoot, Repo } from '@atproto/repo'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { ids } from '../src/ids.ts'
import { SHARED_CID_SQL } from '../src/repo/record-index.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { repoCar, verifiedRepo, recordsIn } from './_repo.ts'
import { removeDir, startHold, tempDir, type TestHold } from './_util.ts'
import { schemaBefore } from './_schema.ts'

// The block table holds exactly what the head reaches: every block a record or tree node
// needs, and nothing a commit replaced, through stats records rewritten flush after flush.

/** The CIDs the signed head reaches (commit, tree nodes, records), walked by @atproto/repo. */
const reachable = async (car: Uint8Array): Promise<Set<string>> => {
  const { root, blocks } = await readCarWithRoot(car)
  const repo = await Repo.load(new MemoryBlockstore(blocks), root)
  const cids = await repo.data.allCids()
  const out = new Set<string>([root.toString()])
  for (const cid of cids.toList()) out.add(cid.toString())
  return out
}

const stored = (h: TestHold): Set<string> =>
  new Set(
    (
      h.hold.ctx.db.db.prepare('SELECT cid FROM repo_block').all() as {
        cid: string
      }[]
    ).map((r) => r.cid),
  )

describe('the blocks a hold keeps', () => {
  let h: TestHold

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '86400000' } })
  })
  afterAll(() => h.stop())

  it('are the blocks its head reaches, after stats records are rewritten flush after flush', async () => {
    const { stats } = h.hold.ctx
    for (let round = 1; round <= 5; round++) {
      for (let i = 0; i < 60; i++) {
        // Every round rewrites the first 40 pairs and adds 20 new ones.
        const pair = i < 40 ? i : 40 + round * 20 + i
        for (let n = 0; n < round; n++) {
          stats.countPull(
            `did:plc:blocks${String(pair).padStart(4, '0')}`,
            'app',
          )
        }
      }
      await stats.flush()
      const car = await repoCar(h.url, h.did)
      expect(stored(h)).toEqual(await reachable(car))
    }
    const repo = await verifiedRepo(h.url, h.did)
    expect(recordsIn(repo, ids.HoldStats)).toHaveLength(140)
  })

  it('looks a removed block up only among records that can share one, through an index', () => {
    const plan = h.hold.ctx.db.db
      .prepare(`EXPLAIN QUERY PLAN ${SHARED_CID_SQL}`)
      .all('bafyreiaaaa') as { detail: string }[]
    expect(plan.map((p) => p.detail).join('; ')).toMatch(
      /USING COVERING INDEX record_shared_cid_idx/,
    )
  })
})

describe("a data dir from before stats records left the record index's CIDs", () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await removeDir(dir)
  })

  it('gets the smaller index at its first start, the records unchanged', async () => {
    const dir = await tempDir()
    dirs.push(dir)
    const path = join(dir, 'hold.sqlite')
    const old = schemaBefore(path, 'record_shared_cid_idx')
    const put = old.prepare(
      `INSERT INTO record (collection, rkey, cid, repo_rev, indexed_at) VALUES (?, ?, ?, 'r', 'x')`,
    )
    put.run(ids.HoldStats, 'a', 'bafyreistats')
    put.run(ids.HoldCrew, 'b', 'bafyreicrew')
    old.close()

    const db = new Database(path)
    try {
      const indexes = db.db
        .prepare(
          "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'record'",
        )
        .all() as { name: string }[]
      expect(indexes.map((i) => i.name)).toEqual(['record_shared_cid_idx'])
      const used = db.db.prepare(SHARED_CID_SQL)
      expect(used.get('bafyreicrew')).toBeDefined()
      expect(used.get('bafyreistats')).toBeUndefined()
      expect(db.db.prepare('SELECT count(*) AS n FROM record').get()).toEqual({
        n: 2,
      })
    } finally {
      db.db.close()
    }
  })
})

describe('a stats record', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '86400000' } })
  })
  afterAll(() => h.stop())

  it("is refused under any key but its own pair's, so no two can share a block", async () => {
    const { writer, stats, reader } = h.hold.ctx
    const did = 'did:plc:keyedaaaaaaaaaaaaaaaaaaa'
    stats.countPull(did, 'app')
    await stats.flush()
    const own = reader.get(ids.HoldStats, statsRecordKey(did, 'app'))
    expect(own?.value).toMatchObject({ did, repository: 'app', pullCount: 1 })
    const before = await repoCar(h.url, h.did)
    for (const rkey of ['elsewhere', statsRecordKey('did:plc:other', 'app')]) {
      await expect(
        writer.putRecords([
          { collection: ids.HoldStats, rkey, record: own!.value as never },
        ]),
      ).rejects.toThrow(/its own pair's key/)
    }
    expect(await repoCar(h.url, h.did)).toEqual(before)
  })
})
