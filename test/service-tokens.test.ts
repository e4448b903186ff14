import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  CREW,
  GET_BLOB,
  REQUEST_CREW,
  expectXrpcError,
  latestRev,
} from './_access.ts'
import { identity, serviceToken } from './_identity.ts'
import {
  TEST_OWNER,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STRANGER = 'did:plc:tokensstranger000000000000'

describe('service tokens: which issuers a hold takes', () => {
  let h: TestHold

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_ALLOW_ALL_CREW: 'true', HOLD_STATS_FLUSH_MS: '3600000' },
    })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  const join = (authorization: string) =>
    xrpc(
      h.url,
      REQUEST_CREW,
      {},
      { method: 'POST', headers: { authorization } },
    )

  it('refuses a did:key issuer with 401 BadJwtIssuer saying why, and lets it join nothing', async () => {
    const before = await latestRev(h)
    for (let i = 0; i < 3; i++) {
      // Each is a new identity, minted offline in a millisecond.
      const keypair = await Secp256k1Keypair.create()
      for (const iss of [keypair.did(), `${keypair.did()}#atproto`]) {
        const t = await createServiceJwt({
          iss,
          aud: h.did,
          lxm: REQUEST_CREW,
          keypair,
        })
        const res = await join(`Bearer ${t}`)
        expectXrpcError(res, 401, 'BadJwtIssuer')
        expect((res.body as { message: string }).message).toBe(
          'jwt issuer must be a did:plc or did:web account, got a did:key: service tokens come from atproto accounts',
        )
      }
    }
    expect(await latestRev(h)).toBe(before)
    const crew = await xrpc<{ records: { value: { member: string } }[] }>(
      h.url,
      ids.RepoListRecords,
      { repo: h.did, collection: CREW },
    )
    expect(crew.body.records.map((r) => r.value.member)).toEqual([TEST_OWNER])
  })

  it('refuses issuers of other DID methods the same way', async () => {
    const keypair = await Secp256k1Keypair.create()
    const t = await createServiceJwt({
      iss: 'did:example:123456',
      aud: h.did,
      lxm: REQUEST_CREW,
      keypair,
    })
    const res = await join(`Bearer ${t}`)
    expectXrpcError(res, 401, 'BadJwtIssuer')
    expect((res.body as { message: string }).message).toContain(
      'got a did:example',
    )
  })

  it('still takes a did:plc issuer', async () => {
    await identity(STRANGER)
    const t = await serviceToken({
      iss: STRANGER,
      aud: h.did,
      lxm: REQUEST_CREW,
    })
    const res = await join(`Bearer ${t}`)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ status: 'created' })
  })
})

describe('service tokens: the audience an AppView may name', () => {
  let h: TestHold

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  /** The owner asks for a PUT URL: 200 only when the token verifies. */
  const putUrl = async (aud: string) =>
    xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: `sha256:${'cd'.repeat(32)}`, method: 'PUT' },
      {
        headers: {
          authorization: `Bearer ${await serviceToken({ iss: TEST_OWNER, aud })}`,
        },
      },
    )

  it('takes the hold’s DID and the DID with its service id, #atcr_hold', async () => {
    expect((await putUrl(h.did)).status).toBe(200)
    const res = await putUrl(`${h.did}#atcr_hold`)
    expect(res.status, JSON.stringify(res.body)).toBe(200)
  })

  it.each([
    ['another service id of the hold', (did: string) => `${did}#atproto_pds`],
    ['an empty service id', (did: string) => `${did}#`],
    ['a doubled service id', (did: string) => `${did}#atcr_hold#atcr_hold`],
    ['another hold with #atcr_hold', () => 'did:web:other.example#atcr_hold'],
    ['the service id alone', () => '#atcr_hold'],
  ])('refuses %s with 401 BadJwtAudience', async (_name, aud) => {
    expectXrpcError(await putUrl(aud(h.did)), 401, 'BadJwtAudience')
  })
})
