import { ids } from '../src/ids.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  addMember,
  callAs,
  headRev,
  LAYER,
  manifestBody,
  NOTIFY,
  pushLayers,
  queryAs,
  verifiedRecords,
  type Layer,
} from './_appview.ts'
import { bearer, identity } from './_identity.ts'
import {
  pushBlob,
  startHold,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from './_util.ts'

const MEMBER = 'did:plc:userdatamember0000000000000'
const OTHER = 'did:plc:userdataother00000000000000'
const EXPORT = ids.HoldExportUserData
const DELETE = ids.HoldDeleteUserData

describe('exportUserData and deleteUserData', () => {
  let h: TestHold
  let layers: Layer[]
  let commits = 0

  beforeAll(async () => {
    await identity(OTHER)
    h = await startHold()
    h.hold.ctx.writer.onCommit(() => commits++)
    await addMember(h.url, TEST_OWNER, MEMBER)
    layers = await pushLayers(h.url, 150, { as: MEMBER, size: 10 })
    for (const repository of ['one', 'two']) {
      const res = await callAs(
        h.url,
        NOTIFY,
        MEMBER,
        manifestBody(MEMBER, layers, {
          repository,
          visibility: 'private',
        }),
      )
      expect(res.body.layersCreated).toBe(150)
    }
    const pull = await xrpc(
      h.url,
      ids.SyncGetBlob,
      { did: MEMBER, cid: layers[0].digest, repo: 'one' },
      { headers: await bearer({ iss: MEMBER, aud: h.did }) },
    )
    expect(pull.status).toBe(200)
    await h.hold.ctx.stats.flush()
  })
  afterAll(() => h.stop())

  it('exports every record and counter the hold keeps about the caller, and nothing of others', async () => {
    const res = await queryAs<Record<string, unknown>>(h.url, EXPORT, MEMBER)
    expect(res.status).toBe(200)
    expect(() =>
      h.hold.ctx.lexicons.assertValidXrpcOutput(EXPORT, res.body),
    ).not.toThrow()
    const body = res.body as {
      did: string
      records: { uri: string; value: Record<string, unknown> }[]
      stats: { repository: string; pullCount: number }[]
      quota: { uniqueBlobs: number; totalSize: number }
      manifestBlobs: unknown[]
    }
    expect(body.did).toBe(MEMBER)
    const byCollection = (c: string) =>
      body.records.filter((r) => r.uri.includes(`/${c}/`))
    expect(byCollection(ids.HoldCrew).map((r) => r.value.member)).toEqual([
      MEMBER,
    ])
    expect(byCollection(LAYER).length).toBe(300)
    expect(byCollection(ids.HoldStats).map((r) => r.value.repository)).toEqual([
      'one',
    ])
    expect(body.stats).toMatchObject([{ repository: 'one', pullCount: 1 }])
    expect(body.quota).toMatchObject({ uniqueBlobs: 150, totalSize: 1500 })
    expect(body.manifestBlobs.length).toBe(300)
    // Every layer record in the repo that names the member is in the export.
    const inRepo = (await verifiedRecords(h.url)).filter(
      (r) => r.collection === LAYER && r.record.userDid === MEMBER,
    )
    expect(inRepo.length).toBe(300)

    const other = await queryAs(h.url, EXPORT, OTHER)
    expect(other.status).toBe(200)
    expect(other.body).toMatchObject({
      did: OTHER,
      records: [],
      stats: [],
      manifestBlobs: [],
      quota: { uniqueBlobs: 0, totalSize: 0 },
    })
  })

  it('refuses both without a service token, writing nothing', async () => {
    const rev = await headRev(h.url)
    const exp = await queryAs(h.url, EXPORT, undefined)
    expect(exp.status).toBe(401)
    expect(exp.body.error).toBe('AuthRequired')
    const del = await callAs(h.url, DELETE, undefined)
    expect(del.status).toBe(401)
    expect(del.body.error).toBe('AuthRequired')
    const bad = await xrpc(
      h.url,
      DELETE,
      {},
      {
        method: 'POST',
        headers: { authorization: 'Bearer not.a.jwt' },
      },
    )
    expect(bad.status).toBe(401)
    expect(await headRev(h.url)).toBe(rev)
  })

  it('deletes the caller’s layer records (200 per commit) and crew record, keeps its stats records, and lifts its private blobs', async () => {
    const anon = () =>
      xrpc(h.url, ids.SyncGetBlob, {
        did: MEMBER,
        cid: layers[1].digest,
      })
    expect((await anon()).status).toBe(401)
    const before = commits
    const res = await callAs(h.url, DELETE, MEMBER)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      success: true,
      layersDeleted: 300,
      crewDeleted: 1,
      statsKept: 1,
    })
    expect(commits - before).toBe(3)
    const records = await verifiedRecords(h.url)
    expect(records.filter((r) => r.collection === LAYER)).toEqual([])
    expect(
      records.filter(
        (r) => r.collection === ids.HoldCrew && r.record.member === MEMBER,
      ),
    ).toEqual([])
    expect(
      records.filter(
        (r) => r.collection === ids.HoldStats && r.record.ownerDid === MEMBER,
      ).length,
    ).toBe(1)
    const quota = await xrpc(h.url, ids.HoldGetQuota, {
      userDid: MEMBER,
    })
    expect(quota.body).toMatchObject({ uniqueBlobs: 0, totalSize: 0 })
    expect((await anon()).status).toBe(200)
    // No longer crew: a push is refused.
    await expect(
      pushBlob(h.url, new Uint8Array([1, 2, 3]), { as: MEMBER }),
    ).rejects.toThrow(/403/)
    // The blobs stay: other manifests may name them.
    expect(await h.hold.ctx.blobs.size(layers[0].digest.slice(7))).toBe(10)
  })

  it('answers a second deletion with nothing to delete and no commit', async () => {
    const rev = await headRev(h.url)
    const res = await callAs(h.url, DELETE, MEMBER)
    expect(res.body).toEqual({
      success: true,
      layersDeleted: 0,
      crewDeleted: 0,
      statsKept: 1,
    })
    expect(await headRev(h.url)).toBe(rev)
  })
})
