import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  GET_BLOB,
  expectXrpcError,
  expectZeroStats,
  filesUnder,
  raw,
  sha256Hex,
  snapshot,
} from './_access.ts'
import { bearer } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

describe('limits and headers', () => {
  let small: TestHold
  const body = randomBytes(3000)

  beforeAll(async () => {
    small = await startHold({
      env: { HOLD_MAX_BLOB_BYTES: '1000', HOLD_STATS_FLUSH_MS: '3600000' },
    })
    expect((await pushBlob(small.url, body.subarray(0, 1000))).status).toBe(201)
  })
  afterAll(async () => {
    await small.stop()
    await removeDir(small.dataDir)
  })

  const headersOf = (res: { headers: Headers }) => ({
    nosniff: res.headers.get('x-content-type-options'),
    disposition: res.headers.get('content-disposition'),
    csp: res.headers.get('content-security-policy'),
  })

  it('sends blobs with nosniff, content-disposition: attachment and a sandbox CSP, however they are fetched', async () => {
    const cid = `sha256:${sha256Hex(body.subarray(0, 1000))}`
    const base = `${small.url}/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=${cid}`
    const signed = await xrpc<{ url: string }>(small.url, GET_BLOB, {
      did: TEST_OWNER,
      cid,
      method: 'GET',
    })
    const responses = [
      await fetch(base),
      await fetch(base, { method: 'HEAD' }),
      await fetch(base, { headers: { range: 'bytes=10-20' } }),
      await fetch(signed.body.url),
      await fetch(signed.body.url, { headers: { range: 'bytes=0-0' } }),
    ]
    for (const res of responses) {
      await res.arrayBuffer()
      expect(res.status).toBeLessThan(300)
      const h = headersOf(res)
      expect(h.nosniff).toBe('nosniff')
      expect(h.disposition).toMatch(/^attachment/)
      expect(h.csp).toMatch(/sandbox/)
      expect(h.csp).toMatch(/default-src 'none'/)
    }
  })

  const uploadUrl = async (bytes: Uint8Array, repo = 'limits/app') => {
    const signed = await xrpc<{ url: string }>(
      small.url,
      GET_BLOB,
      {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(bytes)}`,
        method: 'PUT',
        repo,
      },
      {
        headers: await bearer({
          iss: TEST_OWNER,
          aud: small.did,
          lxm: GET_BLOB,
        }),
      },
    )
    expect(signed.status).toBe(200)
    return new URL(signed.body.url)
  }

  it.each([
    ['with content-length', false],
    ['chunked, without content-length', true],
  ])(
    'refuses an upload over HOLD_MAX_BLOB_BYTES %s with 413 and stores nothing',
    async (_name, chunked) => {
      const bytes = body.subarray(0, 1001 + (chunked ? 1500 : 0))
      const url = await uploadUrl(bytes)
      const before = await snapshot(small)
      const res = await raw(small.url, {
        method: 'PUT',
        path: url.pathname + url.search,
        body: Buffer.from(bytes),
        chunked,
      })
      expectXrpcError(res, 413, 'PayloadTooLarge')
      expect(await snapshot(small)).toEqual(before)
      expect(await filesUnder(join(small.dataDir, 'blobs', 'tmp'))).toEqual([])
      await expectZeroStats(small, TEST_OWNER, 'limits/app')
      const missing = await xrpc(small.url, GET_BLOB, {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(bytes)}`,
      })
      expect(missing.status).toBe(404)
    },
  )

  it('takes an upload of exactly HOLD_MAX_BLOB_BYTES, chunked', async () => {
    const bytes = randomBytes(1000)
    const url = await uploadUrl(bytes, 'limits/exact')
    const res = await raw(small.url, {
      method: 'PUT',
      path: url.pathname + url.search,
      body: bytes,
      chunked: true,
    })
    expect(res.status).toBe(201)
    expect(
      (
        await xrpc<{ pushCount: number }>(small.url, ids.HoldGetStats, {
          did: TEST_OWNER,
          repo: 'limits/exact',
        })
      ).body.pushCount,
    ).toBe(1)
  })

  it('answers a CORS preflight and a cross-origin GET of getStats with access-control-allow-origin: *', async () => {
    const path = `${small.url}/xrpc/${ids.HoldGetStats}?did=${TEST_OWNER}&repo=limits/app`
    const preflight = await fetch(path, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://atcr.example',
        'access-control-request-method': 'GET',
      },
    })
    expect(preflight.status).toBeLessThan(300)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*')
    expect(preflight.headers.get('access-control-allow-methods')).toContain(
      'GET',
    )
    const get = await fetch(path, {
      headers: { origin: 'https://atcr.example' },
    })
    expect(get.status).toBe(200)
    expect(get.headers.get('access-control-allow-origin')).toBe('*')
    const error = await fetch(`${small.url}/xrpc/${ids.HoldGetStats}?did=x`, {
      headers: { origin: 'https://atcr.example' },
    })
    expect(error.status).toBe(400)
    expect(error.headers.get('access-control-allow-origin')).toBe('*')
  })
})
