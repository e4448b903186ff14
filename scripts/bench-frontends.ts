/**
 * Two frontends and a writer on Redis versus one `all` process, in the same run (`npm run
 * bench:frontends [-- --duration 10 --connections 32]`). Both run on HOLD_STORAGE=s3 against
 * the tests' s3rver and count every request: getBlob with `repo` and `method=GET` (a presigned
 * URL, counted; the bytes never pass through the hold). Reports counted getBlob throughput
 * (the frontends' load split evenly over them) and getStats latency on the idle hold, each
 * hold's CPU seconds, and whether the table (the writer's) holds exactly the pulls the
 * serving processes counted (their hold_stats_counted_total).
 * Needs redis-server (Debian's package). The machine is shared: compare the ratios.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { ids } from '../src/ids.ts'
import { startS3, s3Env } from '../test/_s3.ts'
import {
  freePort,
  removeDir,
  tempDir,
  uploadBlob,
  waitForStart,
} from '../test/_shared.ts'
import { startRedis } from '../test/redis/_cluster.ts'
import { identity, testPlcUrl } from '../test/_identity.ts'
import { NODE_FLAGS, OWNER, ownerToken, ROOT } from './lib.ts'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    repos: { type: 'string', default: '100' },
  },
})
const DURATION = Number(values.duration)
const CONNECTIONS = Number(values.connections)
const REPOS = Number(values.repos)

type Proc = { proc: ChildProcess; base: string; port: number; dir: string }

const startProc = async (
  env: Record<string, string>,
  port?: number,
): Promise<Proc> => {
  const p = port ?? (await freePort())
  const dir = await tempDir('atcr-bench-cluster-')
  const proc = spawn(process.execPath, [...NODE_FLAGS, 'src/bin.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(p),
      HOLD_DATA_DIR: dir,
      HOLD_OWNER_DID: OWNER,
      HOLD_PLC_URL: await testPlcUrl(),
      HOLD_STATS_FLUSH_MS: '3600000',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await waitForStart(proc, 'hold started', 30_000)
  proc.stdout!.resume()
  return { proc, base: `http://127.0.0.1:${p}`, port: p, dir }
}

const stopProc = async (p: Proc) => {
  if (p.proc.exitCode === null) {
    const exited = new Promise((r) => p.proc.once('exit', r))
    p.proc.kill('SIGTERM')
    await exited
  }
  await removeDir(p.dir)
}

/** CPU seconds the process has used, from /proc (Linux). */
const cpuSeconds = async (p: Proc): Promise<number> => {
  const { readFile } = await import('node:fs/promises')
  const stat = (await readFile(`/proc/${p.proc.pid}/stat`, 'utf8')).split(' ')
  return (Number(stat[13]) + Number(stat[14])) / 100
}

const pullPaths = (cid: string) =>
  Array.from(
    { length: REPOS },
    (_, i) =>
      `/xrpc/${ids.SyncGetBlob}?did=${OWNER}&cid=${cid}&repo=bench-${i}&method=GET`,
  )

/** Counted getBlob against each base at once, the connections split evenly. */
const pullLoad = async (bases: string[], cid: string) => {
  const paths = pullPaths(cid)
  const runs = await Promise.all(
    bases.map((base) =>
      autocannon({
        url: base,
        connections: Math.max(1, Math.round(CONNECTIONS / bases.length)),
        duration: DURATION,
        requests: paths.map((path) => ({ method: 'GET', path })),
      }),
    ),
  )
  const ok = runs.reduce((n, r) => n + r['2xx'], 0)
  const bad = runs.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0)
  return { rps: ok / DURATION, ok, bad }
}

const statsLatency = async (base: string) => {
  const r = await autocannon({
    url: `${base}/xrpc/${ids.HoldGetStats}?did=${OWNER}&repo=bench-1`,
    connections: 4,
    duration: Math.max(3, Math.round(DURATION / 2)),
  })
  return { p50: r.latency.p50, p99: r.latency.p99, rps: r.requests.average }
}

/** Sum of pullCount over the bench's pairs, as `base` answers getStats. */
const counted = async (base: string): Promise<number> => {
  let sum = 0
  for (let i = 0; i < REPOS; i++) {
    const res = await fetch(
      `${base}/xrpc/${ids.HoldGetStats}?did=${OWNER}&repo=bench-${i}`,
    )
    sum += ((await res.json()) as { pullCount: number }).pullCount
  }
  return sum
}

/** Pulls the process counted itself since it started (its /metrics). */
const countedHere = async (base: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  const line = text
    .split('\n')
    .find((l) => l.startsWith('hold_stats_counted_total{kind="pull"}'))
  return Number(line?.split(' ').pop() ?? 0)
}

const push = async (base: string, did: string) => {
  const { digest, status } = await uploadBlob(base, randomBytes(4096), {
    did: OWNER,
    headers: {
      authorization: `Bearer ${await ownerToken(did, ids.SyncGetBlob)}`,
    },
  })
  if (status !== 201) throw new Error(`upload: ${status}`)
  return digest
}

const main = async () => {
  await identity(OWNER)
  const redis = await startRedis()
  const s3 = await startS3()
  const signingKey = randomBytes(32).toString('hex')
  try {
    // One process.
    const allPort = await freePort()
    const all = await startProc(
      {
        ...s3Env(s3, { HOLD_S3_PREFIX: 'all' }),
        HOLD_PUBLIC_URL: `http://localhost:${allPort}`,
      },
      allPort,
    )
    const allDid = `did:web:localhost%3A${allPort}`
    const allCid = await push(all.base, allDid)
    const cpu0 = await cpuSeconds(all)
    const allPulls = await pullLoad([all.base], allCid)
    const allCpu = (await cpuSeconds(all)) - cpu0
    const allStats = await statsLatency(all.base)
    const allCounted = await counted(all.base)
    const allTaken = await countedHere(all.base)
    await stopProc(all)

    // A writer and two frontends.
    const writerPort = await freePort()
    const shared = {
      ...s3Env(s3, { HOLD_S3_PREFIX: 'cluster' }),
      HOLD_PUBLIC_URL: `http://localhost:${writerPort}`,
      HOLD_REDIS_URL: redis.url,
      HOLD_SIGNING_KEY: signingKey,
    }
    const writer = await startProc(
      { ...shared, HOLD_ROLE: 'writer' },
      writerPort,
    )
    const frontends = await Promise.all(
      [0, 1].map(() =>
        startProc({
          ...shared,
          HOLD_ROLE: 'frontend',
          HOLD_WRITER_URL: writer.base,
        }),
      ),
    )
    const did = `did:web:localhost%3A${writerPort}`
    const cid = await push(frontends[0].base, did)
    const procs = [writer, ...frontends]
    const before = await Promise.all(procs.map(cpuSeconds))
    const pulls = await pullLoad(
      frontends.map((f) => f.base),
      cid,
    )
    const after = await Promise.all(procs.map(cpuSeconds))
    const cpu = after.map((a, i) => a - before[i])
    // The writer applies what is in flight within the batch window and its read.
    await new Promise((r) => setTimeout(r, 2000))
    const writerCounted = await counted(writer.base)
    let taken = 0
    for (const f of frontends) taken += await countedHere(f.base)
    const stats = await statsLatency(frontends[0].base)
    for (const p of [...frontends, writer]) await stopProc(p)

    const row = (name: string, cols: (string | number)[]) =>
      console.log(
        name.padEnd(34) + cols.map((c) => String(c).padStart(12)).join(''),
      )
    console.log(
      `\ncounted getBlob (method=GET, ${REPOS} pairs), ${CONNECTIONS} connections, ${DURATION} s; getStats on the idle hold, 4 connections\n`,
    )
    row('', [
      'getBlob/s',
      'non-2xx',
      'CPU s',
      'getStats p50',
      'p99 ms',
      'exact',
    ])
    row('one `all` process', [
      allPulls.rps.toFixed(0),
      allPulls.bad,
      allCpu.toFixed(1),
      allStats.p50,
      allStats.p99,
      allCounted === allTaken ? 'yes' : `${allCounted}/${allTaken}`,
    ])
    row('writer + 2 frontends (Redis)', [
      pulls.rps.toFixed(0),
      pulls.bad,
      `${cpu.reduce((a, b) => a + b, 0).toFixed(1)}`,
      stats.p50,
      stats.p99,
      writerCounted === taken ? 'yes' : `${writerCounted}/${taken}`,
    ])
    console.log(
      `\nCPU s by process: writer ${cpu[0].toFixed(1)}, frontends ${cpu
        .slice(1)
        .map((c) => c.toFixed(1))
        .join(
          ', ',
        )}; getBlob per CPU s: all ${(allPulls.ok / allCpu).toFixed(0)}, cluster ${(pulls.ok / cpu.reduce((a, b) => a + b, 0)).toFixed(0)}, one frontend ${(pulls.ok / 2 / cpu[1]).toFixed(0)}`,
    )
  } finally {
    await redis.close()
    await s3.close()
  }
}

await main()
