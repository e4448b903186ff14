import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { expectXrpcError, getStats } from './_access.ts'
import { bearer } from './_identity.ts'
import {
  ownerAuth,
  pushBlob,
  removeDir,
  startHold,
  TEST_OWNER,
  type TestHold,
} from './_util.ts'

// getBlob answers requests without credentials without reading the request's headers through
// the fetch API, and CORS sets its header on the Node response: what a client sees is the same.
describe.each([
  ['public', 'true'],
  ['private', 'false'],
])('getBlob on a %s hold, with and without credentials', (_, HOLD_PUBLIC) => {
  const isPublic = HOLD_PUBLIC === 'true'
  let h: TestHold
  let digest: string
  const blob = Buffer.from('fast path test blob')

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_PUBLIC, HOLD_STATS_FLUSH_MS: '3600000' },
    })
    const pushed = await pushBlob(h.url, blob, { did: TEST_OWNER })
    expect(pushed.status).toBe(201)
    digest = pushed.digest
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  const get = (
    params: Record<string, string>,
    headers: Record<string, string> = {},
  ) => {
    const url = new URL(`/xrpc/${ids.SyncGetBlob}`, h.url)
    for (const [k, v] of Object.entries({
      did: TEST_OWNER,
      cid: digest,
      ...params,
    })) {
      url.searchParams.set(k, v)
    }
    return fetch(url, {
      headers: { origin: 'https://atcr.example', ...headers },
    })
  }
  const body = async (res: Response) => ({
    status: res.status,
    body: (await res.json()) as unknown,
  })

  it('answers a signed URL without credentials only when public, with one CORS header and JSON', async () => {
    const res = await get({ method: 'GET', repo: 'fast/anon' })
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    if (isPublic) {
      expect(res.status).toBe(200)
      const { url } = (await res.json()) as { url: string }
      const bytes = await fetch(url)
      expect(Buffer.from(await bytes.arrayBuffer())).toEqual(blob)
      expect((await getStats(h, TEST_OWNER, 'fast/anon')).pullCount).toBe(1)
    } else {
      expectXrpcError(await body(res), 401, 'AuthRequired')
      expect((await getStats(h, TEST_OWNER, 'fast/anon')).pullCount).toBe(0)
    }
  })

  it('answers the bytes without credentials only when public, with the CORS header and the length', async () => {
    const res = await get({ repo: 'fast/bytes' })
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    if (isPublic) {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-length')).toBe(String(blob.length))
      expect(Buffer.from(await res.arrayBuffer())).toEqual(blob)
    } else {
      expectXrpcError(await body(res), 401, 'AuthRequired')
    }
  })

  it('treats an empty Authorization header as no credentials', async () => {
    const res = await get({ method: 'GET' }, { authorization: '' })
    if (isPublic) expect(res.status).toBe(200)
    else expectXrpcError(await body(res), 401, 'AuthRequired')
  })

  it("verifies a token when one is given, and counts the owner's pull", async () => {
    const ok = await get(
      { method: 'GET', repo: 'fast/token' },
      await ownerAuth(h.url, { lxm: ids.SyncGetBlob }),
    )
    expect(ok.status).toBe(200)
    expect(ok.headers.get('access-control-allow-origin')).toBe('*')
    expect((await getStats(h, TEST_OWNER, 'fast/token')).pullCount).toBe(1)
    // A token for another method is refused even where anyone may read.
    const wrong = await get(
      { method: 'GET', repo: 'fast/token' },
      await bearer({ iss: TEST_OWNER, aud: h.did, lxm: ids.HoldGetStats }),
    )
    expectXrpcError(await body(wrong), 401)
    expect(wrong.headers.get('access-control-allow-origin')).toBe('*')
    const garbage = await get({ method: 'GET' }, { authorization: 'Bearer x' })
    expectXrpcError(await body(garbage), 401)
    expect((await getStats(h, TEST_OWNER, 'fast/token')).pullCount).toBe(1)
  })

  it('answers a bad parameter with a 400 that carries the CORS header', async () => {
    const res = await get({ method: 'GET', cid: 'nope' })
    expectXrpcError(await body(res), 400, 'InvalidRequest')
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
  })
})
