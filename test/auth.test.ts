import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  GET_BLOB,
  addCrew,
  b64url,
  claims,
  expectXrpcError,
  expectZeroStats,
  handJwt,
  sha256Hex,
  signedBy,
  snapshot,
} from './_access.ts'
import { forget, identity, rotateKey, serviceToken } from './_identity.ts'
import {
  TEST_OWNER,
  freePort,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STRANGER = 'did:plc:authstranger00000000000000'
const NOW = () => Math.floor(Date.now() / 1000)

describe('service auth: every bad token is a 401 naming what failed, and changes nothing', () => {
  let h: TestHold
  let stored: string
  const fresh = randomBytes(300)
  const freshDigest = `sha256:${sha256Hex(fresh)}`

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_PUBLIC: 'true', HOLD_STATS_FLUSH_MS: '3600000' },
    })
    stored = (await pushBlob(h.url, randomBytes(200), { did: TEST_OWNER }))
      .digest
    await identity(STRANGER)
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  /**
   * Calls that would change something if the token were accepted: a pull that counts (plain and
   * method=GET) of a stored blob on this public hold, and a PUT URL for a blob not stored.
   */
  const attempt = async (authorization: string | undefined) => {
    const headers: Record<string, string> = authorization
      ? { authorization }
      : {}
    const put = await xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: freshDigest, method: 'PUT', repo: 'auth/push' },
      { headers },
    )
    const get = await xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: stored, method: 'GET', repo: 'auth/pull' },
      { headers },
    )
    const bytes = await xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: stored, repo: 'auth/pull' },
      { headers },
    )
    return { put, get, bytes }
  }

  const expectRefused = async (authorization: string, error: string) => {
    const before = await snapshot(h)
    const { put, get, bytes } = await attempt(authorization)
    expectXrpcError(put, 401, error)
    expectXrpcError(get, 401, error)
    expectXrpcError(bytes, 401, error)
    expect(await snapshot(h)).toEqual(before)
    await expectZeroStats(h, TEST_OWNER, 'auth/push')
    await expectZeroStats(h, TEST_OWNER, 'auth/pull')
  }

  type BadToken = [string, () => Promise<string>, string]
  const token = async (t: string | Promise<string>) => `Bearer ${await t}`
  const unsigned = (header: unknown, payload: unknown) =>
    `${b64url(header)}.${b64url(payload)}.`

  const cases: BadToken[] = [
    ['a Basic credential', async () => 'Basic dXNlcjpwYXNz', 'InvalidToken'],
    ['Bearer with no token', async () => 'Bearer', 'InvalidToken'],
    [
      'Bearer with characters no JWT has',
      async () => 'Bearer a$b.c!d.e%f',
      'InvalidToken',
    ],
    [
      // The scheme is case-insensitive (RFC 9110), so this reaches the token check.
      'a garbage token after a lower-case "bearer"',
      async () => 'bearer a.b.c',
      'BadJwt',
    ],
    ['a one-part token', async () => 'Bearer abcdef', 'BadJwt'],
    ['a two-part token', async () => 'Bearer abc.def', 'BadJwt'],
    ['a four-part token', async () => 'Bearer a.b.c.d', 'BadJwt'],
    [
      'parts that are not base64 JSON',
      async () => token(`${b64url('not json')}.${b64url('{')}.c2ln`),
      'BadJwt',
    ],
    [
      'a JSON array payload',
      async () => token(unsigned({ alg: 'ES256K' }, [1, 2, 3])),
      'BadJwt',
    ],
    [
      'a JSON array header',
      async () =>
        token(unsigned(['ES256K'], claims({ iss: STRANGER, aud: h.did }))),
      'BadJwt',
    ],
    [
      'a null payload',
      async () => token(unsigned({ alg: 'ES256K' }, null)),
      'BadJwt',
    ],
    [
      'a token longer than 8 KiB',
      async () => token(`${'a'.repeat(5000)}.${'b'.repeat(5000)}.c`),
      'InvalidToken',
    ],
    [
      'an expired token (exp in the past)',
      async () =>
        token(serviceToken({ iss: STRANGER, aud: h.did, exp: NOW() - 30 })),
      'JwtExpired',
    ],
    [
      'a token whose exp is more than an hour away',
      async () =>
        token(serviceToken({ iss: STRANGER, aud: h.did, exp: NOW() + 3660 })),
      'BadJwtExpiry',
    ],
    [
      'a token without exp',
      async () => token(signedBy(STRANGER, { aud: h.did, exp: undefined })),
      'BadJwt',
    ],
    [
      'a token whose exp is a string',
      async () =>
        token(signedBy(STRANGER, { aud: h.did, exp: String(NOW() + 60) })),
      'BadJwt',
    ],
    [
      'a token for another audience',
      async () =>
        token(
          serviceToken({ iss: STRANGER, aud: 'did:web:other-hold.example' }),
        ),
      'BadJwtAudience',
    ],
    [
      'a token without aud',
      async () => token(signedBy(STRANGER, { aud: undefined as never })),
      'BadJwt',
    ],
    [
      'a token for another lexicon method',
      async () =>
        token(
          serviceToken({
            iss: STRANGER,
            aud: h.did,
            lxm: ids.RepoCreateRecord,
          }),
        ),
      'BadJwtLexiconMethod',
    ],
    [
      'a forged token (signed with a key that is not the issuer’s)',
      async () =>
        token(
          serviceToken({
            iss: STRANGER,
            aud: h.did,
            keypair: await Secp256k1Keypair.create(),
          }),
        ),
      'BadJwtSignature',
    ],
    [
      'a token whose payload was changed after signing',
      async () => {
        const [head, , sig] = (
          await serviceToken({ iss: STRANGER, aud: h.did })
        ).split('.')
        const payload = b64url(claims({ iss: TEST_OWNER, aud: h.did }))
        return token(`${head}.${payload}.${sig}`)
      },
      'BadJwtSignature',
    ],
    [
      'a token with an empty signature',
      async () =>
        token(
          unsigned({ alg: 'ES256K' }, claims({ iss: STRANGER, aud: h.did })),
        ),
      'BadJwtSignature',
    ],
    [
      'alg none with an empty signature',
      async () =>
        token(
          unsigned(
            { alg: 'none', typ: 'JWT' },
            claims({ iss: TEST_OWNER, aud: h.did }),
          ),
        ),
      'BadJwtAlgorithm',
    ],
    [
      'an HS256 token',
      async () =>
        token(
          handJwt(
            { alg: 'HS256', typ: 'JWT' },
            claims({ iss: TEST_OWNER, aud: h.did }),
            { hmac: 'secret' },
          ),
        ),
      'BadJwtAlgorithm',
    ],
    [
      'a token without alg',
      async () => token(signedBy(STRANGER, { aud: h.did }, { typ: 'JWT' })),
      'BadJwtAlgorithm',
    ],
    [
      'an ES256 (P-256) header on a secp256k1 signature',
      async () =>
        token(signedBy(STRANGER, { aud: h.did }, { typ: 'JWT', alg: 'ES256' })),
      'BadJwtSignature',
    ],
    [
      'an OAuth access token (typ at+jwt)',
      async () =>
        token(
          signedBy(STRANGER, { aud: h.did }, { typ: 'at+jwt', alg: 'ES256K' }),
        ),
      'BadJwtType',
    ],
    [
      'a DPoP proof (typ dpop+jwt)',
      async () =>
        token(
          signedBy(
            STRANGER,
            { aud: h.did },
            { typ: 'dpop+jwt', alg: 'ES256K' },
          ),
        ),
      'BadJwtType',
    ],
    [
      'a token whose issuer is not in the PLC directory',
      async () => {
        const gone = 'did:plc:authgone0000000000000000'
        const t = await serviceToken({ iss: gone, aud: h.did })
        forget(gone)
        return token(t)
      },
      'BadJwtIssuer',
    ],
    [
      'a token whose issuer is a did:web that does not answer',
      async () =>
        token(
          handJwt(
            { alg: 'ES256K' },
            claims({ iss: 'did:web:localhost%3A1', aud: h.did }),
            { keypair: await Secp256k1Keypair.create() },
          ),
        ),
      'BadJwtIssuer',
    ],
    [
      'a token whose iss is not a DID',
      async () =>
        token(
          handJwt({ alg: 'ES256K' }, claims({ iss: 'alice', aud: h.did }), {
            keypair: await identity(STRANGER),
          }),
        ),
      'BadJwtIss',
    ],
    [
      'a token whose iss has an empty fragment',
      async () =>
        token(
          handJwt(
            { alg: 'ES256K' },
            claims({ iss: `${STRANGER}#`, aud: h.did }),
            { keypair: await identity(STRANGER) },
          ),
        ),
      'BadJwtIss',
    ],
  ]

  it('refuses a write without credentials with 401 AuthRequired, writing nothing', async () => {
    const before = await snapshot(h)
    const put = await xrpc(h.url, GET_BLOB, {
      did: TEST_OWNER,
      cid: freshDigest,
      method: 'PUT',
      repo: 'auth/push',
    })
    expectXrpcError(put, 401, 'AuthRequired')
    expect(await snapshot(h)).toEqual(before)
    await expectZeroStats(h, TEST_OWNER, 'auth/push')
  })

  it.each(cases)(
    'refuses %s with 401 and the specific error name, counting and writing nothing',
    async (_name, build, error) => {
      await expectRefused(await build(), error)
    },
  )

  it('says what failed in the message, not only in the error name', async () => {
    const expired = await serviceToken({
      iss: STRANGER,
      aud: h.did,
      exp: NOW() - 30,
    })
    const { put } = await attempt(`Bearer ${expired}`)
    expect((put.body as { message: string }).message).toMatch(/expired/)
    const wrongLxm = await serviceToken({
      iss: STRANGER,
      aud: h.did,
      lxm: ids.HoldRequestCrew,
    })
    const res = await attempt(`Bearer ${wrongLxm}`)
    expect((res.put.body as { message: string }).message).toContain(
      ids.HoldRequestCrew,
    )
  })
})

describe('service auth: tokens that are accepted', () => {
  let h: TestHold
  let other: TestHold
  let stored: string

  beforeAll(async () => {
    ;[h, other] = await Promise.all([
      startHold({
        env: {
          HOLD_PUBLIC: 'false',
          HOLD_STATS_FLUSH_MS: '3600000',
          // Lets it resolve the other hold's did:web:localhost%3A<port>.
          HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
        },
      }),
      startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } }),
    ])
    stored = (await pushBlob(h.url, randomBytes(100), { did: TEST_OWNER }))
      .digest
  })
  afterAll(async () => {
    await Promise.all([h.stop(), other.stop()])
    await Promise.all([removeDir(h.dataDir), removeDir(other.dataDir)])
  })

  const putUrl = (authorization: string, cid = stored) =>
    xrpc<{ url: string; error?: string; message?: string }>(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid, method: 'PUT' },
      { headers: { authorization } },
    )

  it('accepts the owner’s token without lxm', async () => {
    const t = await serviceToken({ iss: TEST_OWNER, aud: h.did, lxm: null })
    expect(
      JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString()),
    ).not.toHaveProperty('lxm')
    const res = await putUrl(`Bearer ${t}`)
    expect(res.status).toBe(200)
    expect(res.body.url).toMatch(/^http:\/\/localhost:\d+\/blobs\/sha256\//)
  })

  it('accepts a token valid for 59 minutes, just inside the one-hour limit', async () => {
    const t = await serviceToken({
      iss: TEST_OWNER,
      aud: h.did,
      exp: NOW() + 59 * 60,
    })
    expect((await putUrl(`Bearer ${t}`)).status).toBe(200)
  })

  it('takes an iss with a #fragment (did#atcr_hold) as the DID before the fragment', async () => {
    const t = await signedBy(`${TEST_OWNER}#atcr_hold`, {
      aud: h.did,
      lxm: GET_BLOB,
    })
    // Only the owner may ask for a PUT URL on this hold, so 200 means the caller is the owner.
    expect((await putUrl(`Bearer ${t}`)).status).toBe(200)
    const stranger = await signedBy(
      'did:plc:authfragment000000000000#atcr_hold',
      {
        aud: h.did,
      },
    )
    const denied = await putUrl(`Bearer ${stranger}`)
    expectXrpcError(denied, 403, 'Forbidden')
    expect(denied.body.message).toBe(
      'access denied for blob:write: not a crew member',
    )
  })

  it('resolves a did:web issuer on localhost over http with HOLD_DEV_ALLOW_LOCAL_DIDS: another hold as a crew member of this one', async () => {
    const token = () =>
      createServiceJwt({
        iss: other.did,
        aud: h.did,
        lxm: GET_BLOB,
        keypair: other.hold.ctx.keypair,
      })
    expect(other.did).toMatch(/^did:web:localhost%3A\d+$/)
    const bytes = randomBytes(500)
    const cid = `sha256:${sha256Hex(bytes)}`
    // Authenticated (not 401) but not yet crew.
    const before = await putUrl(`Bearer ${await token()}`, cid)
    expectXrpcError(before, 403, 'Forbidden')
    expect(before.body.message).toContain('not a crew member')

    const added = await addCrew(h, other.did, ['blob:read', 'blob:write'], {
      as: TEST_OWNER,
    })
    expect(added.status).toBe(200)
    const signed = await putUrl(`Bearer ${await token()}`, cid)
    expect(signed.status).toBe(200)
    const put = await fetch(signed.body.url, { method: 'PUT', body: bytes })
    expect(put.status).toBe(201)
    const read = await xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid },
      { headers: { authorization: `Bearer ${await token()}` } },
    )
    expect(read.status).toBe(200)
  })

  it('does not resolve a did:web over http when its host is not localhost', async () => {
    // A hold whose public URL is http://127.0.0.1:<port> serves a valid DID document for
    // did:web:127.0.0.1%3A<port>, but only over http, which even HOLD_DEV_ALLOW_LOCAL_DIDS
    // allows for localhost alone.
    const port = await freePort()
    const ipHold = await startHold({
      port,
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_PUBLIC_URL: `http://127.0.0.1:${port}`,
      },
    })
    try {
      expect(ipHold.did).toBe(`did:web:127.0.0.1%3A${port}`)
      const doc = await fetch(`http://127.0.0.1:${port}/.well-known/did.json`)
      expect(doc.status).toBe(200)
      expect(((await doc.json()) as { id: string }).id).toBe(ipHold.did)
      const t = await createServiceJwt({
        iss: ipHold.did,
        aud: h.did,
        lxm: GET_BLOB,
        keypair: ipHold.hold.ctx.keypair,
      })
      expectXrpcError(await putUrl(`Bearer ${t}`), 401, 'BadJwtIssuer')
    } finally {
      await ipHold.stop()
      await removeDir(ipHold.dataDir)
    }
  })

  it('accepts a token signed with a rotated key at once, though the old key is cached, and then refuses the old key', async () => {
    const did = 'did:plc:authrotating0000000000000'
    await addCrew(h, did, ['blob:read'], { as: TEST_OWNER, role: 'read' })
    const read = async (keypair?: Secp256k1Keypair) =>
      xrpc(
        h.url,
        GET_BLOB,
        { did: TEST_OWNER, cid: stored, method: 'GET' },
        {
          headers: {
            authorization: `Bearer ${await serviceToken({ iss: did, aud: h.did, keypair })}`,
          },
        },
      )
    const oldKey = await identity(did)
    // Warm the hold's DID cache with the old key.
    expect((await read()).status).toBe(200)
    const newKey = await rotateKey(did)
    expect(newKey.did()).not.toBe(oldKey.did())
    expect((await read(newKey)).status).toBe(200)
    expect((await read(newKey)).status).toBe(200)
    expectXrpcError(await read(oldKey), 401, 'BadJwtSignature')
  })
})

describe('service auth: resolving an issuer fetches nothing but its DID document', () => {
  let h: TestHold
  let recorder: Server
  let port: number
  const seen: string[] = []

  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
      },
    })
    // A local service that records every request it gets and has no DID document.
    recorder = createServer((req, res) => {
      seen.push(req.url ?? '')
      res.writeHead(404).end()
    })
    await new Promise<void>((resolve) =>
      recorder.listen(0, '127.0.0.1', resolve),
    )
    port = (recorder.address() as AddressInfo).port
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
    await new Promise((resolve) => recorder.close(resolve))
  })

  const tryIssuer = async (iss: string) => {
    const t = await handJwt({ alg: 'ES256K' }, claims({ iss, aud: h.did }), {
      keypair: await Secp256k1Keypair.create(),
    })
    return xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: `sha256:${'0'.repeat(64)}`, method: 'GET' },
      { headers: { authorization: `Bearer ${t}` } },
    )
  }

  it('asks a localhost did:web for /.well-known/did.json (and refuses it when there is none)', async () => {
    seen.length = 0
    expectXrpcError(
      await tryIssuer(`did:web:localhost%3A${port}`),
      401,
      'BadJwtIssuer',
    )
    expect(seen).toEqual(['/.well-known/did.json'])
  })

  it.each([
    ['%2Fadmin%2Fdelete%3Fall%3D1%23', 'a path and query'],
    ['%2Finternal%23', 'a path'],
    ['%3Fx%3D', 'a query'],
    ['%2F..%2F..%2Fsecret%23', 'a path climbing with ..'],
  ])(
    'does not let a did:web issuer ending in %s choose %s to fetch',
    async (suffix) => {
      seen.length = 0
      const res = await tryIssuer(`did:web:localhost%3A${port}${suffix}`)
      expectXrpcError(res, 401, 'BadJwtIssuer')
      expect(seen).toEqual([])
    },
  )
})
