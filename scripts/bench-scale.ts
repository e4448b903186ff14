/**
 * Scale benchmark (not part of `npm test`):
 *   npm run bench:scale [-- --dids 10000 --repos 10 --data-dir /tmp/atcr-scale --pin]
 *
 * Seeds a hold with dids x repos io.atcr.hold.stats records (100,000 by default) through the
 * real counting path (counter table, then flushes of 200 records per commit), then starts it as a
 * child process and measures: start-up time, RSS, the time to flush 200 changed records,
 * getStats and listStats latency at 1,000 req/s (open loop, with a bare route as the floor and
 * the hold's event-loop delay), and the time to export the repo with getRepo. With --data-dir
 * an already seeded directory is reused (seeding is the slow part). --pin puts the hold and this
 * process on separate cores (taskset).
 */
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { verifyRepoCar } from '@atproto/repo'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import { testPlcUrl, identity } from '../test/_identity.ts'
import {
  getJson,
  median,
  openLoad,
  type OpenRun,
  OWNER,
  pushBlob,
  startHold,
  stopHold,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    dids: { type: 'string', default: '10000' },
    repos: { type: 'string', default: '10' },
    'data-dir': { type: 'string' },
    verify: { type: 'boolean', default: false },
    // The hold's DID names its port, so seeding and measuring use the same one.
    port: { type: 'string', default: '18877' },
    pin: { type: 'boolean', default: false },
  },
})
const DIDS = Number(args.dids)
const REPOS = Number(args.repos)
const dataDir =
  args['data-dir'] ?? join(tmpdir(), `atcr-scale-${DIDS}x${REPOS}`)

const didOf = (i: number) => `did:plc:scale${String(i).padStart(19, '0')}`
const repoOf = (j: number) => (j === 0 ? 'app' : `service-${j}`)

const latencies = (run: OpenRun) =>
  `p50 ${run.p50} ms, p99 ${run.p99} ms, p99.9 ${run.p999} ms, max ${run.max} ms; ${run.rps.toFixed(0)} req/s, ${run.errors} errors`

const progress = (label: string, done: number, total: number) => {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${label} ${done}/${total}`)
    if (done === total) process.stderr.write('\n')
  } else if (done === total || done % Math.ceil(total / 10) === 0) {
    console.error(`${label} ${done}/${total}`)
  }
}

/** Counts for every pair through the hold's own counting path, then flushes them all. */
const seed = async () => {
  await mkdir(dataDir, { recursive: true })
  await identity(OWNER)
  const env = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: args.port,
    HOLD_DATA_DIR: dataDir,
    HOLD_OWNER_DID: OWNER,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_STATS_FLUSH_MS: '86400000',
    LOG_LEVEL: 'warn',
  })
  const hold = await HoldServer.create(envToCfg(env, 'seed'), envToSecrets(env))
  const started = performance.now()
  const total = DIDS * REPOS
  let commits = 0
  hold.ctx.writer.onCommit(() => {
    commits++
    progress('committing', Math.min(commits * 200, total), total)
  })
  for (let i = 0; i < DIDS; i++) {
    for (let j = 0; j < REPOS; j++) {
      const n = 1 + ((i * 7 + j * 13) % 50)
      for (let k = 0; k < n; k++) hold.ctx.stats.countPull(didOf(i), repoOf(j))
    }
    if (i % 1000 === 999) hold.ctx.stats.persist()
  }
  const flush = await hold.ctx.stats.flush()
  await hold.destroy()
  console.error(
    `seeded ${flush.records} records in ${flush.commits} commits, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  )
}

const main = async () => {
  if (!existsSync(join(dataDir, 'hold.sqlite'))) await seed()
  else console.error(`reusing ${dataDir}`)

  const h = await startHold({
    dataDir,
    port: Number(args.port),
    env: { HOLD_STATS_FLUSH_MS: '86400000' },
  })
  const rows: [string, string, string][] = []
  try {
    const startMs = h.startMs
    const rssStart = (await getJson<{ rssMb: number }>(`${h.base}/_bench/info`))
      .rssMb

    const mem = async (phase: string) => {
      const m = await getJson<{
        rssMb: number
        heapMb: number
        externalMb: number
        nodeCacheMb: number
        status: Record<string, string>
      }>(`${h.base}/_bench/info`)
      console.error(
        `${phase}: rss ${m.rssMb.toFixed(0)} MB, heap ${m.heapMb.toFixed(0)} MB, external ${m.externalMb.toFixed(0)} MB, node cache ${m.nodeCacheMb.toFixed(1)} MB, ${Object.entries(
          m.status,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      )
    }
    await mem('after start')
    // A 200-record flush: 200 counted pulls over 200 different pairs spread over the repo.
    const blob = randomBytes(512)
    const digest = await pushBlob(h, blob)
    const flushMs: number[] = []
    for (let round = 0; round < 5; round++) {
      const pulls = Array.from({ length: 200 }, (_, k) => {
        const i = (round * 1999 + k * 49) % DIDS
        const q = new URLSearchParams({
          did: didOf(i),
          cid: digest,
          method: 'GET',
          repo: repoOf(k % REPOS),
        })
        return fetch(`${h.base}/xrpc/com.atproto.sync.getBlob?${q}`).then((r) =>
          r.arrayBuffer(),
        )
      })
      await Promise.all(pulls)
      const result = await getJson<{
        records: number
        commits: number
        ms: number
      }>(`${h.base}/_bench/flush`, { method: 'POST' })
      if (result.records !== 200 || result.commits !== 1) {
        throw new Error(
          `expected one commit of 200 records, got ${JSON.stringify(result)}`,
        )
      }
      flushMs.push(result.ms)
    }

    await mem('after start and 5 flushes')
    const statsPaths = Array.from({ length: 500 }, (_, k) => {
      const q = new URLSearchParams({
        did: didOf((k * 97) % DIDS),
        repo: repoOf(k % REPOS),
      })
      return `/xrpc/io.atcr.hold.getStats?${q}`
    })
    const listPaths = Array.from(
      { length: 500 },
      (_, k) => `/xrpc/io.atcr.hold.listStats?did=${didOf((k * 97) % DIDS)}`,
    )
    // Open-loop, one request every millisecond for 10 s (see openLoad), with the bare Hono
    // route at the same rate as the floor this machine and stack set for any route.
    const at1000 = (paths: string[], duration = 10) =>
      openLoad({ base: h.base, paths, rate: 1000, duration })
    // --pin: the hold on CPU 0, this process (the load generator) on CPU 1, to see how much of
    // the latency tail is the two sharing both cores.
    if (args.pin) {
      execFileSync('taskset', ['-a', '-cp', '0', String(h.proc.pid)])
      execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)])
    }
    // Unmeasured: the routes compiled and the connections open before the clock starts.
    await at1000(['/_bench/bare', ...statsPaths, ...listPaths], 2)
    type Delay = { p50: number; p99: number; p999: number; max: number }
    const loopDelay = () =>
      getJson<Delay>(`${h.base}/_bench/loop-delay`, { method: 'POST' })
    await loopDelay()
    const getStats = await at1000(statsPaths)
    const getStatsDelay = await loopDelay()
    const listStats = await at1000(listPaths)
    await loopDelay()
    const bare = await at1000(['/_bench/bare'])
    const bareDelay = await loopDelay()

    await mem('after getStats/listStats load')
    const exportStarted = performance.now()
    const car = new Uint8Array(
      await (
        await fetch(
          `${h.base}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(h.did)}`,
        )
      ).arrayBuffer(),
    )
    const exportMs = performance.now() - exportStarted
    let verified = ''
    if (args.verify) {
      const started = performance.now()
      const repo = await verifyRepoCar(car, h.did)
      verified = `, verifyRepoCar: ${repo.creates.length} records in ${((performance.now() - started) / 1000).toFixed(1)} s`
    }
    await mem('after getRepo export')
    const rssEnd = (await getJson<{ rssMb: number }>(`${h.base}/_bench/info`))
      .rssMb

    rows.push(
      ['records', `${DIDS * REPOS} (${DIDS} DIDs x ${REPOS} repositories)`, ''],
      ['start-up (spawn to listening)', `${startMs.toFixed(0)} ms`, '< 3 s'],
      [
        'RSS after start / after the run',
        `${rssStart.toFixed(0)} / ${rssEnd.toFixed(0)} MB`,
        '< 300 MB',
      ],
      [
        'flush of 200 changed records (median of 5)',
        `${median(flushMs).toFixed(0)} ms (${flushMs.map((m) => m.toFixed(0)).join(', ')})`,
        '< 150 ms',
      ],
      [
        'getStats at 1,000 req/s (open loop, 10 s)',
        latencies(getStats),
        'p99 < 5 ms',
      ],
      ['listStats at 1,000 req/s (open loop, 10 s)', latencies(listStats), ''],
      ['bare Hono route at 1,000 req/s (the floor)', latencies(bare), ''],
      [
        "the hold's event-loop delay during getStats / bare",
        `p99 ${getStatsDelay.p99} / ${bareDelay.p99} ms, p99.9 ${getStatsDelay.p999} / ${bareDelay.p999} ms, max ${getStatsDelay.max} / ${bareDelay.max} ms`,
        '',
      ],
      [
        'getRepo export',
        `${(exportMs / 1000).toFixed(1)} s, ${(car.byteLength / 1024 / 1024).toFixed(1)} MiB${verified}`,
        '',
      ],
    )
    console.log(`\n| measure | value | target |`)
    console.log(`|---|---|---|`)
    for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`)
    const digestOfCar = createHash('sha256')
      .update(car)
      .digest('hex')
      .slice(0, 12)
    console.error(`car sha256 ${digestOfCar}...`)
  } finally {
    await stopHold(h)
  }
}

await main()
