import { ids } from '../src/ids.ts'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serviceToken } from './_identity.ts'
import {
  TEST_OWNER,
  startHold,
  xrpc,
  type TestHold,
  type XrpcResult,
} from './_util.ts'

const CLIENT_HEADER = 'x-test-client'
const LIMIT = 3
const DIGEST = `sha256:${'ab'.repeat(32)}`

describe('HOLD_FAILED_AUTH_PER_MINUTE', () => {
  let h: TestHold
  let stranger: Secp256k1Keypair
  let n = 0

  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_FAILED_AUTH_PER_MINUTE: String(LIMIT),
        HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
      },
    })
    stranger = await Secp256k1Keypair.create()
  })
  afterAll(() => h.stop())

  /** A new token naming the owner each time: signed by the owner's key, or forged by another. */
  const token = (forged: boolean) =>
    serviceToken({
      iss: TEST_OWNER,
      aud: h.did,
      exp: Math.floor(Date.now() / 1000) + 600 + n++,
      keypair: forged ? stranger : undefined,
    })

  /** An upload URL asked for with token, from client: 200 only for the owner. */
  const ask = (client: string, jwt: string): Promise<XrpcResult> =>
    xrpc(
      h.url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: DIGEST, method: 'PUT' },
      {
        headers: { authorization: `Bearer ${jwt}`, [CLIENT_HEADER]: client },
      },
    )

  it('refuses a client whose tokens keep failing with 429 before checking them, while other clients pass', async () => {
    const attacker = '192.0.2.10'
    const honest = '192.0.2.11'
    const before = await token(false)
    expect((await ask(attacker, before)).status).toBe(200)

    for (let i = 0; i < LIMIT; i++) {
      const res = await ask(attacker, await token(true))
      expect(res.status).toBe(401)
      expect(res.body).toMatchObject({ error: 'BadJwtSignature' })
    }
    const refused = await ask(attacker, await token(true))
    expect(refused.status).toBe(429)
    expect(refused.body).toMatchObject({ error: 'RateLimitExceeded' })
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)

    // Another client's new valid token is checked and passes.
    expect((await ask(honest, await token(false))).status).toBe(200)
    // The limited client's token verified before is not checked again, so it still passes;
    // a new one, valid or not, waits for the budget to refill (telling them apart is the check).
    expect((await ask(attacker, before)).status).toBe(200)
    expect((await ask(attacker, await token(false))).status).toBe(429)
  })

  it('does not spend the budget on tokens that verify', async () => {
    const client = '192.0.2.20'
    for (let i = 0; i < LIMIT * 2; i++) {
      expect((await ask(client, await token(false))).status).toBe(200)
    }
    for (let i = 0; i < LIMIT; i++) {
      expect((await ask(client, await token(true))).status).toBe(401)
    }
    expect((await ask(client, await token(true))).status).toBe(429)
  })
})
