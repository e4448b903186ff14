/**
 * WAL benchmark (not part of `npm test`):
 *   node scripts/bench-wal.ts [-- --minutes 10 --connections 16 --records 100000 --data-dir DIR]
 *
 * Seeds a hold with `records` stats records (imported baselines, then flushed; kept in
 * --data-dir when given, so later runs skip it), starts it as a child process and keeps it at
 * its maximum for `minutes`: counted getBlob calls from `connections` clients each sending its
 * next request when the last is answered (so the rate is what the hold sustains), each for a
 * different (DID, repository) pair, so flushes run back to back with as many changed records
 * as the hold can count. Meanwhile, every 30 s, a getRepo export read at 1 MiB/s (from this
 * process, which the load keeps busy, so slower) and one that is never read (the hold cuts it
 * after 30 s), and a sync.getRecord call every 100 ms. The WAL file's
 * size is sampled every 100 ms; the report gives its largest size and percentiles, the flush
 * work done, and the load's latency.
 */
import { statSync } from 'node:fs'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ids } from '../src/ids.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import {
  getJson,
  load,
  pushBlob,
  startHold,
  stopHold,
  type Hold,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16' },
    records: { type: 'string', default: '100000' },
    'data-dir': { type: 'string' },
    port: { type: 'string', default: '18879' },
  },
})
const MINUTES = Number(args.minutes)
const CONNECTIONS = Number(args.connections)
const RECORDS = Number(args.records)
const PASSWORD = 'bench-wal-password'
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`
const MiB = 1024 * 1024

const didOf = (i: number) => `did:plc:walbench${String(i).padStart(16, '0')}`

const adminStatus = (h: Hold) =>
  getJson<{ stats: { dirtyCounters: number; counters: number } }>(
    `${h.base}/admin/status`,
    { headers: { authorization: AUTH } },
  )

/** RECORDS baselines through the admin API, then waits until every one has its record. */
const seed = async (h: Hold) => {
  const started = performance.now()
  for (let i = 0; i < RECORDS; i += 1000) {
    const baselines = Array.from(
      { length: Math.min(1000, RECORDS - i) },
      (_, k) => ({
        did: didOf(i + k),
        repository: 'app',
        pullCount: 1 + ((i + k) % 97),
        pushCount: 0,
      }),
    )
    await getJson(`${h.base}/admin/stats/import`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ baselines }),
    })
  }
  for (;;) {
    const { stats } = await adminStatus(h)
    console.error(`seeding: ${stats.dirtyCounters} records to write`)
    if (stats.dirtyCounters === 0) break
    await new Promise((r) => setTimeout(r, 5000))
  }
  console.error(
    `seeded ${RECORDS} records in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  )
}

/**
 * A getRepo export read at `bytesPerSecond` (0: never read), given up after `ms`: its status,
 * and whether the whole CAR came.
 */
const slowExport = async (h: Hold, bytesPerSecond: number, ms: number) => {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), ms)
  let status = 0
  try {
    const res = await fetch(
      `${h.base}/xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)}`,
      { signal: controller.signal },
    )
    status = res.status
    const size = Number(res.headers.get('content-length'))
    if (bytesPerSecond === 0 || status !== 200) {
      await new Promise((r) => controller.signal.addEventListener('abort', r))
      return { status, complete: false }
    }
    const reader = res.body!.getReader()
    const started = performance.now()
    let received = 0
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.byteLength
      const due = started + (received / bytesPerSecond) * 1000
      const wait = due - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    }
    return { status, complete: received === size }
  } catch {
    return { status, complete: false }
  } finally {
    clearTimeout(timer)
  }
}

const main = async () => {
  const dataDir = args['data-dir']
  const seeded =
    dataDir !== undefined && existsSync(join(dataDir, 'hold.sqlite'))
  const h = await startHold({
    dataDir,
    port: Number(args.port),
    env: { HOLD_ADMIN_PASSWORD: PASSWORD },
  })
  try {
    if (!seeded) await seed(h)
    const wal = join(h.dir, 'hold.sqlite-wal')
    const walBytes = () => {
      try {
        return statSync(wal).size
      } catch {
        return 0
      }
    }
    const digest = await pushBlob(h, new Uint8Array(512).fill(7))
    // Every request a pair of its own, over the seeded pairs and as many new ones.
    const paths = Array.from({ length: 200_000 }, (_, i) => {
      const q = new URLSearchParams({
        did: didOf(i % (2 * RECORDS)),
        cid: digest,
        method: 'GET',
        repo: i < RECORDS ? 'app' : 'web',
      })
      return `/xrpc/${ids.SyncGetBlob}?${q}`
    })
    const seconds = MINUTES * 60
    const samples: number[] = []
    const sampler = setInterval(() => samples.push(walBytes()), 100)
    const metricsBefore = await (await fetch(`${h.base}/metrics`)).text()
    const exports: Promise<{ status: number; complete: boolean }>[] = []
    const exporter = setInterval(() => {
      exports.push(slowExport(h, MiB, 120_000), slowExport(h, 0, 45_000))
    }, 30_000)
    let proofs = 0
    let proofErrors = 0
    const prover = setInterval(() => {
      const rkey = statsRecordKey(didOf(proofs++ % RECORDS), 'app')
      fetch(
        `${h.base}/xrpc/${ids.SyncGetRecord}?did=${encodeURIComponent(h.did)}&collection=${ids.HoldStats}&rkey=${rkey}`,
      )
        .then((r) => {
          if (r.status !== 200) proofErrors++
          return r.arrayBuffer()
        })
        .catch(() => proofErrors++)
    }, 100)
    const progress = setInterval(() => {
      const last = samples.slice(-600)
      console.error(
        `WAL now ${(walBytes() / MiB).toFixed(1)} MiB, largest in the last minute ${(Math.max(0, ...last) / MiB).toFixed(1)} MiB`,
      )
    }, 60_000)
    const run = await load({
      base: h.base,
      paths,
      connections: CONNECTIONS,
      duration: seconds,
    })
    clearInterval(sampler)
    clearInterval(exporter)
    clearInterval(prover)
    clearInterval(progress)
    const exported = await Promise.all(exports)
    const metricsAfter = await (await fetch(`${h.base}/metrics`)).text()
    const metric = (text: string, name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
    const delta = (name: string) =>
      metric(metricsAfter, name) - metric(metricsBefore, name)
    const { stats } = await adminStatus(h)
    const sorted = [...samples].sort((a, b) => a - b)
    const at = (q: number) =>
      (
        sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] / MiB
      ).toFixed(1)
    console.log(
      [
        `${MINUTES} min of counted getBlob calls over new pairs from ${CONNECTIONS} connections (repo of ${RECORDS}+ records)`,
        `load: ${run.rps.toFixed(0)} counted req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, ${run.errors} errors`,
        `flushes: ${delta('hold_stats_flush_duration_seconds_count')} wrote ${delta('hold_stats_flush_records_sum')} records in ${delta('hold_repo_commits_total')} commits, ${delta('hold_stats_flush_duration_seconds_sum').toFixed(0)} s of flushing; ${stats.dirtyCounters} counters still behind at the end`,
        `exports: ${exported.length} (half never read): ${exported.filter((e) => e.status === 200).length} answered 200 (${exported.filter((e) => e.complete).length} read to the end), ${exported.filter((e) => e.status === 429).length} 429 (2 per client); getRecord: ${proofs} calls, ${proofErrors} not 200`,
        `WAL size (every 100 ms): p50 ${at(0.5)} MiB, p99 ${at(0.99)} MiB, largest ${(sorted[sorted.length - 1] / MiB).toFixed(1)} MiB`,
      ].join('\n'),
    )
  } finally {
    await stopHold(h)
  }
}

await main()
