/** Shared by the benchmark scripts: real holds as child processes, a local DID directory, load. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import type { EventEmitter } from 'node:events'
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { ids } from '../src/ids.ts'
import { identity, serviceToken, testPlcUrl } from '../test/_identity.ts'
import {
  ROOT,
  freePort,
  removeDir,
  tempDir,
  uploadBlob,
  waitForStart,
} from '../test/_shared.ts'

export { ROOT, freePort }

/**
 * The Node flags the hold runs with (`npm start`, and the image's CMD, which a test keeps in
 * step), so the benchmarks measure the memory and speed operators get.
 */
export const NODE_FLAGS: string[] = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: { start: string }
  }
).scripts.start
  .split(/\s+/)
  .filter((arg) => arg.startsWith('--'))
export const OWNER = 'did:plc:benchowner00000000000000'

/** The bench server as TypeScript, which Node runs by stripping the types. */
export const BENCH_SERVER = 'scripts/bench-server.ts'

/**
 * Compiles the bench server and the hold's sources it imports to JavaScript with tsc, as the
 * image's build stage compiles the hold, into `<tree>/.bench-build` (the lexicons and
 * package.json beside them, where the image has them); returns the server's path from `tree`.
 * Node runs TypeScript sources through a type-stripping transformer that stays resident (25-34
 * MB here); the image runs compiled JavaScript and has none, so `--compiled` runs measure the
 * memory a deployed hold uses.
 */
export const compileBenchServer = (tree = ROOT): string => {
  const out = join(tree, '.bench-build')
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out, { recursive: true })
  const config = join(out, 'tsconfig.json')
  writeFileSync(
    config,
    JSON.stringify({
      extends: join(tree, 'tsconfig.json'),
      compilerOptions: {
        noEmit: false,
        outDir: out,
        rootDir: tree,
        declaration: false,
        sourceMap: false,
      },
      files: [join(tree, BENCH_SERVER)],
      include: [],
    }),
  )
  execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', config], {
    stdio: 'inherit',
  })
  cpSync(join(tree, 'lexicons'), join(out, 'lexicons'), { recursive: true })
  cpSync(join(tree, 'package.json'), join(out, 'package.json'))
  return join('.bench-build', BENCH_SERVER.replace(/\.ts$/, '.js'))
}

export const DIDS = Array.from(
  { length: 10 },
  (_, i) => `did:plc:benchuser${String(i).padStart(15, '0')}`,
)
export const REPOS = ['app', 'api', 'worker', 'tools/builder', 'base-image']

/** getBlob paths cycling over 10 DIDs x 5 repositories, so counts spread over 50 records. */
export const blobPaths = (
  digest: string,
  opts: { method?: 'GET'; repo: boolean },
): string[] =>
  DIDS.flatMap((did) =>
    REPOS.map((repo) => {
      const q = new URLSearchParams({ did, cid: digest })
      if (opts.method) q.set('method', opts.method)
      if (opts.repo) q.set('repo', repo)
      return `/xrpc/${ids.SyncGetBlob}?${q}`
    }),
  )

/**
 * The request paths of each scenario of the request-path benchmarks (bench:path, bench:profile)
 * for a hold that stores the blob `digest`: the bare Hono route, getBlob answering a URL or the
 * bytes, without and with `repo` (counted), and the stats queries over the same 50 pairs.
 */
export const scenarioPaths = (digest: string): Record<string, string[]> => ({
  bare: ['/_bench/bare'],
  url: blobPaths(digest, { method: 'GET', repo: false }),
  'url+repo': blobPaths(digest, { method: 'GET', repo: true }),
  bytes: blobPaths(digest, { repo: false }),
  'bytes+repo': blobPaths(digest, { repo: true }),
  getStats: DIDS.flatMap((did) =>
    REPOS.map(
      (repo) =>
        `/xrpc/${ids.HoldGetStats}?${new URLSearchParams({ did, repo })}`,
    ),
  ),
  listStats: DIDS.map(
    (did) => `/xrpc/${ids.HoldListStats}?${new URLSearchParams({ did })}`,
  ),
})

/**
 * Before a stats scenario: counted pulls for every pair, so getStats reads a row and a
 * listStats page five.
 */
export const countEveryPair = async (
  h: Hold,
  digest: string,
): Promise<void> => {
  await load({
    base: h.base,
    paths: blobPaths(digest, { method: 'GET', repo: true }),
    connections: 8,
    amount: 500,
  })
}

export type Hold = {
  proc: ChildProcess
  base: string
  did: string
  dir: string
  keep: boolean
}

/**
 * Starts scripts/bench-server.ts (the real hold plus bench routes) and waits until it listens.
 * The hold resolves DIDs through a directory in this process, so owner tokens are real.
 * `tree` runs the hold of another checkout (an older commit, to compare with), `nodeFlags` are
 * added to the Node flags of `npm start`, and `stderr: 'pipe'` leaves the hold's stderr to the
 * caller (`proc.stderr`) instead of this process's.
 */
export const startHold = async (opts: {
  counter?: 'ours' | 'seed'
  env?: Record<string, string>
  dataDir?: string
  port?: number
  tree?: string
  /** The server script, from `tree` (default BENCH_SERVER; see compileBenchServer). */
  server?: string
  nodeFlags?: string[]
  stderr?: 'inherit' | 'pipe'
}): Promise<Hold & { startMs: number }> => {
  const port = opts.port ?? (await freePort())
  const dir = opts.dataDir ?? (await tempDir('atcr-bench-'))
  await identity(OWNER)
  const started = performance.now()
  const proc = spawn(
    process.execPath,
    [...NODE_FLAGS, ...(opts.nodeFlags ?? []), opts.server ?? BENCH_SERVER],
    {
      cwd: opts.tree ?? ROOT,
      env: {
        PATH: process.env.PATH,
        HOLD_HOST: '127.0.0.1',
        HOLD_PORT: String(port),
        HOLD_DATA_DIR: dir,
        HOLD_OWNER_DID: OWNER,
        HOLD_PLC_URL: await testPlcUrl(),
        LOG_LEVEL: 'warn',
        BENCH_COUNTER: opts.counter ?? 'ours',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', opts.stderr ?? 'inherit'],
    },
  )
  await waitForStart(proc, 'READY')
  const startMs = performance.now() - started
  const base = `http://localhost:${port}`
  const { did } = await getJson<{ did: string }>(
    `${base}/xrpc/${ids.ServerDescribeServer}`,
  )
  return { proc, base, did, dir, keep: !!opts.dataDir, startMs }
}

/** SIGTERM, and SIGKILL after `killAfterMs` (default: never); a hold that already exited is left be. */
export const stopHold = async (
  h: Hold,
  opts: { killAfterMs?: number } = {},
): Promise<void> => {
  if (h.proc.exitCode === null && h.proc.signalCode === null) {
    const exited = new Promise((r) => h.proc.once('exit', r))
    h.proc.kill('SIGTERM')
    const timer =
      opts.killAfterMs === undefined
        ? undefined
        : setTimeout(() => h.proc.kill('SIGKILL'), opts.killAfterMs)
    await exited
    clearTimeout(timer)
  }
  if (!h.keep) await removeDir(h.dir)
}

export const getJson = async <T>(
  url: string,
  init?: RequestInit,
): Promise<T> => {
  const res = await fetch(url, init)
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** A real service token from the bench owner to the hold. */
export const ownerToken = async (holdDid: string, lxm: string) =>
  serviceToken({
    iss: OWNER,
    aud: holdDid,
    lxm,
    // Valid for the whole run (the hold accepts at most an hour).
    exp: Math.floor(Date.now() / 1000) + 3000,
  })

/** Uploads bytes as the owner: getBlob method=PUT with a token, then PUT to the signed URL. */
export const pushBlob = async (h: Hold, bytes: Uint8Array): Promise<string> => {
  const { digest, status } = await uploadBlob(h.base, bytes, {
    did: OWNER,
    headers: {
      authorization: `Bearer ${await ownerToken(h.did, ids.SyncGetBlob)}`,
    },
  })
  if (status !== 201) throw new Error(`upload failed: ${status}`)
  return digest
}

export type OpenRun = {
  rps: number
  p50: number
  p99: number
  p999: number
  max: number
  ok: number
  errors: number
  /**
   * The load generator's own longest stall, ms (the longest time between two of its looks at
   * the clock; latency-load.ts only): requests due in it were sent that much late, and their
   * times include it, so a tail no longer than this may be the generator's and not the hold's.
   */
  generatorStall?: number
}

/**
 * An open-loop load: requests sent at a fixed rate (one every 1/rate s, whether or not earlier
 * ones have answered), each timed from the moment it was due to be sent to the end of its
 * response, so a stall in the server shows in every request it delays. Runs in a worker
 * thread of its own, so a load the bench drives at the same time cannot delay its timers.
 *
 * (autocannon's rate option is not this: each connection sends back to back until it has used
 * its quota for the second, then waits for the next second, and its latency histogram then
 * adds synthetic samples for a 1 ms send interval, so its p99 at 1,000 req/s describes short
 * bursts at full speed with a correction that assumes sends that never happened.)
 */
export const openLoad = (opts: {
  base: string
  paths: string[]
  rate: number
  duration: number
  connections?: number
  /** A request not answered within this many ms is an error (default: wait for it) */
  timeoutMs?: number
}): Promise<OpenRun> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(OPEN_LOAD_WORKER, {
      eval: true,
      workerData: { connections: 8, ...opts },
    })
    worker.once('message', (run: OpenRun) => {
      resolve(run)
      void worker.terminate()
    })
    worker.once('error', reject)
  })

const OPEN_LOAD_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const http = require('node:http')
const { base, paths, rate, duration, connections, timeoutMs } = workerData
const url = new URL(base)
const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname
const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
const total = Math.round(rate * duration)
const interval = 1000 / rate
const latency = new Float64Array(total)
let sent = 0
let done = 0
let ok = 0
let errors = 0
const t0 = performance.now() + 20
const finish = () => {
  if (++done < total) return
  const elapsed = performance.now() - t0
  const sorted = Array.from(latency).sort((a, b) => a - b)
  const at = (q) => +sorted[Math.min(total - 1, Math.floor(q * total))].toFixed(1)
  agent.destroy()
  parentPort.postMessage({
    rps: ok / (elapsed / 1000),
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    max: +sorted[total - 1].toFixed(1),
    ok,
    errors,
  })
}
const send = (i) => {
  const due = t0 + i * interval
  // Exactly once per request, however it ends (an answer, an error, a cut or a timeout).
  let settled = false
  const settle = (good) => {
    if (settled) return
    settled = true
    latency[i] = performance.now() - due
    if (good) ok++
    else errors++
    finish()
  }
  const req = http.request(
    { host, port: url.port, path: paths[i % paths.length], agent },
    (res) => {
      res.resume()
      res.on('end', () => settle(res.statusCode >= 200 && res.statusCode < 300))
      res.on('error', () => settle(false))
      res.on('close', () => settle(false))
    },
  )
  req.on('error', () => settle(false))
  if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')))
  req.end()
}
const tick = () => {
  const now = performance.now()
  while (sent < total && t0 + sent * interval <= now) send(sent++)
  if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()))
}
setTimeout(tick, 20)
`

export type Run = {
  rps: number
  p50: number
  p99: number
  ok: number
  errors: number
}

/**
 * Drives base with autocannon: a fixed number of requests (every response accounted for), or a
 * duration with an optional overall rate. Throughput is 2xx responses per second up to the last
 * response (autocannon ends `amount` runs on its one-second tick).
 */
export const load = async (opts: {
  base: string
  paths: string[]
  connections: number
  amount?: number
  duration?: number
  rate?: number
  headers?: Record<string, string>
}): Promise<Run> => {
  let i = 0
  const started = performance.now()
  let last = started
  const instance = autocannon({
    url: opts.base,
    connections: opts.connections,
    ...(opts.amount !== undefined ? { amount: opts.amount } : {}),
    ...(opts.duration !== undefined ? { duration: opts.duration } : {}),
    ...(opts.rate !== undefined ? { overallRate: opts.rate } : {}),
    ...(opts.headers ? { headers: opts.headers } : {}),
    requests: [
      {
        setupRequest: (req) => ({
          ...req,
          path: opts.paths[i++ % opts.paths.length],
        }),
      },
    ],
  })
  // Without a callback autocannon returns its tracker, an EventEmitter that is also a promise.
  ;(instance as unknown as EventEmitter).on('response', () => {
    last = performance.now()
  })
  const result = await instance
  return {
    rps: result['2xx'] / ((last - started) / 1000),
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok: result['2xx'],
    errors: result.non2xx + result.errors + result.timeouts,
  }
}

/**
 * A hold of this checkout with variables set, as `--variant 'LABEL:KEY=VALUE[,KEY=VALUE]'` gives
 * it (bench:path, bench:ratio); a LABEL alone, or `LABEL:`, sets none.
 */
export const parseVariant = (
  v: string,
): { label: string; env: Record<string, string> } => {
  const colon = v.indexOf(':')
  if (colon === -1 && v !== '') return { label: v, env: {} }
  const pairs = v
    .slice(colon + 1)
    .split(',')
    .filter((p) => p !== '')
  if (colon < 1 || pairs.some((p) => p.indexOf('=') < 1)) {
    throw new Error(`--variant ${v}: give it as LABEL:KEY=VALUE[,KEY=VALUE]`)
  }
  return {
    label: v.slice(0, colon),
    env: Object.fromEntries(
      pairs.map((p) => [
        p.slice(0, p.indexOf('=')),
        p.slice(p.indexOf('=') + 1),
      ]),
    ),
  }
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** USER_HZ: /proc counts CPU time in 1/100 s. */
const TICK_US = 1e6 / 100

/** A process's CPU time (every thread, user and system) and bytes written to storage so far. */
export type ProcSample = { at: number; cpuUs: number; writeBytes: number }

/** Reads /proc/<pid>/stat and /proc/<pid>/io (Linux). */
export const procSample = (pid: number): ProcSample => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12]) // utime, stime
  const io = readFileSync(`/proc/${pid}/io`, 'utf8')
  const writeBytes = Number(/^write_bytes: (\d+)$/m.exec(io)![1])
  return { at: performance.now(), cpuUs: ticks * TICK_US, writeBytes }
}

/** Sum of pullCount over the io.atcr.hold.stats records in the repo. */
export const recordPulls = async (h: Hold): Promise<number> => {
  let total = 0
  let cursor: string | undefined
  do {
    const q = new URLSearchParams({
      repo: h.did,
      collection: ids.HoldStats,
      limit: '100',
    })
    if (cursor) q.set('cursor', cursor)
    const page = await getJson<{
      records: { value: { pullCount: number } }[]
      cursor?: string
    }>(`${h.base}/xrpc/${ids.RepoListRecords}?${q}`)
    total += page.records.reduce((n, r) => n + r.value.pullCount, 0)
    cursor = page.cursor
  } while (cursor)
  return total
}

/**
 * The order of one round's cases: shuffled, seeded by the round (a run can be repeated), and not
 * starting with the case the round before ended on. An order reversed every other round ran its
 * first and last cases twice in a row at each change of round, and a case run again at once runs
 * faster (BENCHMARKS.md, "How often counts are made durable").
 */
export const roundOrder = <T>(
  cases: readonly T[],
  round: number,
  last: T | undefined,
): T[] => {
  const out = [...cases]
  let seed = Math.imul(round, 0x9e3779b1) >>> 0
  for (let i = out.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    const j = seed % (i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  if (out.length > 1 && out[0] === last) out.push(out.shift()!)
  return out
}
