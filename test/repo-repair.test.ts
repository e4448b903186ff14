import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { envToCfg, readEnv } from '../src/config.ts'
import { decodeNode } from '../src/repo/mst-node.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import {
  removeDir,
  runHoldToExit,
  startHold,
  TEST_OWNER,
  tempDir,
  xrpc,
} from './_util.ts'
import { recordsIn, verifiedRepo } from './_repo.ts'
import { testPlcUrl } from './_identity.ts'

const PAIRS = 600
// Fixed (the DID names it) and on localhost, which a start takes without a warning.
const PUBLIC_URL = 'http://localhost:1'
const CREW = ids.HoldCrew
const STATS = ids.HoldStats
const didOf = (i: number) => `did:plc:repair${String(i).padStart(6, '0')}`

/**
 * What two processes writing one data dir left behind: MST nodes and a record block the head
 * still reaches, deleted by the other process's commits.
 */
const damage = (dataDir: string): { nodes: number; records: number } => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'))
  try {
    const root = (
      db.prepare('SELECT cid FROM repo_root').get() as { cid: string }
    ).cid
    const nodes: string[] = []
    for (const row of db.prepare('SELECT cid, content FROM repo_block').all()) {
      const { cid, content } = row as { cid: string; content: Uint8Array }
      if (cid === root) continue
      try {
        const node = decodeNode(content)
        // An inner node (it has subtrees), so a whole part of the tree goes with it.
        if (node.l || node.e.some((e) => e.t)) nodes.push(cid)
      } catch {
        // a record or the commit
      }
    }
    const drop = db.prepare('DELETE FROM repo_block WHERE cid = ?')
    for (const cid of nodes.slice(0, 3)) drop.run(cid)
    const record = db
      .prepare('SELECT cid FROM record WHERE collection = ? AND rkey = ?')
      .get(STATS, statsRecordKey(didOf(7), 'app')) as { cid: string }
    drop.run(record.cid)
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
    return { nodes: Math.min(3, nodes.length), records: 1 }
  } finally {
    db.close()
  }
}

describe('a damaged repo', () => {
  let dataDir: string
  beforeAll(async () => {
    dataDir = await tempDir()
    const h = await startHold({
      dataDir,
      env: { HOLD_PUBLIC_URL: PUBLIC_URL, HOLD_STATS_FLUSH_MS: '86400000' },
    })
    await h.hold.ctx.writer.putRecords([
      {
        collection: CREW,
        rkey: 'did:plc:crewmember000001',
        record: {
          $type: CREW,
          member: 'did:plc:crewmember000001',
          role: 'write',
          permissions: ['blob:read', 'blob:write'],
          addedAt: new Date().toISOString(),
        },
      },
    ])
    for (let i = 0; i < PAIRS; i++) {
      for (let n = 0; n <= i % 5; n++)
        h.hold.ctx.stats.countPull(didOf(i), 'app')
    }
    await h.stop()
    const done = damage(dataDir)
    expect(done.nodes).toBe(3)
  })
  afterAll(() => removeDir(dataDir))

  const env = async (extra: Record<string, string> = {}) => ({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: '0',
    HOLD_DATA_DIR: dataDir,
    HOLD_PUBLIC_URL: PUBLIC_URL,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_OWNER_DID: TEST_OWNER,
    ...extra,
  })

  it('is refused at start in one line that names the repair', async () => {
    const { code, output } = await runHoldToExit(await env())
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^atcr-hold: the repo in HOLD_DATA_DIR is damaged: \d+ block\(s\) its head reaches are missing \(MST node b/,
    )
    expect(lines[0]).toContain('HOLD_REPAIR=rebuild-tree')
  })

  it('is rebuilt with HOLD_REPAIR=rebuild-tree: every record kept or written again, and a CAR that verifies', async () => {
    const h = await startHold({
      dataDir,
      env: {
        HOLD_PUBLIC_URL: PUBLIC_URL,
        HOLD_STATS_FLUSH_MS: '86400000',
        HOLD_REPAIR: 'rebuild-tree',
      },
    })
    try {
      await h.hold.ctx.stats.flush()
      const repo = await verifiedRepo(h.url, h.did)
      const stats = recordsIn(repo, STATS)
      expect(stats).toHaveLength(PAIRS)
      for (const i of [0, 7, 123, PAIRS - 1]) {
        const record = await xrpc<{ value: { pullCount: number } }>(
          h.url,
          ids.RepoGetRecord,
          {
            repo: h.did,
            collection: STATS,
            rkey: statsRecordKey(didOf(i), 'app'),
          },
        )
        expect(record.body.value.pullCount).toBe((i % 5) + 1)
      }
      expect(
        repo.creates.filter((r) => r.collection === ids.HoldCaptain),
      ).toHaveLength(1)
      const crew = await xrpc(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: CREW,
        rkey: 'did:plc:crewmember000001',
      })
      expect(crew.status).toBe(200)
    } finally {
      await h.stop()
    }
  })

  it('starts without HOLD_REPAIR once repaired', async () => {
    const h = await startHold({
      dataDir,
      env: { HOLD_PUBLIC_URL: PUBLIC_URL },
    })
    const health = await fetch(`${h.url}/xrpc/_health`)
    expect(health.status).toBe(200)
    await h.stop()
  })

  it('takes only rebuild-tree as HOLD_REPAIR', () => {
    expect(() => envToCfg(readEnv({ HOLD_REPAIR: 'yes' }))).toThrow(
      'HOLD_REPAIR must be "rebuild-tree" (or unset), got "yes"',
    )
    expect(envToCfg(readEnv({ HOLD_REPAIR: 'rebuild-tree' })).repair).toBe(
      'rebuild-tree',
    )
  })
})
