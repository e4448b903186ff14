import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  GET_BLOB,
  awayFromMinuteBoundary,
  getStats,
  push,
  sha256Hex,
  tokenFor,
} from './_access.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

describe('count limit: HOLD_STATS_MAX_PER_MINUTE=5', () => {
  const env = { HOLD_STATS_MAX_PER_MINUTE: '5', HOLD_STATS_FLUSH_MS: '3600000' }
  let plain: TestHold
  let proxied: TestHold
  let unproxied: TestHold
  const blob = randomBytes(256)
  const cid = `sha256:${sha256Hex(blob)}`

  beforeAll(async () => {
    ;[plain, proxied, unproxied] = await Promise.all([
      startHold({ env }),
      startHold({
        env: { ...env, HOLD_TRUSTED_PROXY_HEADER: 'fly-client-ip' },
      }),
      startHold({ env }),
    ])
    for (const h of [plain, proxied, unproxied]) {
      expect((await pushBlob(h.url, blob, { did: TEST_OWNER })).status).toBe(
        201,
      )
    }
  })
  afterAll(async () => {
    await Promise.all([plain.stop(), proxied.stop(), unproxied.stop()])
    await Promise.all(
      [plain, proxied, unproxied].map((h) => removeDir(h.dataDir)),
    )
  })

  const pull = (h: TestHold, repo: string, headers: Record<string, string>) =>
    xrpc(h.url, GET_BLOB, { did: TEST_OWNER, cid, repo }, { headers })

  it('counts 5 of 8 pulls from one anonymous client, serves all 8 and reports 3 dropped', async () => {
    await awayFromMinuteBoundary()
    const dropped = plain.hold.ctx.limiter.dropped
    const results = []
    for (let i = 0; i < 8; i++) results.push(await pull(plain, 'lim/anon', {}))
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200))
    expect((await getStats(plain, TEST_OWNER, 'lim/anon')).pullCount).toBe(5)
    expect(plain.hold.ctx.limiter.dropped - dropped).toBe(3)
  })

  it('gives each authenticated caller its own 5', async () => {
    await awayFromMinuteBoundary()
    const a = 'did:plc:limitcallera000000000000'
    const b = 'did:plc:limitcallerb000000000000'
    const dropped = plain.hold.ctx.limiter.dropped
    for (let i = 0; i < 8; i++) {
      for (const did of [a, b]) {
        const res = await pull(
          plain,
          'lim/authed',
          await tokenFor(plain, did, GET_BLOB),
        )
        expect(res.status).toBe(200)
      }
    }
    expect((await getStats(plain, TEST_OWNER, 'lim/authed')).pullCount).toBe(10)
    expect(plain.hold.ctx.limiter.dropped - dropped).toBe(6)
  })

  it('limits pushes too: over the limit the blob is stored but the push is not counted', async () => {
    await awayFromMinuteBoundary()
    const auth = await tokenFor(plain, TEST_OWNER, GET_BLOB)
    for (let i = 0; i < 7; i++) {
      const { upload } = await push(plain, randomBytes(32), auth, 'lim/push')
      expect(upload?.status).toBe(201)
    }
    expect((await getStats(plain, TEST_OWNER, 'lim/push')).pushCount).toBe(5)
  })

  it('with HOLD_TRUSTED_PROXY_HEADER=fly-client-ip, two header values are two clients', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      for (const ip of ['203.0.113.1', '203.0.113.2']) {
        expect(
          (await pull(proxied, 'lim/proxy', { 'fly-client-ip': ip })).status,
        ).toBe(200)
      }
    }
    expect((await getStats(proxied, TEST_OWNER, 'lim/proxy')).pullCount).toBe(
      10,
    )
    expect(proxied.hold.ctx.limiter.dropped).toBe(6)
  })

  it('without HOLD_TRUSTED_PROXY_HEADER the header is ignored: one socket address is one client', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      const res = await pull(unproxied, 'lim/noproxy', {
        'fly-client-ip': `203.0.113.${i + 1}`,
      })
      expect(res.status).toBe(200)
    }
    expect(
      (await getStats(unproxied, TEST_OWNER, 'lim/noproxy')).pullCount,
    ).toBe(5)
    expect(unproxied.hold.ctx.limiter.dropped).toBe(3)
  })
})
