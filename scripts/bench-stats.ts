/**
 * Stats benchmark (not part of `npm test`): `npm run bench:stats [-- --requests 30000 --rounds 3]`.
 *
 * Starts two real holds as child processes (ours, and one counting the seed's way), stores one
 * blob in each, then drives them over HTTP with autocannon from this process, a fixed number of
 * requests per run (so every response is accounted for: a run cut off by a timer would drop
 * responses to requests the hold did count). Every scenario is
 * measured in the same run, alternating round by round, and reported as medians and ratios:
 *   bare        a Hono route returning fixed JSON (the ceiling of this stack here)
 *   url         getBlob method=GET without repo (not counted)
 *   url+repo    getBlob method=GET with repo (counted)
 *   bytes       getBlob returning 1 KiB of bytes without repo (not counted)
 *   bytes+repo  the same with repo (counted)
 *   seed        getBlob method=GET with repo on the hold that counts the seed's way
 * Afterwards it checks that no count was lost in either design and how many commits ours made.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EventEmitter } from 'node:events'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '30000' },
    'seed-requests': { type: 'string', default: '1500' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'flush-ms': { type: 'string', default: '1000' },
  },
})
const REQUESTS = Number(args.requests)
const SEED_REQUESTS = Number(args['seed-requests'])
const ROUNDS = Number(args.rounds)
const CONNECTIONS = Number(args.connections)
const FLUSH_MS = Number(args['flush-ms'])
const ROOT = new URL('..', import.meta.url).pathname

type Hold = { proc: ChildProcess; base: string; did: string; dir: string }

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })

const startHold = async (counter: 'ours' | 'seed'): Promise<Hold> => {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), `atcr-bench-${counter}-`))
  const proc = spawn(process.execPath, ['scripts/bench-server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(port),
      HOLD_DATA_DIR: dir,
      HOLD_OWNER_DID: 'did:plc:benchowner',
      HOLD_STATS_FLUSH_MS: String(FLUSH_MS),
      LOG_LEVEL: 'warn',
      BENCH_COUNTER: counter,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    proc.stdout!.on('data', (d) => {
      out += d
      if (out.includes('READY')) resolve()
    })
    proc.once('exit', () => reject(new Error(`${counter} hold exited: ${out}`)))
  })
  const base = `http://localhost:${port}`
  const { did } = (await (
    await fetch(`${base}/xrpc/com.atproto.server.describeServer`)
  ).json()) as {
    did: string
  }
  return { proc, base, did, dir }
}

const stopHold = async (h: Hold) => {
  const exited = new Promise((r) => h.proc.once('exit', r))
  h.proc.kill('SIGTERM')
  await exited
  await rm(h.dir, { recursive: true, force: true })
}

const BLOB = randomBytes(1024)
const DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}`
const DIDS = Array.from(
  { length: 10 },
  (_, i) => `did:plc:benchuser${String(i).padStart(15, '0')}`,
)
const REPOS = ['app', 'api', 'worker', 'tools/builder', 'base-image']

const pushBlob = async (h: Hold) => {
  const q = new URLSearchParams({ did: DIDS[0], cid: DIGEST, method: 'PUT' })
  const res = await fetch(`${h.base}/xrpc/com.atproto.sync.getBlob?${q}`)
  const { url } = (await res.json()) as { url: string }
  const put = await fetch(url, { method: 'PUT', body: BLOB })
  if (put.status !== 201) throw new Error(`upload failed: ${put.status}`)
}

/** Paths cycling over 10 DIDs x 5 repositories, so counts spread over 50 records. */
const blobPaths = (opts: { method?: 'GET'; repo: boolean }): string[] => {
  const paths: string[] = []
  for (const did of DIDS) {
    for (const repo of REPOS) {
      const q = new URLSearchParams({ did, cid: DIGEST })
      if (opts.method) q.set('method', opts.method)
      if (opts.repo) q.set('repo', repo)
      paths.push(`/xrpc/com.atproto.sync.getBlob?${q}`)
    }
  }
  return paths
}

type Scenario = {
  name: string
  hold: () => Hold
  paths: string[]
  amount: number
}
type Run = { rps: number; p99: number; ok: number; errors: number }

const load = async (
  base: string,
  paths: string[],
  amount: number,
): Promise<Run> => {
  let i = 0
  const started = performance.now()
  let lastResponse = started
  // Without a callback autocannon returns its tracker, an EventEmitter that is also a promise.
  const instance = autocannon({
    url: base,
    connections: CONNECTIONS,
    amount,
    requests: [
      {
        setupRequest: (req) => ({ ...req, path: paths[i++ % paths.length] }),
      },
    ],
  })
  // autocannon ends an `amount` run on its one-second tick; time to the last response instead.
  ;(instance as unknown as EventEmitter).on('response', () => {
    lastResponse = performance.now()
  })
  const result = await instance
  const seconds = (lastResponse - started) / 1000
  return {
    rps: result['2xx'] / seconds,
    p99: result.latency.p99,
    ok: result['2xx'],
    errors: result.non2xx + result.errors + result.timeouts,
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

const getJson = async <T>(url: string): Promise<T> =>
  (await (await fetch(url)).json()) as T

const totalPulls = async (h: Hold): Promise<number> => {
  let total = 0
  for (const did of DIDS) {
    const page = await getJson<{ stats: { pullCount: number }[] }>(
      `${h.base}/xrpc/io.atcr.hold.listStats?did=${did}&limit=100`,
    )
    total += page.stats.reduce((n, s) => n + s.pullCount, 0)
  }
  return total
}

/** Sum of pullCount over the io.atcr.hold.stats records in the repo. */
const recordPulls = async (h: Hold): Promise<number> => {
  let total = 0
  let cursor: string | undefined
  do {
    const q = new URLSearchParams({
      repo: h.did,
      collection: 'io.atcr.hold.stats',
      limit: '100',
    })
    if (cursor) q.set('cursor', cursor)
    const page = await getJson<{
      records: { value: { pullCount: number } }[]
      cursor?: string
    }>(`${h.base}/xrpc/com.atproto.repo.listRecords?${q}`)
    total += page.records.reduce((n, r) => n + r.value.pullCount, 0)
    cursor = page.cursor
  } while (cursor)
  return total
}

const main = async () => {
  console.error(
    `bench: ${ROUNDS} rounds x 6 scenarios, ${REQUESTS} requests per run (seed: ${SEED_REQUESTS}), ${CONNECTIONS} connections, flush every ${FLUSH_MS} ms`,
  )
  const ours = await startHold('ours')
  const seed = await startHold('seed')
  try {
    await pushBlob(ours)
    await pushBlob(seed)
    const scenarios: Scenario[] = [
      {
        name: 'bare',
        hold: () => ours,
        paths: ['/_bench/bare'],
        amount: REQUESTS,
      },
      {
        name: 'url',
        hold: () => ours,
        paths: blobPaths({ method: 'GET', repo: false }),
        amount: REQUESTS,
      },
      {
        name: 'url+repo',
        hold: () => ours,
        paths: blobPaths({ method: 'GET', repo: true }),
        amount: REQUESTS,
      },
      {
        name: 'bytes',
        hold: () => ours,
        paths: blobPaths({ repo: false }),
        amount: REQUESTS,
      },
      {
        name: 'bytes+repo',
        hold: () => ours,
        paths: blobPaths({ repo: true }),
        amount: REQUESTS,
      },
      {
        name: 'seed',
        hold: () => seed,
        paths: blobPaths({ method: 'GET', repo: true }),
        amount: SEED_REQUESTS,
      },
    ]
    const runs = new Map<string, Run[]>(scenarios.map((s) => [s.name, []]))
    const commitsBefore = await getJson<{ count: number }>(
      `${ours.base}/_bench/commits`,
    )
    const started = Date.now()
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate the order each round so neither side always runs on a warmer machine.
      const order = round % 2 ? scenarios : [...scenarios].reverse()
      for (const s of order) {
        const run = await load(s.hold().base, s.paths, s.amount)
        runs.get(s.name)!.push(run)
        console.error(
          `round ${round} ${s.name.padEnd(10)} ${run.rps.toFixed(0).padStart(7)} req/s  p99 ${run.p99} ms  errors ${run.errors}`,
        )
      }
    }
    const loadSeconds = (Date.now() - started) / 1000

    // Lost counts: every 2xx counted response must be in the stats, in both designs.
    const expectedOurs = ['url+repo', 'bytes+repo']
      .flatMap((n) => runs.get(n)!)
      .reduce((n, r) => n + r.ok, 0)
    const expectedSeed = runs.get('seed')!.reduce((n, r) => n + r.ok, 0)
    const oursCounted = await totalPulls(ours)
    // Let one flush pass, then the records must agree too.
    await new Promise((r) => setTimeout(r, FLUSH_MS * 2 + 200))
    const oursRecords = await recordPulls(ours)
    const seedRecords = await recordPulls(seed)
    const commits = await getJson<{
      count: number
      ops: number
      maxOps: number
    }>(`${ours.base}/_bench/commits`)
    const commitCount = commits.count - commitsBefore.count
    const flushes = Math.ceil((loadSeconds * 1000 + FLUSH_MS * 2) / FLUSH_MS)

    const med = (name: string) => median(runs.get(name)!.map((r) => r.rps))
    const p99 = (name: string) => median(runs.get(name)!.map((r) => r.p99))
    console.log(`\n| scenario | median req/s | median p99 ms | runs |`)
    console.log(`|---|---:|---:|---|`)
    for (const s of scenarios) {
      console.log(
        `| ${s.name} | ${med(s.name).toFixed(0)} | ${p99(s.name)} | ${runs
          .get(s.name)!
          .map((r) => r.rps.toFixed(0))
          .join(', ')} |`,
      )
    }
    const ratio = (a: string, b: string) => (med(a) / med(b)).toFixed(3)
    console.log(`\n| ratio | value | target |`)
    console.log(`|---|---:|---|`)
    console.log(
      `| url+repo / url (counting cost, signed-URL path) | ${ratio('url+repo', 'url')} | >= 0.9 |`,
    )
    console.log(
      `| bytes+repo / bytes (counting cost, byte path) | ${ratio('bytes+repo', 'bytes')} | >= 0.9 |`,
    )
    console.log(
      `| url+repo / bare Hono route | ${ratio('url+repo', 'bare')} | >= 0.4 |`,
    )
    console.log(
      `| url+repo / seed design | ${ratio('url+repo', 'seed')} | >= 20 |`,
    )
    console.log(`\n| check | value |`)
    console.log(`|---|---|`)
    console.log(
      `| ours: counted 2xx responses / getStats total / record total | ${expectedOurs} / ${oursCounted} / ${oursRecords} |`,
    )
    console.log(
      `| seed: counted 2xx responses / record total | ${expectedSeed} / ${seedRecords} |`,
    )
    console.log(
      `| ours: commits during the run (flush every ${FLUSH_MS} ms, ~${flushes} flushes, 50 changing records) | ${commitCount}, at most ${commits.maxOps} ops each |`,
    )
    const lost =
      expectedOurs !== oursCounted ||
      expectedOurs !== oursRecords ||
      expectedSeed !== seedRecords
    if (lost) {
      console.error('COUNTS DO NOT MATCH')
      process.exitCode = 1
    }
  } finally {
    await stopHold(ours)
    await stopHold(seed)
  }
}

await main()
