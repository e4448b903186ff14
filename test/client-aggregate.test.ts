// getAggregatedStats over live holds: sums, partial results, the cache and shared requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HoldClient, type Did } from '../src/client/index.ts'
import { startFront, type Front } from './_front.ts'
import { pushBlob, startHold, TEST_OWNER, type TestHold } from './_util.ts'

const OWNER = TEST_OWNER as Did
const REPO = 'agg/app'

let holds: TestHold[]
let fronts: Front[]
let dids: string[]

const statsAsked = () =>
  fronts.reduce(
    (n, f) => n + f.seen.filter((s) => s === 'io.atcr.hold.getStats').length,
    0,
  )

beforeAll(async () => {
  holds = await Promise.all([startHold(), startHold(), startHold()])
  // Each hold is reached through a front, which counts the requests it gets.
  fronts = await Promise.all(holds.map((h) => startFront(h.url)))
  dids = fronts.map((f) => f.did)
  // Hold i gets i+1 pulls and one push of (OWNER, REPO).
  for (const [i, h] of holds.entries()) {
    const { digest } = await pushBlob(h.url, new Uint8Array([i, 1, 2]), {
      did: OWNER,
      repo: REPO,
    })
    for (let n = 0; n <= i; n++) {
      const url = new URL('/xrpc/com.atproto.sync.getBlob', h.url)
      url.search = new URLSearchParams({
        did: OWNER,
        cid: digest,
        repo: REPO,
      }).toString()
      await (await fetch(url)).arrayBuffer()
    }
  }
})
afterAll(async () => {
  await Promise.all(fronts.map((f) => f.close()))
  await Promise.all(holds.map((h) => h.stop()))
})

const fresh = (opts: ConstructorParameters<typeof HoldClient>[0] = {}) =>
  new HoldClient({ allowHttpLocalhost: true, retryMinMs: 10, ...opts })

describe('getAggregatedStats', () => {
  it('sums the counts of every hold and takes the latest lastPull and lastPush', async () => {
    const c = fresh()
    const agg = await c.getAggregatedStats(OWNER, REPO, dids)
    expect(agg.failed).toEqual([])
    expect(agg.pullCount).toBe(1 + 2 + 3)
    expect(agg.pushCount).toBe(3)
    const per = await Promise.all(
      dids.map((d) => c.getStats(d, { did: OWNER, repo: REPO })),
    )
    expect(agg.lastPull).toBe(
      per
        .map((s) => s.lastPull!)
        .sort()
        .at(-1),
    )
    expect(agg.lastPush).toBe(
      per
        .map((s) => s.lastPush!)
        .sort()
        .at(-1),
    )
    expect(agg.holds.map((h) => h.hold)).toEqual(dids)
  })

  it('a hold that times out is reported, and the others are summed', async () => {
    fronts[1]!.answer = () => ({ delayMs: 3000 })
    try {
      const c = fresh({ aggregateTimeoutMs: 300 })
      for (const d of dids) await c.resolveHold(d)
      const started = Date.now()
      const agg = await c.getAggregatedStats(OWNER, REPO, dids)
      expect(Date.now() - started).toBeLessThan(2000)
      expect(agg.failed).toEqual([dids[1]])
      const slow = agg.holds[1]!
      expect(slow.ok === false && slow.timedOut).toBe(true)
      expect(agg.pullCount).toBe(1 + 3)
    } finally {
      fronts[1]!.answer = () => 'forward'
    }
  })

  it('a hold that answers garbage or cannot be resolved is reported, not thrown', async () => {
    fronts[2]!.answer = () => ({ status: 200, body: '{"pullCount":"many"}' })
    try {
      const c = fresh()
      const agg = await c.getAggregatedStats(OWNER, REPO, [
        ...dids,
        'did:web:nothing.invalid',
      ])
      expect(agg.failed).toEqual([dids[2], 'did:web:nothing.invalid'])
      const errors = agg.holds.map((h) => (h.ok ? 'ok' : h.error.error))
      expect(errors).toEqual(['ok', 'ok', 'InvalidResponse', 'HoldNotResolved'])
      expect(agg.pullCount).toBe(1 + 2)
    } finally {
      fronts[2]!.answer = () => 'forward'
    }
  })

  it('is cached: a second call asks no hold, `fresh` asks again', async () => {
    const c = fresh()
    const first = await c.getAggregatedStats(OWNER, REPO, dids)
    const before = statsAsked()
    expect(await c.getAggregatedStats(OWNER, REPO, [...dids].reverse())).toBe(
      first,
    )
    expect(statsAsked()).toBe(before)
    await c.getAggregatedStats(OWNER, REPO, dids, { fresh: true })
    expect(statsAsked()).toBe(before + 3)
  })

  it('the cache expires after its TTL, sooner for a partial result', async () => {
    const c = fresh({ aggregateTtlMs: 60_000, aggregatePartialTtlMs: 100 })
    const partial = [...dids, 'did:web:nothing.invalid']
    await c.getAggregatedStats(OWNER, REPO, partial)
    await c.getAggregatedStats(OWNER, REPO, dids)
    await new Promise((r) => setTimeout(r, 150))
    const before = statsAsked()
    await c.getAggregatedStats(OWNER, REPO, dids)
    expect(statsAsked()).toBe(before)
    await c.getAggregatedStats(OWNER, REPO, partial)
    expect(statsAsked()).toBe(before + 3)
  })

  it('the cache is bounded: the least recently used result is dropped', async () => {
    const c = fresh({ aggregateCacheSize: 2 })
    for (const repo of ['r1', 'r2', 'r3']) {
      await c.getAggregatedStats(OWNER, repo, dids)
    }
    const before = statsAsked()
    await c.getAggregatedStats(OWNER, 'r3', dids)
    await c.getAggregatedStats(OWNER, 'r2', dids)
    expect(statsAsked()).toBe(before)
    await c.getAggregatedStats(OWNER, 'r1', dids)
    expect(statsAsked()).toBe(before + 3)
  })

  it('concurrent identical calls share one request per hold', async () => {
    const c = fresh()
    for (const d of dids) await c.resolveHold(d)
    const before = statsAsked()
    const results = await Promise.all(
      Array.from({ length: 10 }, () => c.getAggregatedStats(OWNER, REPO, dids)),
    )
    expect(statsAsked() - before).toBe(3)
    for (const r of results) expect(r).toBe(results[0])
  })
})
