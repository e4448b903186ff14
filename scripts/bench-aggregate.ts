/**
 * getAggregatedStats over 10 local holds (`node scripts/bench-aggregate.ts [--holds 10]
 * [--rounds 300]`): real holds as child processes (scripts/lib.ts), each with pulls and a push
 * of one pair, and atcr-hold/client in this process.
 * - warm: the result is cached; the time of a call that the cache answers.
 * - cold: `fresh: true` (endpoints resolved, connections open): every hold is asked. Each
 *   round first asks all holds at once with plain fetch (the slowest answer is "slowest
 *   hold"), then makes the aggregated call; reports both, the per-round difference, and the
 *   call's time over the slowest of its own per-hold requests (HoldResult.ms).
 * - first: a new client per call, so the holds' DID documents are fetched too.
 * Targets (issue 15): warm p99 < 20 ms; cold within the slowest hold's time + 5 ms.
 */
import { parseArgs } from 'node:util'
import { HoldClient, type Did } from '../src/client/index.ts'
import { OWNER, pushBlob, startHold, stopHold, type Hold } from './lib.ts'

const { values } = parseArgs({
  options: {
    holds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '300' },
  },
})
const HOLDS = Number(values.holds)
const ROUNDS = Number(values.rounds)
const REPO = 'bench/app'

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}
const fmt = (xs: number[]) =>
  `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms`

const holds: Hold[] = []
try {
  for (const h of await Promise.all(
    Array.from({ length: HOLDS }, () => startHold({})),
  )) {
    holds.push(h)
  }
  for (const [i, h] of holds.entries()) {
    const digest = await pushBlob(h, new Uint8Array([i, 42]))
    const url = new URL('/xrpc/com.atproto.sync.getBlob', h.base)
    url.search = new URLSearchParams({
      did: OWNER,
      cid: digest,
      repo: REPO,
    }).toString()
    for (let n = 0; n <= i; n++) await (await fetch(url)).arrayBuffer()
  }
  const dids = holds.map((h) => h.did)
  const statsUrls = holds.map((h) => {
    const u = new URL('/xrpc/io.atcr.hold.getStats', h.base)
    u.search = new URLSearchParams({ did: OWNER, repo: REPO }).toString()
    return u
  })
  const client = new HoldClient({ allowHttpLocalhost: true })
  const owner = OWNER as Did

  // Let every connection and JIT warm up before measuring.
  for (let i = 0; i < 50; i++) {
    await client.getAggregatedStats(owner, REPO, dids, { fresh: true })
  }
  const check = await client.getAggregatedStats(owner, REPO, dids)
  if (check.failed.length) throw new Error(`failed: ${check.failed.join(' ')}`)
  const expected = (HOLDS * (HOLDS + 1)) / 2
  if (check.pullCount !== expected) {
    throw new Error(`pullCount ${check.pullCount}, expected ${expected}`)
  }

  const warm: number[] = []
  for (let i = 0; i < ROUNDS * 10; i++) {
    const t = performance.now()
    await client.getAggregatedStats(owner, REPO, dids)
    warm.push(performance.now() - t)
  }

  const slowest: number[] = []
  const cold: number[] = []
  const diff: number[] = []
  const inCall: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const each = await Promise.all(
      statsUrls.map(async (u) => {
        const t = performance.now()
        await (await fetch(u)).json()
        return performance.now() - t
      }),
    )
    const s = Math.max(...each)
    const t = performance.now()
    const agg = await client.getAggregatedStats(owner, REPO, dids, {
      fresh: true,
    })
    const c = performance.now() - t
    if (agg.failed.length) throw new Error(`failed: ${agg.failed.join(' ')}`)
    slowest.push(s)
    cold.push(c)
    diff.push(c - s)
    inCall.push(c - Math.max(...agg.holds.map((h) => h.ms)))
  }

  const first: number[] = []
  for (let i = 0; i < Math.min(ROUNDS, 50); i++) {
    const c = new HoldClient({ allowHttpLocalhost: true })
    const t = performance.now()
    await c.getAggregatedStats(owner, REPO, dids)
    first.push(performance.now() - t)
  }

  console.log(`${HOLDS} holds, pair summed to ${check.pullCount} pulls`)
  console.log(`warm (cached), ${warm.length} calls: ${fmt(warm)}`)
  console.log(`slowest hold (plain fetch), ${ROUNDS} rounds: ${fmt(slowest)}`)
  console.log(`cold (fresh), ${ROUNDS} rounds: ${fmt(cold)}`)
  console.log(`cold - slowest hold, per round: ${fmt(diff)}`)
  console.log(
    `cold - its own slowest hold (HoldResult.ms), per call: ${fmt(inCall)}`,
  )
  console.log(`first call of a new client (resolves DIDs): ${fmt(first)}`)
} finally {
  await Promise.all(holds.map((h) => stopHold(h)))
}
