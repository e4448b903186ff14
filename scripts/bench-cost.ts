/**
 * What a counted pull costs the machine (not part of `npm test`), for sizing one:
 *   npm run bench:cost -- [--flush-ms 60000,1000] [--rates 100,1000] [--pairs 50]
 *     [--persist-ms 25] [--help]
 *
 * For each HOLD_STATS_FLUSH_MS given, starts a real hold as a child process (the Node flags of
 * `npm start`, its data dir on the local disk), stores a 1 KiB blob, and measures from outside
 * (/proc/<pid>/stat and /proc/<pid>/io, every thread of the process):
 *   - idle: CPU and bytes written to storage per second with no requests (timers, checkpoints);
 *   - for each rate: counted getBlob (`method=GET` with `repo`, over `--pairs` pairs of DID and
 *     repository) sent at that fixed rate (open loop, from a worker thread of this process),
 *     over a window that starts at one stats flush commit and ends at the next (at least
 *     `--min-window` s: several flush intervals for a short one), so it holds the counter
 *     persists and the flush commits in their steady proportion; and the same requests without
 *     `repo` (not counted) over a window of the same length.
 * Prints CPU microseconds per request (less the idle CPU over the same time), the share of one
 * core at that rate, and bytes written to storage per 1,000 requests (less the idle writes).
 * `write_bytes` counts pages as they are dirtied, so a page written again before it reaches the
 * disk counts once, as the device sees it.
 */
import { randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { ids } from '../src/ids.ts'
import {
  getJson,
  openLoad,
  procSample as sample,
  pushBlob,
  startHold,
  stopHold,
  type Hold,
  type ProcSample,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    'flush-ms': { type: 'string', default: '60000,1000' },
    rates: { type: 'string', default: '100,1000' },
    pairs: { type: 'string', default: '50' },
    'min-window': { type: 'string', default: '10' },
    // HOLD_STATS_PERSIST_MS for the hold; unset, its default (25 ms).
    'persist-ms': { type: 'string' },
    settle: { type: 'string', default: '10' },
    idle: { type: 'string', default: '10' },
    help: { type: 'boolean', default: false },
  },
})

const fileBytes = (path: string) => {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

type Row = {
  flushMs: number
  rate: number
  what: string
  seconds: number
  requests: number
  flushes: number
  cpuUsPerReq: number
  corePct: number
  kbPer1000: number
}

const paths = (digest: string, pairs: number, counted: boolean): string[] =>
  Array.from({ length: pairs }, (_, i) => {
    const q = new URLSearchParams({
      did: `did:plc:costuser${String(Math.floor(i / 5)).padStart(16, '0')}`,
      cid: digest,
      method: 'GET',
    })
    if (counted) q.set('repo', `repo-${i % 5}`)
    return `/xrpc/${ids.SyncGetBlob}?${q}`
  })

const measureHold = async (flushMs: number, rates: number[], pairs: number) => {
  const rows: Row[] = []
  const hold: Hold = await startHold({
    env: {
      HOLD_STATS_FLUSH_MS: String(flushMs),
      ...(args['persist-ms']
        ? { HOLD_STATS_PERSIST_MS: args['persist-ms'] }
        : {}),
    },
  })
  const pid = hold.proc.pid!
  const info = () =>
    getJson<{ count: number; pulls: number }>(`${hold.base}/_bench/info`)
  const nextCommit = () =>
    getJson<{ count: number }>(`${hold.base}/_bench/next-commit`, {
      method: 'POST',
    })
  try {
    const digest = await pushBlob(hold, randomBytes(1024))
    // Past the start's own work (the background walk of the tree, the JIT) before idling.
    await sleep(Number(args.settle) * 1000)
    const idleSeconds = Number(args.idle)
    const i0 = sample(pid)
    await sleep(idleSeconds * 1000)
    const i1 = sample(pid)
    const idle = {
      cpuUsPerS: (i1.cpuUs - i0.cpuUs) / ((i1.at - i0.at) / 1000),
      bytesPerS: (i1.writeBytes - i0.writeBytes) / ((i1.at - i0.at) / 1000),
    }
    console.error(
      `flush ${flushMs} ms: idle ${(idle.cpuUsPerS / 1e4).toFixed(2)}% of a core, ${(idle.bytesPerS / 1024).toFixed(1)} KiB/s written`,
    )
    const minWindowMs = Number(args['min-window']) * 1000
    const row = (
      rate: number,
      what: string,
      a: ProcSample,
      b: ProcSample,
      requests: number,
      flushes: number,
    ): Row => {
      const seconds = (b.at - a.at) / 1000
      const cpu = b.cpuUs - a.cpuUs - idle.cpuUsPerS * seconds
      const bytes = b.writeBytes - a.writeBytes - idle.bytesPerS * seconds
      const r: Row = {
        flushMs,
        rate,
        what,
        seconds,
        requests,
        flushes,
        cpuUsPerReq: cpu / requests,
        corePct: (100 * (b.cpuUs - a.cpuUs)) / 1e6 / seconds,
        kbPer1000: ((bytes / requests) * 1000) / 1024,
      }
      console.error(
        `  ${what} at ${rate}/s: ${seconds.toFixed(1)} s, ${requests} requests, ${flushes} flushes, ${r.cpuUsPerReq.toFixed(0)} µs CPU each, ${r.corePct.toFixed(1)}% of a core, ${r.kbPer1000.toFixed(1)} KiB written per 1,000`,
      )
      return r
    }
    for (const rate of rates) {
      // Counted: from one flush commit to the first one at least minWindow later.
      const maxWindowS = Math.max(flushMs, minWindowMs) / 1000
      const counted = openLoad({
        base: hold.base,
        paths: paths(digest, pairs, true),
        rate,
        // Long enough for a warm-up, a wait for a flush, and the window.
        duration: 3 + 2 * maxWindowS + 5,
      })
      await sleep(2000)
      const start = await nextCommit()
      const a = sample(pid)
      const p0 = (await info()).pulls
      let end = start
      do end = await nextCommit()
      while (performance.now() - a.at < minWindowMs)
      const b = sample(pid)
      const p1 = (await info()).pulls
      rows.push(row(rate, 'counted', a, b, p1 - p0, end.count - start.count))
      const run = await counted
      if (run.errors)
        throw new Error(`counted at ${rate}/s: ${run.errors} errors`)
      // Not counted, over as long a window, once the last counts' persists and checkpoints are
      // done.
      await sleep(3000)
      const seconds = (b.at - a.at) / 1000
      const c = sample(pid)
      const plain = await openLoad({
        base: hold.base,
        paths: paths(digest, pairs, false),
        rate,
        duration: seconds,
      })
      const d = sample(pid)
      if (plain.errors) {
        throw new Error(`not counted at ${rate}/s: ${plain.errors} errors`)
      }
      rows.push(row(rate, 'not counted', c, d, plain.ok, 0))
    }
    const db = join(hold.dir, 'hold.sqlite')
    console.error(
      `  data dir at the end: database ${(fileBytes(db) / 1024).toFixed(0)} KiB, WAL ${(fileBytes(`${db}-wal`) / 1024).toFixed(0)} KiB`,
    )
    return { idle, rows }
  } finally {
    await stopHold(hold)
  }
}

const main = async () => {
  const flushes = args['flush-ms'].split(',').map(Number)
  const rates = args.rates.split(',').map(Number)
  const pairs = Number(args.pairs)
  const load0 = loadavg()
  console.error(
    `bench:cost: HOLD_STATS_FLUSH_MS ${flushes.join(', ')}; HOLD_STATS_PERSIST_MS ${args['persist-ms'] ?? 'default'}; rates ${rates.join(', ')} req/s over ${pairs} pairs; load average ${load0.map((l) => l.toFixed(2)).join(' ')}`,
  )
  const results = []
  for (const flushMs of flushes) {
    results.push({ flushMs, ...(await measureHold(flushMs, rates, pairs)) })
  }
  console.log(
    `\nload average at the start ${load0.map((l) => l.toFixed(2)).join(' ')}, at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(
        ' ',
      )}; ${pairs} (DID, repository) pairs; HOLD_STATS_PERSIST_MS ${args['persist-ms'] ?? 'default (25)'}\n`,
  )
  console.log(
    '| HOLD_STATS_FLUSH_MS | rate asked (req/s) | getBlob | rate served (req/s) | CPU µs per request | share of one core | KiB written per 1,000 requests | window |',
  )
  console.log('|---:|---:|---|---:|---:|---:|---:|---|')
  for (const r of results) {
    console.log(
      `| ${r.flushMs} | idle | | | | ${(r.idle.cpuUsPerS / 1e4).toFixed(2)}% | ${(r.idle.bytesPerS / 1024).toFixed(1)} KiB/s | |`,
    )
    for (const row of r.rows) {
      console.log(
        `| ${row.flushMs} | ${row.rate} | ${row.what} | ${(row.requests / row.seconds).toFixed(0)} | ${row.cpuUsPerReq.toFixed(0)} | ${row.corePct.toFixed(1)}% | ${row.kbPer1000.toFixed(1)} | ${row.seconds.toFixed(0)} s${row.flushes ? `, ${row.flushes} flushes` : ''} |`,
      )
    }
  }
}

if (args.help) {
  console.log(
    'npm run bench:cost -- [--flush-ms 60000,1000] [--rates 100,1000] [--pairs 50] [--persist-ms 25] [--min-window S] [--idle S] [--settle S]',
  )
} else {
  await main()
}
