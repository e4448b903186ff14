import { parseCid } from '@atproto/lex-data'
import { verifyProofs, verifyRecords } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { getBytes, sleep, startHold, xrpc, type TestHold } from './_util.ts'
import { publishedKey } from './_repo.ts'

const STATS = ids.HoldStats

/** The writer's queue held by a write that does not end until released. */
const blockWriter = (h: TestHold) => {
  let release!: () => void
  const held = new Promise<void>((resolve) => (release = resolve))
  const done = h.hold.ctx.writer.run(() => held)
  return {
    release: async () => {
      release()
      await done
    },
  }
}

/** The response, or 'still waiting' when it has not come within ms. */
const within = <T>(ms: number, p: Promise<T>): Promise<T | 'still waiting'> =>
  Promise.race([p, sleep(ms).then(() => 'still waiting' as const)])

describe('sync.getRecord and the writer', () => {
  let h: TestHold
  let signingKey: string
  const rkey = statsRecordKey('did:plc:proofalice', 'app')

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '86400000' } })
    signingKey = await publishedKey(h.url)
    h.hold.ctx.stats.countPull('did:plc:proofalice', 'app')
    await h.hold.ctx.stats.flush()
  })
  afterAll(() => h.stop())

  it('answers with a proof that verifies while a write holds the writer', async () => {
    const writer = blockWriter(h)
    try {
      const res = await within(
        5000,
        getBytes(h.url, ids.SyncGetRecord, {
          did: h.did,
          collection: STATS,
          rkey,
        }),
      )
      expect(res).not.toBe('still waiting')
      if (res === 'still waiting') return
      expect(res.status).toBe(200)
      const records = await verifyRecords(res.bytes, h.did, signingKey)
      expect(records).toHaveLength(1)
      expect(records[0].record).toMatchObject({ pullCount: 1 })
      const view = await xrpc<{ cid: string }>(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: STATS,
        rkey,
      })
      const proved = await verifyProofs(
        res.bytes,
        [{ collection: STATS, rkey, cid: parseCid(view.body.cid) }],
        h.did,
        signingKey,
      )
      expect(proved.verified).toHaveLength(1)
    } finally {
      await writer.release()
    }
  })

  it('answers an absent record with the proof of its absence, while a write holds the writer', async () => {
    const writer = blockWriter(h)
    const absent = statsRecordKey('did:plc:nobody', 'app')
    try {
      const res = await within(
        5000,
        getBytes(h.url, ids.SyncGetRecord, {
          did: h.did,
          collection: STATS,
          rkey: absent,
        }),
      )
      expect(res).not.toBe('still waiting')
      if (res === 'still waiting') return
      expect(res.status).toBe(200)
      const proved = await verifyProofs(
        res.bytes,
        [{ collection: STATS, rkey: absent, cid: null }],
        h.did,
        signingKey,
      )
      expect(proved.verified).toHaveLength(1)
      expect(proved.unverified).toHaveLength(0)
      // The same CAR does not prove the present record absent: the check can fail.
      const wrong = await verifyProofs(
        res.bytes,
        [{ collection: STATS, rkey, cid: null }],
        h.did,
        signingKey,
      ).catch(() => ({ verified: [] }))
      expect(wrong.verified).toHaveLength(0)
    } finally {
      await writer.release()
    }
  })

  it('proves the head of its snapshot while commits land in between', async () => {
    const { stats } = h.hold.ctx
    const proofs = []
    for (let i = 0; i < 20; i++) {
      stats.countPull('did:plc:proofalice', 'app')
      proofs.push(
        getBytes(h.url, ids.SyncGetRecord, {
          did: h.did,
          collection: STATS,
          rkey,
        }),
      )
      if (i % 4 === 0) void stats.flush()
    }
    await stats.flush()
    for (const res of await Promise.all(proofs)) {
      expect(res.status).toBe(200)
      const records = await verifyRecords(res.bytes, h.did, signingKey)
      expect(records.map((r) => r.rkey)).toEqual([rkey])
    }
  })
})
