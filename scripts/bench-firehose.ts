/**
 * Firehose fan-out benchmark (not part of `npm test`):
 *   node scripts/bench-firehose.ts [--rounds 3 --requests 20000 --subscribers 100 --flush-ms 250]
 *        [--pin]
 *
 * One real hold (a child process) counting getBlob calls and flushing every `--flush-ms`, so
 * commits and their events follow the load. Each round runs counted getBlob (autocannon, from
 * this process) once with no subscriber and once with `--subscribers` live subscribeRepos
 * clients (another process), in alternating order, and reports the throughput ratio of the same
 * run, how long events took from their commit to a subscriber (p50, p99, max), and the hold's
 * memory; then the same latency with subscribers and a light load (events at rest). Each run
 * also reads the hold's own CPU time, so the report gives the hold's CPU per counted getBlob
 * with and without subscribers: what the fan-out costs the hold, apart from what the
 * subscribers' process and the load generator take from a shared machine. --pin puts the hold
 * on CPU 0 and this process and the subscribers' on CPU 1 (taskset).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import {
  getJson,
  load,
  median,
  openLoad,
  pushBlob,
  ROOT,
  startHold,
  stopHold,
  type Hold,
  type Run,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    subscribers: { type: 'string', default: '100' },
    'flush-ms': { type: 'string', default: '250' },
    pin: { type: 'boolean', default: false },
  },
})
const REQUESTS = Number(args.requests)
const ROUNDS = Number(args.rounds)
const CONNECTIONS = Number(args.connections)
const SUBSCRIBERS = Number(args.subscribers)
const FLUSH_MS = Number(args['flush-ms'])

const DIDS = Array.from(
  { length: 10 },
  (_, i) => `did:plc:benchuser${String(i).padStart(15, '0')}`,
)
const REPOS = ['app', 'api', 'worker', 'tools/builder', 'base-image']

type Measured = {
  latency: number[]
  frames: number
  bytes: number
  closed: number
}

/** Starts the clients; resolves once all are connected, with a function that stops them. */
const subscribers = async (
  hold: Hold,
  n: number,
): Promise<() => Promise<Measured>> => {
  const child: ChildProcess = fork(
    `${ROOT}scripts/firehose-clients.ts`,
    [hold.base, String(n)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  )
  if (args.pin) execFileSync('taskset', ['-a', '-cp', '1', String(child.pid)])
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve())
    child.once('exit', () => reject(new Error('clients exited')))
  })
  return () =>
    new Promise((resolve) => {
      child.removeAllListeners('exit')
      child.once('message', (m) => resolve(m as Measured))
      child.send('stop')
    })
}

const pct = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

const main = async () => {
  console.error(
    `bench-firehose: ${ROUNDS} rounds, ${REQUESTS} counted getBlob per run, ${SUBSCRIBERS} subscribers, flush every ${FLUSH_MS} ms`,
  )
  const hold = await startHold({
    env: { HOLD_STATS_FLUSH_MS: String(FLUSH_MS) },
  })
  if (args.pin) {
    execFileSync('taskset', ['-a', '-cp', '0', String(hold.proc.pid)])
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)])
  }
  const cpuMs = async () =>
    (await getJson<{ cpuMs: number }>(`${hold.base}/_bench/info`)).cpuMs
  try {
    const digest = await pushBlob(hold, randomBytes(1024))
    const paths = DIDS.flatMap((did) =>
      REPOS.map(
        (repo) =>
          `/xrpc/com.atproto.sync.getBlob?${new URLSearchParams({ did, cid: digest, method: 'GET', repo })}`,
      ),
    )
    // The hold's CPU microseconds per request of each run, by the same order as the runs.
    const cpuPer: { without: number[]; with: number[] } = {
      without: [],
      with: [],
    }
    const run = async (subs: boolean) => {
      const before = await cpuMs()
      const r = await load({
        base: hold.base,
        paths,
        connections: CONNECTIONS,
        amount: REQUESTS,
      })
      const us = ((await cpuMs()) - before) * 1000
      cpuPer[subs ? 'with' : 'without'].push(us / REQUESTS)
      return r
    }
    await load({
      base: hold.base,
      paths,
      connections: CONNECTIONS,
      amount: REQUESTS / 4,
    })
    const without: Run[] = []
    const withSubs: Run[] = []
    const latency: number[] = []
    let frames = 0
    let bytes = 0
    let rss = 0
    for (let round = 1; round <= ROUNDS; round++) {
      for (const subs of round % 2 ? [false, true] : [true, false]) {
        if (!subs) {
          const r = await run(false)
          without.push(r)
          console.error(
            `round ${round} no subscribers   ${r.rps.toFixed(0).padStart(6)} req/s  p99 ${r.p99} ms  errors ${r.errors}`,
          )
          continue
        }
        const stop = await subscribers(hold, SUBSCRIBERS)
        const r = await run(true)
        rss = Math.max(
          rss,
          (await getJson<{ rssMb: number }>(`${hold.base}/_bench/info`)).rssMb,
        )
        const m = await stop()
        withSubs.push(r)
        latency.push(...m.latency)
        frames += m.frames
        bytes += m.bytes
        console.error(
          `round ${round} ${SUBSCRIBERS} subscribers ${r.rps.toFixed(0).padStart(6)} req/s  p99 ${r.p99} ms  errors ${r.errors}  ${m.latency.length} commits, ${(m.bytes / 2 ** 20).toFixed(1)} MiB to subscribers, ${m.closed} closed early`,
        )
      }
    }
    // Events at rest: subscribers, and counts at 50 req/s for 10 s.
    const stop = await subscribers(hold, SUBSCRIBERS)
    await openLoad({ base: hold.base, paths, rate: 50, duration: 10 })
    const rest = await stop()
    const info = await getJson<{ count: number; rssMb: number }>(
      `${hold.base}/_bench/info`,
    )
    const ratio =
      median(withSubs.map((r) => r.rps)) / median(without.map((r) => r.rps))
    const rows: [string, string, string][] = [
      [
        'counted getBlob, no subscribers (median req/s)',
        median(without.map((r) => r.rps)).toFixed(0),
        '',
      ],
      [
        `counted getBlob, ${SUBSCRIBERS} subscribers (median req/s)`,
        median(withSubs.map((r) => r.rps)).toFixed(0),
        '',
      ],
      [
        'ratio (same run)',
        `${ratio.toFixed(3)} (per round: ${withSubs.map((r, i) => (r.rps / without[i].rps).toFixed(2)).join(', ')})`,
        '>= 0.95',
      ],
      [
        "the hold's CPU per counted getBlob, none / with subscribers (median)",
        `${median(cpuPer.without).toFixed(1)} / ${median(cpuPer.with).toFixed(1)} µs: ${(median(cpuPer.without) / median(cpuPer.with)).toFixed(3)} (per round: ${cpuPer.with.map((w, i) => (cpuPer.without[i] / w).toFixed(2)).join(', ')})`,
        '',
      ],
      [
        'commit to subscriber, under load',
        `p50 ${pct(latency, 0.5)} ms, p99 ${pct(latency, 0.99)} ms, max ${Math.max(...latency)} ms (${latency.length} commits)`,
        'p99 < 50 ms',
      ],
      [
        'commit to subscriber, light load',
        `p50 ${pct(rest.latency, 0.5)} ms, p99 ${pct(rest.latency, 0.99)} ms, max ${Math.max(...rest.latency)} ms (${rest.latency.length} commits)`,
        'p99 < 50 ms',
      ],
      [
        'sent to subscribers under load',
        `${frames} frames, ${(bytes / 2 ** 20).toFixed(1)} MiB`,
        '',
      ],
      ['hold RSS with subscribers (max)', `${rss.toFixed(0)} MB`, ''],
      ['commits made in the run', String(info.count), ''],
    ]
    console.log('| measure | value | target |\n| --- | --- | --- |')
    for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`)
  } finally {
    await stopHold(hold)
  }
}

await main()
