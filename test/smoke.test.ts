import { verifyRepoCar } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  atprotoKeyFromDidDoc,
  getBytes,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

describe('smoke', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({ env: { HOLD_OWNER_DID: 'did:plc:owner' } })
  })
  afterAll(() => h.stop())

  it('serves a repo CAR that verifies against the key in did.json', async () => {
    const doc = (await (
      await fetch(`${h.url}/.well-known/did.json`)
    ).json()) as Parameters<typeof atprotoKeyFromDidDoc>[0]
    const car = await getBytes(h.url, 'com.atproto.sync.getRepo', {
      did: h.did,
    })
    expect(car.status).toBe(200)
    const verified = await verifyRepoCar(
      car.bytes,
      h.did,
      atprotoKeyFromDidDoc(doc),
    )
    expect(verified.creates.map((c) => c.collection).sort()).toEqual([
      'io.atcr.hold.captain',
      'io.atcr.hold.crew',
    ])
    const head = await xrpc(h.url, 'com.atproto.repo.getRecord', {
      repo: h.did,
      collection: 'io.atcr.hold.captain',
      rkey: 'self',
    })
    expect(head.status).toBe(200)
  })
})
