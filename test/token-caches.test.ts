import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  ServiceAuth,
  type ServiceAuthLimits,
} from '../src/auth/service-auth.ts'
import { Lru } from '../src/lru.ts'
import { plcDocument } from './_identity.ts'
import { AuthRequiredError } from '../src/errors.ts'

const HOLD = 'did:web:hold.caches.test'
const NSID = ids.SyncGetBlob

/** A PLC-compatible directory with real keys that counts how often each DID is asked for. */
class CountingPlc {
  readonly keys = new Map<string, Keypair>()
  readonly asked = new Map<string, number>()
  private server!: Server
  url = ''

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const did = decodeURIComponent((req.url ?? '/').slice(1))
      this.asked.set(did, (this.asked.get(did) ?? 0) + 1)
      const key = this.keys.get(did)
      if (!key) {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(JSON.stringify(plcDocument(did, key)))
    })
    await new Promise<void>((resolve) =>
      this.server.listen(0, '127.0.0.1', resolve),
    )
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  async register(did: string): Promise<Keypair> {
    const key = await Secp256k1Keypair.create()
    this.keys.set(did, key)
    return key
  }

  count(did: string): number {
    return this.asked.get(did) ?? 0
  }
}

const plc = new CountingPlc()
beforeAll(() => plc.start())
afterAll(() => plc.stop())

/** The caches' clock, moved forward by tests instead of waiting. */
let skew = 0
const later = (ms: number) => (skew += ms)
beforeEach(() => {
  skew = 0
})

const auth = (limits: Partial<ServiceAuthLimits> = {}) =>
  new ServiceAuth({
    ownDid: HOLD,
    plcUrl: plc.url,
    limits,
    now: () => Date.now() + skew,
  })

const bearer = async (iss: string, keypair: Keypair) =>
  `Bearer ${await createServiceJwt({ iss, aud: HOLD, lxm: NSID, keypair })}`

/** The XRPC error name verify fails with, or 'ok'. */
const outcome = async (a: ServiceAuth, authorization: string) => {
  try {
    await a.verify(authorization, NSID)
    return 'ok'
  } catch (err) {
    if (err instanceof AuthRequiredError) return err.error
    throw err
  }
}

let seq = 0
const newDid = () => `did:plc:caches${String(seq++).padStart(18, '0')}`

describe('Lru', () => {
  it('keeps at most maxEntries, dropping the least recently used', () => {
    const lru = new Lru<string, number>({ maxEntries: 3 })
    lru.set('a', 1)
    lru.set('b', 2)
    lru.set('c', 3)
    expect(lru.get('a')).toBe(1)
    lru.set('d', 4)
    expect([...['a', 'b', 'c', 'd']].map((k) => lru.peek(k))).toEqual([
      1,
      undefined,
      3,
      4,
    ])
    expect(lru.size).toBe(3)
  })

  it('keeps the total weight within maxWeight and refuses an entry heavier than all of it', () => {
    const lru = new Lru<string, string>({
      maxEntries: Infinity,
      maxWeight: 10,
      weigh: (_k, v) => v.length,
    })
    lru.set('a', 'xxxx')
    lru.set('b', 'xxxx')
    lru.set('c', 'xxxx')
    expect(lru.peek('a')).toBeUndefined()
    expect(lru.totalWeight).toBe(8)
    lru.set('b', 'x')
    expect(lru.totalWeight).toBe(5)
    lru.set('huge', 'x'.repeat(11))
    expect(lru.peek('huge')).toBeUndefined()
    expect(lru.totalWeight).toBe(5)
    expect(lru.delete('c')).toBe(true)
    expect(lru.totalWeight).toBe(1)
  })
})

describe('the DID document cache is bounded', () => {
  it('evicts the least recently used documents past its byte budget, so an old issuer is asked for again', async () => {
    // About three documents' worth.
    const a = auth({ didCacheBytes: 3 * 1000 })
    const dids = Array.from({ length: 6 }, newDid)
    const keys = await Promise.all(dids.map((d) => plc.register(d)))
    for (let i = 0; i < dids.length; i++) {
      expect(await outcome(a, await bearer(dids[i], keys[i]))).toBe('ok')
    }
    expect(a.didCache.size).toBeLessThanOrEqual(3)
    expect(a.didCache.size).toBeGreaterThan(0)
    expect(plc.count(dids[0])).toBe(1)
    expect(await outcome(a, await bearer(dids[0], keys[0]))).toBe('ok')
    expect(plc.count(dids[0])).toBe(2)
    // The most recent one is still cached.
    expect(await outcome(a, await bearer(dids[5], keys[5]))).toBe('ok')
    expect(plc.count(dids[5])).toBe(1)
  })

  it('holds any number of issuers within its budget', async () => {
    const a = auth({ didCacheBytes: 10_000 })
    for (let i = 0; i < 30; i++) {
      const did = newDid()
      await a.verify(await bearer(did, await plc.register(did)), NSID)
    }
    expect(a.didCache.size).toBeGreaterThan(5)
    expect(a.didCache.size).toBeLessThan(30)
  })
})

describe('a failed token is refused again without being verified again', () => {
  it('asks the directory once for a token naming an unknown DID, however often it is replayed', async () => {
    const a = auth()
    const did = newDid()
    const t = await bearer(did, await Secp256k1Keypair.create())
    for (let i = 0; i < 10; i++) {
      expect(await outcome(a, t)).toBe('BadJwtIssuer')
    }
    expect(plc.count(did)).toBe(1)
  })

  it('keeps the refusal only for failedTtlMs: the same token is verified afresh after it', async () => {
    const a = auth({ failedTtlMs: 20_000 })
    const did = newDid()
    const key = await Secp256k1Keypair.create()
    const t = await bearer(did, key)
    expect(await outcome(a, t)).toBe('BadJwtIssuer')
    plc.keys.set(did, key)
    expect(await outcome(a, t)).toBe('BadJwtIssuer')
    later(20_001)
    expect(await outcome(a, t)).toBe('ok')
  })

  it('keeps the message and error name of the refusal', async () => {
    const a = auth()
    const did = newDid()
    await plc.register(did)
    const forged = await bearer(did, await Secp256k1Keypair.create())
    const refusals = []
    for (let i = 0; i < 2; i++) {
      refusals.push(
        await a.verify(forged, NSID).catch((err: AuthRequiredError) => ({
          error: err.error,
          message: err.message,
        })),
      )
    }
    expect(refusals[0]).toEqual({
      error: 'BadJwtSignature',
      message: 'jwt signature does not match jwt issuer',
    })
    expect(refusals[1]).toEqual(refusals[0])
  })
})

describe('forced refreshes of a DID document are at most one per interval', () => {
  it('fetches a real DID at most twice for any number of forged tokens naming it', async () => {
    const a = auth()
    const did = newDid()
    const key = await plc.register(did)
    expect(await outcome(a, await bearer(did, key))).toBe('ok')
    expect(plc.count(did)).toBe(1)
    for (let i = 0; i < 10; i++) {
      const forged = await bearer(did, await Secp256k1Keypair.create())
      expect(await outcome(a, forged)).toBe('BadJwtSignature')
    }
    expect(plc.count(did)).toBe(2)
    // The real issuer is unaffected.
    expect(await outcome(a, await bearer(did, key))).toBe('ok')
  })

  it('still takes a rotated key at once, and again after the interval', async () => {
    const a = auth()
    const did = newDid()
    expect(await outcome(a, await bearer(did, await plc.register(did)))).toBe(
      'ok',
    )
    expect(await outcome(a, await bearer(did, await plc.register(did)))).toBe(
      'ok',
    )
    // A second rotation within the interval waits for it.
    const third = await plc.register(did)
    expect(await outcome(a, await bearer(did, third))).toBe('BadJwtSignature')
    later(59_000)
    expect(await outcome(a, await bearer(did, third))).toBe('BadJwtSignature')
    later(1_000)
    expect(await outcome(a, await bearer(did, third))).toBe('ok')
  })

  it('remembers at most refreshedMax DIDs', async () => {
    const a = auth({ refreshedMax: 2 })
    const dids = Array.from({ length: 3 }, newDid)
    for (const did of dids) {
      await plc.register(did)
      const forged = await bearer(did, await Secp256k1Keypair.create())
      expect(await outcome(a, forged)).toBe('BadJwtSignature')
    }
    // The first DID's refresh was forgotten, so a new forged token may refresh it again.
    const before = plc.count(dids[0])
    const forged = await bearer(dids[0], await Secp256k1Keypair.create())
    expect(await outcome(a, forged)).toBe('BadJwtSignature')
    expect(plc.count(dids[0])).toBe(before + 1)
    const last = dids[2]
    const stillLimited = plc.count(last)
    expect(
      await outcome(a, await bearer(last, await Secp256k1Keypair.create())),
    ).toBe('BadJwtSignature')
    expect(plc.count(last)).toBe(stillLimited)
  })
})
