/**
 * uploadPart throughput (part of `npm run bench`, or alone: `node scripts/bench-upload.ts
 * [--mib 256] [--part-mib 16] [--rounds 3]`): the owner pushes one blob through
 * io.atcr.hold.initiateUpload, uploadPart (parts in order, one at a time, each with its
 * Content-Length) and completeUpload, on a real hold (a child process) with
 * - `s3`: HOLD_STORAGE=s3 against scripts/s3-sink.ts, an S3 stand-in that drains bodies and
 *   verifies nothing, so the figure is the hold's own cost (relay, sha256, signing);
 * - `disk`: HOLD_STORAGE=disk (parts written into the assembly while hashed).
 * Reports MB/s over the parts, the time completion took, and the hold's resident memory
 * (sampled from /metrics every half second while the parts go through).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import http from 'node:http'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { median, OWNER, ownerToken, startHold, stopHold } from './lib.ts'

export type UploadRun = {
  store: 'disk' | 's3'
  mbps: number
  /** MB of parts per CPU-second of the hold: steadier than MB/s on a shared machine. */
  mbPerCpuS: number
  completeMs: number
  rssIdleMiB: number
  rssPeakMiB: number
}

const startSink = async (): Promise<{
  proc: ChildProcess
  endpoint: string
}> => {
  const proc = spawn(
    process.execPath,
    [new URL('./s3-sink.ts', import.meta.url).pathname],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve)
    proc.once('exit', () => reject(new Error('s3-sink exited')))
  })
  return { proc, endpoint: (JSON.parse(line) as { endpoint: string }).endpoint }
}

const agent = new http.Agent({ keepAlive: true })

const send = (
  url: string,
  headers: Record<string, string>,
  body: Buffer | string,
): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        let text = ''
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode!, text }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })

const processMetric = async (base: string, name: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  const m = new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text)
  return Number(m?.[1] ?? 0)
}
const rssMiB = async (base: string): Promise<number> =>
  (await processMetric(base, 'process_resident_memory_bytes')) / 2 ** 20
const cpuSeconds = (base: string): Promise<number> =>
  processMetric(base, 'process_cpu_seconds_total')

/** Parts of distinct content, generated once (the client's cost is not the hold's). */
const makeParts = (totalBytes: number, partBytes: number): Buffer[] => {
  const parts: Buffer[] = []
  for (let at = 0, n = 1; at < totalBytes; at += partBytes, n++) {
    const size = Math.min(partBytes, totalBytes - at)
    const seed = createHash('sha512').update(`part ${n}`).digest()
    const b = Buffer.allocUnsafe(size)
    for (let i = 0; i < size; i += seed.length) seed.copy(b, i)
    parts.push(b)
  }
  return parts
}

const pushOnce = async (
  base: string,
  did: string,
  parts: Buffer[],
  digest: string,
): Promise<{
  mbps: number
  mbPerCpuS: number
  completeMs: number
  peak: number
}> => {
  const auth = async (nsid: string) => ({
    authorization: `Bearer ${await ownerToken(did, nsid)}`,
  })
  const json = { 'content-type': 'application/json' }
  const init = await send(
    `${base}/xrpc/io.atcr.hold.initiateUpload`,
    { ...json, ...(await auth('io.atcr.hold.initiateUpload')) },
    JSON.stringify({ digest, did: OWNER, repo: 'bench/upload' }),
  )
  if (init.status !== 200) throw new Error(`initiate: ${init.text}`)
  const { uploadId } = JSON.parse(init.text) as { uploadId: string }
  const partAuth = await auth('io.atcr.hold.uploadPart')
  let peak = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await rssMiB(base))
      await new Promise((r) => setTimeout(r, 500))
    }
  })()
  const listed = []
  const cpu0 = await cpuSeconds(base)
  const t0 = performance.now()
  for (let n = 1; n <= parts.length; n++) {
    const res = await send(
      `${base}/xrpc/io.atcr.hold.uploadPart`,
      {
        'content-type': 'application/octet-stream',
        'x-upload-id': uploadId,
        'x-part-number': String(n),
        ...partAuth,
      },
      parts[n - 1],
    )
    if (res.status !== 200) throw new Error(`part ${n}: ${res.text}`)
    listed.push({
      partNumber: n,
      etag: (JSON.parse(res.text) as { etag: string }).etag,
    })
  }
  const seconds = (performance.now() - t0) / 1000
  sampling = false
  await sampler
  const cpu = (await cpuSeconds(base)) - cpu0
  const bytes = parts.reduce((n, p) => n + p.length, 0)
  const c0 = performance.now()
  const done = await send(
    `${base}/xrpc/io.atcr.hold.completeUpload`,
    { ...json, ...(await auth('io.atcr.hold.completeUpload')) },
    JSON.stringify({ uploadId, digest, parts: listed }),
  )
  if (done.status !== 200) throw new Error(`complete: ${done.text}`)
  return {
    mbps: bytes / 1e6 / seconds,
    mbPerCpuS: bytes / 1e6 / cpu,
    completeMs: performance.now() - c0,
    peak,
  }
}

/** Pushes a blob of `mib` MiB `rounds` times on each store; returns the median of each. */
export const benchUpload = async (opts: {
  mib: number
  partMib: number
  rounds: number
}): Promise<UploadRun[]> => {
  const parts = makeParts(opts.mib * 2 ** 20, opts.partMib * 2 ** 20)
  const results: UploadRun[] = []
  const sink = await startSink()
  try {
    for (const store of ['s3', 'disk'] as const) {
      const env: Record<string, string> =
        store === 's3'
          ? {
              HOLD_STORAGE: 's3',
              BUCKET_NAME: 'bench',
              AWS_ENDPOINT_URL_S3: sink.endpoint,
              AWS_REGION: 'us-east-1',
              AWS_ACCESS_KEY_ID: 'AKBENCH',
              AWS_SECRET_ACCESS_KEY: 'bench-secret',
              HOLD_S3_PATH_STYLE: 'true',
            }
          : {}
      const hold = await startHold({ env })
      try {
        const idle = await rssMiB(hold.base)
        const runs = []
        for (let round = 1; round <= opts.rounds; round++) {
          // A distinct blob each round (disk keeps a blob it already has).
          const roundParts = [...parts]
          roundParts[0] = Buffer.from(parts[0])
          roundParts[0].writeUInt32BE(round, 0)
          const hash = createHash('sha256')
          for (const p of roundParts) hash.update(p)
          const digest = `sha256:${hash.digest('hex')}`
          const run = await pushOnce(hold.base, hold.did, roundParts, digest)
          console.error(
            `upload ${store} round ${round}: ${run.mbps.toFixed(0)} MB/s (${run.mbPerCpuS.toFixed(0)} MB per CPU-s), complete ${run.completeMs.toFixed(0)} ms, rss peak ${run.peak.toFixed(0)} MiB`,
          )
          runs.push(run)
        }
        results.push({
          store,
          mbps: median(runs.map((r) => r.mbps)),
          mbPerCpuS: median(runs.map((r) => r.mbPerCpuS)),
          completeMs: median(runs.map((r) => r.completeMs)),
          rssIdleMiB: idle,
          rssPeakMiB: Math.max(...runs.map((r) => r.peak)),
        })
      } finally {
        await stopHold(hold)
      }
    }
  } finally {
    sink.proc.kill()
    agent.destroy()
  }
  return results
}

export const printUploadRuns = (
  runs: UploadRun[],
  opts: { mib: number; partMib: number },
): void => {
  console.log(
    `\n| uploadPart, ${opts.mib} MiB as ${opts.partMib} MiB parts | median MB/s | MB per hold CPU-second | completeUpload ms | hold RSS idle / peak MiB | target |`,
  )
  console.log(`|---|---:|---:|---:|---|---|`)
  for (const r of runs) {
    console.log(
      `| ${r.store === 's3' ? 's3 (drain stand-in)' : 'disk'} | ${r.mbps.toFixed(0)} | ${r.mbPerCpuS.toFixed(0)} | ${r.completeMs.toFixed(0)} | ${r.rssIdleMiB.toFixed(0)} / ${r.rssPeakMiB.toFixed(0)} | >= 100 MB/s |`,
    )
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '256' },
      'part-mib': { type: 'string', default: '16' },
      rounds: { type: 'string', default: '3' },
    },
  })
  const opts = {
    mib: Number(values.mib),
    partMib: Number(values['part-mib']),
    rounds: Number(values.rounds),
  }
  printUploadRuns(await benchUpload(opts), opts)
}
