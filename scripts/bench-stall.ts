/**
 * Stall benchmark (not part of `npm test`):
 *   node scripts/bench-stall.ts [-- --records 100000 --batch 1000]
 *
 * Starts a hold as a child process and imports `records` stats baselines through the admin API
 * (`batch` per call, as `atcr-hold import-stats` does with 500), so the flushes that follow
 * write that many records. Meanwhile `_health` is asked back to back from a worker thread, and
 * the longest gap between its answers is reported, with the flushes' durations from the
 * metrics: a flush that does not yield between its commits shows as one gap as long as itself.
 */
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { getJson, startHold, stopHold } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
  },
})
const RECORDS = Number(args.records)
const BATCH = Number(args.batch)
const PASSWORD = 'bench-stall-password'

/** Asks _health back to back until told to stop; reports the gaps between answers. */
const POLLER = `
const { workerData, parentPort } = require('node:worker_threads')
const http = require('node:http')
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
let stop = false
parentPort.on('message', () => (stop = true))
const gaps = []
let last = 0
let answers = 0
const ask = () => {
  http.get(workerData.url, { agent }, (res) => {
    res.resume()
    res.on('end', () => {
      const now = performance.now()
      if (last) gaps.push(now - last)
      last = now
      answers++
      if (stop) {
        agent.destroy()
        gaps.sort((a, b) => a - b)
        parentPort.postMessage({ answers, gaps })
      } else ask()
    })
  }).on('error', (err) => parentPort.postMessage({ error: String(err) }))
}
ask()
`

const main = async () => {
  const h = await startHold({
    env: { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_STATS_FLUSH_MS: '1000' },
  })
  try {
    const auth = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`
    const poller = new Worker(POLLER, {
      eval: true,
      workerData: { url: `${h.base}/xrpc/_health` },
    })
    const polled = new Promise<{ answers: number; gaps: number[] }>(
      (resolve, reject) => {
        poller.once('message', resolve)
        poller.once('error', reject)
      },
    )
    const started = performance.now()
    for (let i = 0; i < RECORDS; i += BATCH) {
      const baselines = Array.from(
        { length: Math.min(BATCH, RECORDS - i) },
        (_, k) => ({
          did: `did:plc:stall${String(i + k).padStart(19, '0')}`,
          repository: 'app',
          pullCount: 1 + ((i + k) % 97),
          pushCount: (i + k) % 5,
        }),
      )
      await getJson(`${h.base}/admin/stats/import`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify({ baselines }),
      })
    }
    const imported = performance.now() - started
    // Until every counter has its record.
    for (;;) {
      const status = await getJson<{ stats: { dirtyCounters: number } }>(
        `${h.base}/admin/status`,
        { headers: { authorization: auth } },
      )
      if (status.stats.dirtyCounters === 0) break
      await new Promise((r) => setTimeout(r, 200))
    }
    const done = performance.now() - started
    poller.postMessage('stop')
    const { answers, gaps } = await polled
    await poller.terminate()
    const metrics = await (await fetch(`${h.base}/metrics`)).text()
    const metric = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
    const flushes = metric('hold_stats_flush_duration_seconds_count')
    const flushSeconds = metric('hold_stats_flush_duration_seconds_sum')
    const at = (q: number) =>
      gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))]
    console.log(
      [
        `records ${RECORDS} imported in ${(imported / 1000).toFixed(1)} s (${BATCH} per call), all flushed after ${(done / 1000).toFixed(1)} s`,
        `flushes that wrote records: ${flushes}, ${flushSeconds.toFixed(1)} s in all`,
        `_health answers: ${answers}; gap between answers p50 ${at(0.5).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms, longest ${gaps[gaps.length - 1].toFixed(0)} ms`,
      ].join('\n'),
    )
  } finally {
    await stopHold(h)
  }
}

await main()
