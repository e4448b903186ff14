import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  addressFromHeader,
  normalizeAddress,
} from '../src/auth/client-address.ts'
import { envToCfg, readEnv } from '../src/config.ts'
import {
  GET_BLOB,
  awayFromMinuteBoundary,
  getStats,
  sha256Hex,
} from './_access.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

describe('the client address in a proxy header', () => {
  it.each([
    ['203.0.113.9', 1, '203.0.113.9'],
    // Whatever the client wrote comes first; the proxy appends the address it saw.
    ['6.6.6.6, 203.0.113.9', 1, '203.0.113.9'],
    ['6.6.6.6,7.7.7.7,203.0.113.9', 1, '203.0.113.9'],
    // Two proxies that both append (a CDN, then a load balancer): the client is second from the right.
    ['6.6.6.6, 203.0.113.9, 198.51.100.1', 2, '203.0.113.9'],
    // Fewer entries than hops: the leftmost is the farthest a trusted proxy could have written.
    ['203.0.113.9', 2, '203.0.113.9'],
    ['203.0.113.9:51234', 1, '203.0.113.9'],
    ['[2001:db8:1:2::7]:443', 1, '2001:db8:1:2::/64'],
    ['::ffff:203.0.113.9', 1, '203.0.113.9'],
    ['2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd', 1, '2001:db8:1:2::/64'],
    ['2001:db8::1', 1, '2001:db8:0:0::/64'],
    ['::1', 1, '0:0:0:0::/64'],
    ['fe80::1%eth0', 1, 'fe80:0:0:0::/64'],
  ])('%s with %i hop(s) is %s', (value, hops, expected) => {
    expect(addressFromHeader(value, hops)).toBe(expected)
  })

  it.each(['unknown', '', 'not an address', '1.2.3', '6.6.6.6, nonsense'])(
    '%j names no address',
    (value) => {
      expect(addressFromHeader(value, 1)).toBeUndefined()
    },
  )

  it('one host’s IPv6 addresses are one client, another /64 is another', () => {
    expect(normalizeAddress('2001:db8:1:2::1')).toBe(
      normalizeAddress('2001:db8:1:2:ffff:ffff:ffff:ffff'),
    )
    expect(normalizeAddress('2001:db8:1:3::1')).not.toBe(
      normalizeAddress('2001:db8:1:2::1'),
    )
  })

  it('HOLD_TRUSTED_PROXY_HOPS defaults to 1 and must be a whole number from 1', () => {
    expect(envToCfg(readEnv({})).trustedProxyHops).toBe(1)
    expect(
      envToCfg(readEnv({ HOLD_TRUSTED_PROXY_HOPS: '2' })).trustedProxyHops,
    ).toBe(2)
    for (const bad of ['0', '-1', 'two', '1.5']) {
      expect(() => envToCfg(readEnv({ HOLD_TRUSTED_PROXY_HOPS: bad }))).toThrow(
        /HOLD_TRUSTED_PROXY_HOPS/,
      )
    }
  })
})

describe('per-client count limit behind a proxy (HOLD_STATS_MAX_PER_MINUTE=5)', () => {
  const limits = {
    HOLD_STATS_MAX_PER_MINUTE: '5',
    HOLD_STATS_FLUSH_MS: '3600000',
  }
  let xff: TestHold
  let twoHops: TestHold
  let fly: TestHold
  const blob = randomBytes(128)
  const cid = `sha256:${sha256Hex(blob)}`

  beforeAll(async () => {
    ;[xff, twoHops, fly] = await Promise.all([
      startHold({
        env: { ...limits, HOLD_TRUSTED_PROXY_HEADER: 'X-Forwarded-For' },
      }),
      startHold({
        env: {
          ...limits,
          HOLD_TRUSTED_PROXY_HEADER: 'X-Forwarded-For',
          HOLD_TRUSTED_PROXY_HOPS: '2',
        },
      }),
      startHold({
        env: { ...limits, HOLD_TRUSTED_PROXY_HEADER: 'Fly-Client-IP' },
      }),
    ])
    for (const h of [xff, twoHops, fly]) {
      expect((await pushBlob(h.url, blob, { did: TEST_OWNER })).status).toBe(
        201,
      )
    }
  })
  afterAll(async () => {
    await Promise.all([xff, twoHops, fly].map((h) => h.stop()))
    await Promise.all([xff, twoHops, fly].map((h) => removeDir(h.dataDir)))
  })

  const pull = (h: TestHold, repo: string, headers: Record<string, string>) =>
    xrpc(h.url, GET_BLOB, { did: TEST_OWNER, cid, repo }, { headers })

  it('a client that writes a new leftmost X-Forwarded-For each time is still one client', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      const res = await pull(xff, 'proxy/spoof', {
        'x-forwarded-for': `10.9.${i}.1, 203.0.113.7`,
      })
      expect(res.status).toBe(200)
    }
    expect((await getStats(xff, TEST_OWNER, 'proxy/spoof')).pullCount).toBe(5)
  })

  it('two addresses the proxy appended are two clients', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      for (const ip of ['203.0.113.21', '203.0.113.22']) {
        const res = await pull(xff, 'proxy/two', {
          'x-forwarded-for': `10.0.0.${i}, ${ip}`,
        })
        expect(res.status).toBe(200)
      }
    }
    expect((await getStats(xff, TEST_OWNER, 'proxy/two')).pullCount).toBe(10)
  })

  it('with two hops, the address before the last proxy’s is the client', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      // The last entry is the CDN's address as the load balancer saw it: the same for everyone.
      for (const ip of ['203.0.113.31', '203.0.113.32']) {
        const res = await pull(twoHops, 'proxy/hops', {
          'x-forwarded-for': `10.0.${i}.1, ${ip}, 198.51.100.1`,
        })
        expect(res.status).toBe(200)
      }
    }
    expect((await getStats(twoHops, TEST_OWNER, 'proxy/hops')).pullCount).toBe(
      10,
    )
  })

  it('a single-valued header such as Fly-Client-IP is the client, X-Forwarded-For is ignored', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      const res = await pull(fly, 'proxy/fly', {
        'fly-client-ip': '203.0.113.41',
        'x-forwarded-for': `10.1.${i}.1`,
      })
      expect(res.status).toBe(200)
    }
    expect((await getStats(fly, TEST_OWNER, 'proxy/fly')).pullCount).toBe(5)
  })

  it('addresses of one IPv6 /64 share a budget', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      const res = await pull(fly, 'proxy/v6', {
        'fly-client-ip': `2001:db8:aa:bb::${(i + 1).toString(16)}`,
      })
      expect(res.status).toBe(200)
    }
    expect((await getStats(fly, TEST_OWNER, 'proxy/v6')).pullCount).toBe(5)
  })
})
