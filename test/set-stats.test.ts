import { ids } from '../src/ids.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  addMember,
  callAs,
  published,
  pushLayers,
  verifiedRecords,
  type Layer,
} from './_appview.ts'
import { bearer, identity } from './_identity.ts'
import { startHold, TEST_OWNER, xrpc, type TestHold } from './_util.ts'

const SET = ids.HoldSetStats
const ADMIN = 'did:plc:setstatsadmin000000000000'
const MEMBER = 'did:plc:setstatsmember00000000000'
const ALICE = 'did:plc:setstatsalice0000000000000'

describe('io.atcr.hold.setStats', () => {
  let h: TestHold
  let layer: Layer

  beforeAll(async () => {
    h = await startHold()
    await addMember(h.url, TEST_OWNER, MEMBER)
    await identity(ADMIN)
    const res = await callAs(h.url, ids.RepoCreateRecord, TEST_OWNER, {
      repo: h.did,
      collection: ids.HoldCrew,
      record: {
        $type: 'io.atcr.hold.crew',
        member: ADMIN,
        role: 'admin',
        permissions: ['blob:read', 'crew:admin'],
        addedAt: new Date().toISOString(),
      },
    })
    expect(res.status).toBe(200)
    ;[layer] = await pushLayers(h.url, 1)
  })
  afterAll(() => h.stop())

  const pull = async (repo: string) => {
    const res = await xrpc(
      h.url,
      ids.SyncGetBlob,
      { did: ALICE, cid: layer.digest, method: 'GET', repo },
      { headers: await bearer({ iss: TEST_OWNER, aud: h.did }) },
    )
    expect(res.status).toBe(200)
  }
  const stats = async (repo: string) =>
    (await xrpc(h.url, ids.HoldGetStats, { did: ALICE, repo })).body

  it('makes a pair show absolute counts now, and later counts add on top, in getStats and the record', async () => {
    for (let i = 0; i < 3; i++) await pull('web')
    expect(await stats('web')).toMatchObject({ pullCount: 3, pushCount: 0 })
    const res = await callAs(h.url, SET, TEST_OWNER, {
      ownerDid: ALICE,
      repository: 'web',
      pullCount: 100,
      pushCount: 7,
      lastPush: '2025-01-15T10:00:00Z',
    })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ success: true })
    expect(await stats('web')).toMatchObject({
      pullCount: 100,
      pushCount: 7,
      lastPush: '2025-01-15T10:00:00.000Z',
    })
    await pull('web')
    await pull('web')
    expect(await stats('web')).toMatchObject({ pullCount: 102, pushCount: 7 })
    await h.hold.ctx.stats.flush()
    const record = (await verifiedRecords(h.url)).find(
      (r) => r.collection === ids.HoldStats && r.record.repository === 'web',
    )
    expect(record?.record).toMatchObject({ pullCount: 102, pushCount: 7 })
    published.assertValidRecord(ids.HoldStats, record!.record)
  })

  it('sets a count below what the hold counted itself, and leaves a count not given alone', async () => {
    for (let i = 0; i < 4; i++) await pull('low')
    const res = await callAs(h.url, SET, ADMIN, {
      ownerDid: ALICE,
      repository: 'low',
      pullCount: 1,
    })
    expect(res.status).toBe(200)
    expect(await stats('low')).toMatchObject({ pullCount: 1, pushCount: 0 })
    await pull('low')
    expect(await stats('low')).toMatchObject({ pullCount: 2 })
    await callAs(h.url, SET, ADMIN, {
      ownerDid: ALICE,
      repository: 'low',
      pushCount: 5,
    })
    expect(await stats('low')).toMatchObject({ pullCount: 2, pushCount: 5 })
  })

  describe('refuses, changing nothing', () => {
    const body = { ownerDid: ALICE, repository: 'refused', pullCount: 9 }
    const refused = async (
      as: string | undefined,
      b: unknown,
      status: number,
      error: string,
    ) => {
      const res = await callAs(h.url, SET, as, b)
      expect(res.status, JSON.stringify(res.body)).toBe(status)
      expect(res.body.error).toBe(error)
      expect(await stats('refused')).toMatchObject({ pullCount: 0 })
    }

    it('callers that are not the owner or a crew admin', async () => {
      await refused(undefined, body, 401, 'AuthRequired')
      await refused(MEMBER, body, 403, 'Forbidden')
      await refused(ALICE, body, 403, 'Forbidden')
    })

    it('an owner that is not a DID, a repository that is not a name', async () => {
      for (const ownerDid of [
        'alice',
        'did:plc:',
        'did:x:' + 'a'.repeat(2100),
      ]) {
        // Past the lexicon's length it is the lexicon's refusal.
        await refused(
          TEST_OWNER,
          { ...body, ownerDid },
          400,
          ownerDid.length > 2048 ? 'InvalidRequest' : 'InvalidOwner',
        )
      }
      for (const repository of ['Web', 'a//b', '/x', 'a'.repeat(257)]) {
        await refused(
          TEST_OWNER,
          { ...body, repository },
          400,
          repository.length > 256 ? 'InvalidRequest' : 'InvalidRepository',
        )
      }
    })

    it('counts and times the lexicon or the hold refuses', async () => {
      for (const bad of [
        { pullCount: -1 },
        { pullCount: 1.5 },
        { pushCount: 'many' },
        { lastPull: 'yesterday' },
        { lastPull: '2999-01-01T00:00:00Z' },
      ]) {
        await refused(TEST_OWNER, { ...body, ...bad }, 400, 'InvalidRequest')
      }
    })
  })
})
