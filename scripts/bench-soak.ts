/**
 * Soak benchmark (not part of `npm test`, about half an hour):
 *   npm run bench:soak [-- --minutes 30 --pairs 1000 --chart docs/soak.svg --rate N --tree DIR
 *                          --compiled]
 *
 * Starts the hold as a child process (default settings, so stats records are flushed every
 * HOLD_STATS_FLUSH_MS = 60 s), measures its most counted getBlob calls per second (autocannon,
 * 8,000 requests), then sends half that rate, open loop, for --minutes over --pairs (DID, repository)
 * pairs. Every 10 s it samples the hold's resident memory, its event-loop delay (p99 of the
 * window), the WAL's size, and the commits made and records written in the window, with the
 * latency of the window's requests. At the end it stops the load, flushes, and checks that the
 * counts equal the counted 2xx answers, in getStats and in the records. Prints a table and writes
 * the samples as an SVG chart. --compiled runs the hold compiled to JavaScript, as the image
 * runs it (lib.ts, compileBenchServer).
 */
import { statSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ids } from '../src/ids.ts'
import {
  compileBenchServer,
  getJson,
  load,
  median,
  openLoad,
  pushBlob,
  recordPulls,
  startHold,
  stopHold,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    pairs: { type: 'string', default: '1000' },
    chart: { type: 'string', default: 'docs/soak.svg' },
    'sample-s': { type: 'string', default: '10' },
    // A fixed rate instead of half the measured maximum (to compare two trees at one rate).
    rate: { type: 'string' },
    // Another checkout's hold (its scripts/bench-server.ts), driven by this script.
    tree: { type: 'string' },
    compiled: { type: 'boolean', default: false },
  },
})
const MINUTES = Number(args.minutes)
const PAIRS = Number(args.pairs)
const SAMPLE_S = Number(args['sample-s'])
if (!(MINUTES > 0) || !(PAIRS >= 1) || !(SAMPLE_S >= 1)) {
  throw new Error('--minutes, --pairs and --sample-s take positive numbers')
}
const REPOS = 10
const didOf = (i: number) => `did:plc:soak${String(i).padStart(20, '0')}`
const pairOf = (k: number) => ({
  did: didOf(Math.floor(k / REPOS)),
  repo: k % REPOS === 0 ? 'app' : `service-${k % REPOS}`,
})

type Sample = {
  minute: number
  rssMb: number
  loopP99: number
  walMib: number
  commits: number
  records: number
  p99: number
  ok: number
  errors: number
}

type Info = {
  count: number
  ops: number
  rssMb: number
}

const main = async () => {
  const h = await startHold({
    tree: args.tree,
    server: args.compiled ? compileBenchServer(args.tree) : undefined,
    // Every pair is new to this anonymous client: the new-pair limit would refuse most counts.
    env: { HOLD_NEW_PAIRS_PER_HOUR: '0' },
  })
  const samples: Sample[] = []
  try {
    const digest = await pushBlob(h, randomBytes(1024))
    const paths = Array.from({ length: PAIRS }, (_, k) => {
      const { did, repo } = pairOf(k)
      const q = new URLSearchParams({ did, cid: digest, method: 'GET', repo })
      return `/xrpc/${ids.SyncGetBlob}?${q}`
    })
    const wal = join(h.dir, 'hold.sqlite-wal')
    const walMib = () => {
      try {
        return statSync(wal).size / 1024 / 1024
      } catch {
        return 0
      }
    }
    // The most it answers, counting, with 32 connections back to back (a fixed number of
    // requests, so every answer, and so every count, is seen).
    const max = await load({
      base: h.base,
      paths,
      connections: 32,
      amount: 8000,
    })
    const rate = args.rate ? Number(args.rate) : Math.floor(max.rps / 2)
    if (!(rate > 0)) throw new Error('--rate takes a positive number')
    console.error(
      `maximum ${max.rps.toFixed(0)} counted getBlob/s; soaking at ${rate}/s for ${MINUTES} min`,
    )
    let counted = max.ok
    await getJson(`${h.base}/_bench/loop-delay`, { method: 'POST' })
    let before = await getJson<Info>(`${h.base}/_bench/info`)
    const windows = Math.round((MINUTES * 60) / SAMPLE_S)
    let offset = 0
    for (let w = 0; w < windows; w++) {
      // Each window sends its own share of the paths in turn, so every pair keeps being pulled.
      const shifted = [...paths.slice(offset), ...paths.slice(0, offset)]
      offset = (offset + rate * SAMPLE_S) % PAIRS
      const run = await openLoad({
        base: h.base,
        paths: shifted,
        rate,
        duration: SAMPLE_S,
        timeoutMs: 10_000,
      })
      counted += run.ok
      const delay = await getJson<{ p99: number }>(
        `${h.base}/_bench/loop-delay`,
        { method: 'POST' },
      )
      const info = await getJson<Info>(`${h.base}/_bench/info`)
      const sample: Sample = {
        minute: ((w + 1) * SAMPLE_S) / 60,
        rssMb: info.rssMb,
        loopP99: delay.p99,
        walMib: walMib(),
        commits: info.count - before.count,
        records: info.ops - before.ops,
        p99: run.p99,
        ok: run.ok,
        errors: run.errors,
      }
      before = info
      samples.push(sample)
      console.error(
        `${sample.minute.toFixed(1)} min: rss ${sample.rssMb.toFixed(0)} MB, loop p99 ${sample.loopP99} ms, WAL ${sample.walMib.toFixed(1)} MiB, ${sample.commits} commits / ${sample.records} records, request p99 ${sample.p99} ms, ${sample.ok} ok, ${sample.errors} errors`,
      )
    }
    // Every count in: the counters answer at once; the records after a flush.
    await getJson(`${h.base}/_bench/flush`, { method: 'POST' })
    let inStats = 0
    for (let i = 0; i < Math.ceil(PAIRS / REPOS); i++) {
      const page = await getJson<{ stats: { pullCount: number }[] }>(
        `${h.base}/xrpc/${ids.HoldListStats}?did=${didOf(i)}&limit=100`,
      )
      inStats += page.stats.reduce((n, s) => n + s.pullCount, 0)
    }
    const inRecords = await recordPulls(h)

    const first = samples.slice(0, Math.max(1, Math.floor(samples.length / 6)))
    const last = samples.slice(-Math.max(1, Math.floor(samples.length / 6)))
    const med = (xs: Sample[], f: (s: Sample) => number) =>
      xs.length > 0 ? median(xs.map(f)) : NaN
    const flushed = samples.filter((s) => s.commits > 0)
    const quiet = samples.filter((s) => s.commits === 0)
    const rows: [string, string, string][] = [
      [
        'maximum counted getBlob/s (32 connections, 8,000 requests)',
        max.rps.toFixed(0),
        '',
      ],
      [
        'soak rate / duration',
        `${rate}/s for ${MINUTES} min`,
        args.rate ? 'given' : 'half the maximum',
      ],
      [
        'RSS, first / last sixth (median)',
        `${med(first, (s) => s.rssMb).toFixed(0)} / ${med(last, (s) => s.rssMb).toFixed(0)} MB (max ${Math.max(...samples.map((s) => s.rssMb)).toFixed(0)})`,
        'flat',
      ],
      [
        'event-loop delay p99, first / last sixth (median)',
        `${med(first, (s) => s.loopP99)} / ${med(last, (s) => s.loopP99)} ms (max ${Math.max(...samples.map((s) => s.loopP99))})`,
        'flat',
      ],
      [
        'WAL, first / last sixth (median)',
        `${med(first, (s) => s.walMib).toFixed(1)} / ${med(last, (s) => s.walMib).toFixed(1)} MiB (max ${Math.max(...samples.map((s) => s.walMib)).toFixed(1)})`,
        'bounded',
      ],
      [
        'commits / records written',
        `${samples.reduce((n, s) => n + s.commits, 0)} / ${samples.reduce((n, s) => n + s.records, 0)}`,
        'one flush a minute',
      ],
      [
        'request p99 per window, median / max',
        `${med(samples, (s) => s.p99)} / ${Math.max(...samples.map((s) => s.p99))} ms`,
        '',
      ],
      [
        'request p99 per window with a flush / without, median',
        `${med(flushed, (s) => s.p99)} / ${med(quiet, (s) => s.p99)} ms`,
        '',
      ],
      [
        'counted 2xx / in getStats / in records',
        `${counted} / ${inStats} / ${inRecords}`,
        'all equal',
      ],
      ['errors', String(samples.reduce((n, s) => n + s.errors, 0)), '0'],
    ]
    console.log(`\n| measure | value | expected |`)
    console.log(`|---|---|---|`)
    for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`)
    writeFileSync(args.chart, chart(samples, `${rate} counted getBlob/s`))
    console.error(`chart written to ${args.chart}`)
    if (counted !== inStats || counted !== inRecords) process.exitCode = 1
  } finally {
    await stopHold(h)
  }
}

/** Four panels over the minutes of the soak, one polyline each. */
const chart = (samples: Sample[], title: string): string => {
  const panels: { label: string; value: (s: Sample) => number }[] = [
    { label: 'resident memory, MB', value: (s) => s.rssMb },
    { label: 'event-loop delay p99, ms', value: (s) => s.loopP99 },
    { label: 'WAL, MiB', value: (s) => s.walMib },
    { label: 'records committed per window', value: (s) => s.records },
  ]
  const width = 720
  const panelH = 120
  const left = 60
  const right = 20
  const top = 30
  const gap = 40
  const height = top + panels.length * (panelH + gap)
  const maxMinute = Math.max(...samples.map((s) => s.minute), 1)
  const x = (m: number) => left + ((width - left - right) * m) / maxMinute
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="18" font-size="13">Soak: ${title}, sampled every ${SAMPLE_S} s (x: minutes)</text>`,
  ]
  panels.forEach((panel, i) => {
    const y0 = top + i * (panelH + gap) + 16
    const values = samples.map(panel.value)
    const hi = Math.max(...values, 1) * 1.1
    const y = (v: number) => y0 + panelH - (panelH * v) / hi
    parts.push(
      `<text x="${left}" y="${y0 - 4}">${panel.label} (max ${Math.max(...values).toFixed(1)})</text>`,
      `<line x1="${left}" y1="${y0 + panelH}" x2="${width - right}" y2="${y0 + panelH}" stroke="#999"/>`,
      `<line x1="${left}" y1="${y0}" x2="${left}" y2="${y0 + panelH}" stroke="#999"/>`,
      `<text x="${left - 6}" y="${y0 + 4}" text-anchor="end">${hi.toFixed(0)}</text>`,
      `<text x="${left - 6}" y="${y0 + panelH}" text-anchor="end">0</text>`,
      `<text x="${width - right}" y="${y0 + panelH + 14}" text-anchor="end">${maxMinute.toFixed(0)}</text>`,
      `<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="${samples
        .map((s) => `${x(s.minute).toFixed(1)},${y(panel.value(s)).toFixed(1)}`)
        .join(' ')}"/>`,
    )
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

await main()
