/**
 * What daily history costs and how fast it answers (not part of `npm test`):
 *   node scripts/bench-history.ts [--rounds 5 --requests 20000 --connections 16 --pairs 100000 --samples 2000]
 *
 * 1. Counted getBlob (method=GET with repo, 100 pairs) on two holds started side by side, one
 *    with history and unique clients (the default) and one with HOLD_STATS_HISTORY_DAYS=0,
 *    driven in alternating rounds (the order flips each round); the ratio of their median
 *    throughputs is the cost of the day rows, the trending windows and the sketches. Then every
 *    pair's days are checked against its totals.
 * 2. `pairs` pairs counted over the last 30 days (and 20 of them on each of the last 366) by a
 *    hold in this process, which then stops; a hold started as a child process on the same data
 *    dir answers getStatsHistory for 366 days and listTrending (days 1, 7 and 30, first pages
 *    and pages after a cursor), timed from a client in this process, one request at a time.
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { ids } from '../src/ids.ts'
import { HoldServer } from '../src/server.ts'
import { DAY_MS, dayOf, dayString } from '../src/stats/days.ts'
import { identity, testPlcUrl } from '../test/_identity.ts'
import { removeDir, tempDir } from '../test/_util.ts'
import {
  freePort,
  getJson,
  load,
  median,
  OWNER,
  pushBlob,
  startHold,
  stopHold,
  type Hold,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '16' },
    pairs: { type: 'string', default: '100000' },
    samples: { type: 'string', default: '2000' },
    only: { type: 'string' },
  },
})
const ROUNDS = Number(args.rounds)
const REQUESTS = Number(args.requests)
const CONNECTIONS = Number(args.connections)
const PAIRS = Number(args.pairs)
const SAMPLES = Number(args.samples)
const ONLY = args.only?.split(',')

const DIDS = Array.from(
  { length: 10 },
  (_, i) => `did:plc:histbench${String(i).padStart(15, '0')}`,
)
const REPOS = Array.from({ length: 10 }, (_, i) => `app-${i}`)

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}
const ms = (x: number) => `${x.toFixed(2)} ms`

const counted = async () => {
  const env = {
    HOLD_NEW_PAIRS_PER_HOUR: '0',
    HOLD_STATS_FLUSH_MS: '86400000',
  }
  const holds: Record<'on' | 'off', Hold> = {
    on: await startHold({ env }),
    off: await startHold({ env: { ...env, HOLD_STATS_HISTORY_DAYS: '0' } }),
  }
  try {
    const paths: Record<'on' | 'off', string[]> = { on: [], off: [] }
    for (const key of ['on', 'off'] as const) {
      const digest = await pushBlob(holds[key], randomBytes(4096))
      paths[key] = DIDS.flatMap((did) =>
        REPOS.map(
          (repo) =>
            `/xrpc/${ids.SyncGetBlob}?${new URLSearchParams({ did, cid: digest, repo, method: 'GET' })}`,
        ),
      )
      // Warm-up: the first counts of each pair, and the JIT.
      await load({
        base: holds[key].base,
        paths: paths[key],
        connections: CONNECTIONS,
        amount: 5000,
      })
    }
    const rps: Record<'on' | 'off', number[]> = { on: [], off: [] }
    const p99: Record<'on' | 'off', number[]> = { on: [], off: [] }
    for (let round = 0; round < ROUNDS; round++) {
      const order =
        round % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const)
      for (const key of order) {
        const run = await load({
          base: holds[key].base,
          paths: paths[key],
          connections: CONNECTIONS,
          amount: REQUESTS,
        })
        if (run.errors > 0) throw new Error(`${key}: ${run.errors} errors`)
        rps[key].push(run.rps)
        p99[key].push(run.p99)
        console.log(
          `round ${round + 1} history ${key.padEnd(3)} ${run.rps.toFixed(0)} req/s, p99 ${run.p99} ms`,
        )
      }
    }
    const ratio = median(rps.on) / median(rps.off)
    console.log(
      `counted getBlob: history+HLL on ${median(rps.on).toFixed(0)} req/s (p99 ${median(p99.on)} ms), off ${median(rps.off).toFixed(0)} req/s (p99 ${median(p99.off)} ms): ratio ${ratio.toFixed(3)} (target >= 0.95)`,
    )
    // Every count is in the days.
    const today = dayString(dayOf(Date.now()))
    let mismatched = 0
    for (const did of DIDS) {
      for (const repo of REPOS) {
        const q = new URLSearchParams({ did, repo })
        const total = await getJson<{ pullCount: number }>(
          `${holds.on.base}/xrpc/${ids.HoldGetStats}?${q}`,
        )
        q.set('since', dayString(dayOf(Date.now()) - 1))
        q.set('until', today)
        const days = await getJson<{ days: { pulls: number }[] }>(
          `${holds.on.base}/xrpc/${ids.HoldGetStatsHistory}?${q}`,
        )
        const sum = days.days.reduce((n, d) => n + d.pulls, 0)
        if (sum !== total.pullCount) mismatched++
      }
    }
    console.log(
      `days against totals: ${DIDS.length * REPOS.length - mismatched} of ${DIDS.length * REPOS.length} pairs agree`,
    )
  } finally {
    await stopHold(holds.on)
    await stopHold(holds.off)
  }
}

const queries = async () => {
  const dir = await tempDir('atcr-history-bench-')
  await identity(OWNER)
  const port = await freePort()
  const env = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_DATA_DIR: dir,
    HOLD_PORT: String(port),
    HOLD_OWNER_DID: OWNER,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_STATS_FLUSH_MS: '86400000',
    LOG_LEVEL: 'silent',
  })
  const hold = await HoldServer.create(
    envToCfg(env, 'bench'),
    envToSecrets(env),
  )
  const stats = hold.ctx.stats
  const base = `http://127.0.0.1:${port}`
  let child: Hold | undefined
  try {
    const seeding = performance.now()
    const now = Date.now()
    const didOf = (i: number) =>
      `did:plc:hist${String(i % 20000).padStart(20, '0')}`
    const repoOf = (i: number) => `repo-${Math.floor(i / 20000)}`
    let persistMs = 0
    let persists = 0
    for (let i = 0; i < PAIRS; i++) {
      // 1 to 4 days of the last 30, 1 to 6 pulls each.
      for (let d = 0; d <= i % 4; d++) {
        const day = (i * 7 + d * 11) % 30
        for (let k = 0; k <= (i + d) % 6; k++) {
          stats.countPull(
            didOf(i),
            repoOf(i),
            now - day * DAY_MS,
            `did:plc:c${k}`,
          )
        }
      }
      if (i % 1000 === 999) {
        const t = performance.now()
        stats.persist()
        persistMs += performance.now() - t
        persists++
      }
    }
    const long = Array.from({ length: 20 }, (_, i) => ({
      did: `did:plc:histlong${String(i).padStart(16, '0')}`,
      repository: 'everyday',
    }))
    for (let day = 0; day < 366; day++) {
      for (const p of long) {
        stats.countPull(p.did, p.repository, now - day * DAY_MS, 'did:plc:x')
      }
      stats.persist()
    }
    stats.persist()
    const rows = hold.ctx.db.db
      .prepare(
        'SELECT (SELECT count(*) FROM stats_day) AS days, (SELECT count(*) FROM stats_counter) AS pairs',
      )
      .get() as { days: number; pairs: number }
    console.log(
      `seeded ${rows.pairs} pairs, ${rows.days} day rows in ${((performance.now() - seeding) / 1000).toFixed(1)} s (persist of 1,000 new pairs: ${ms(persistMs / persists)} on average)`,
    )
    // The records of every seeded pair are written before timing, and
    // the hold answers from a process of its own, as a client meets it: the seeding hold stops
    // cleanly and a child process opens the same data dir on the same port.
    const flushing = performance.now()
    const flushed = await stats.flush()
    await hold.destroy()
    console.log(
      `published ${flushed.records} records in ${flushed.commits} commits before the queries (${((performance.now() - flushing) / 1000).toFixed(1)} s)`,
    )
    child = await startHold({
      dataDir: dir,
      port,
      env: { HOLD_STATS_FLUSH_MS: '86400000' },
      nodeFlags: process.env.BENCH_NODE_FLAGS?.split(' ') ?? [],
    })
    // A started hold reads its tree into memory in the background (a second or two at 100k
    // records): the timing starts after it.
    await new Promise((r) => setTimeout(r, 5000))

    const time = async (path: string) => {
      const t = performance.now()
      const res = await fetch(`${base}${path}`)
      await res.arrayBuffer()
      if (!res.ok) throw new Error(`${path}: ${res.status}`)
      return performance.now() - t
    }
    const until = dayOf(now)
    const historyPath = (i: number) =>
      `/xrpc/${ids.HoldGetStatsHistory}?${new URLSearchParams({
        did: long[i % long.length].did,
        repo: 'everyday',
        since: dayString(until - 365),
        until: dayString(until),
      })}`
    const bare = []
    for (let i = 0; i < 200; i++) await time(historyPath(i))
    for (let i = 0; i < SAMPLES; i++) bare.push(await time('/xrpc/_health'))
    const history = []
    for (let i = 0; i < SAMPLES; i++) history.push(await time(historyPath(i)))
    console.log(
      `getStatsHistory, 366 days: p50 ${ms(quantile(history, 0.5))}, p99 ${ms(quantile(history, 0.99))} (target p99 < 5 ms); _health on the same client: p50 ${ms(quantile(bare, 0.5))}, p99 ${ms(quantile(bare, 0.99))}`,
    )
    for (const days of [1, 7, 30]) {
      const first = `/xrpc/${ids.HoldListTrending}?days=${days}&limit=50`
      const page = await getJson<{ cursor?: string }>(`${base}${first}`)
      const next = `${first}&cursor=${page.cursor}`
      const trending = []
      for (let i = 0; i < 50; i++) await time(first)
      for (let i = 0; i < SAMPLES; i++) {
        trending.push(await time(i % 2 ? next : first))
      }
      console.log(
        `listTrending days=${days} limit=50 at ${rows.pairs} pairs: p50 ${ms(quantile(trending, 0.5))}, p99 ${ms(quantile(trending, 0.99))} (target p99 < 10 ms)`,
      )
    }
  } finally {
    await hold.destroy()
    if (child) await stopHold(child)
    await removeDir(dir)
  }
}

if (!ONLY || ONLY.includes('counted')) await counted()
if (!ONLY || ONLY.includes('queries')) await queries()
