/**
 * Hostile-load benchmark (not part of `npm test`): replays the attacks of issue 19's items 2, 3,
 * 4, 5 and 10 against real holds started as child processes, this checkout's and, with `--tree`,
 * another checkout's (the code before the hardening), attack by attack in one run, and prints a
 * table per attack: the hold's memory, its WAL's size, an honest client's latency (or, for the
 * token attacks, its throughput) and the attacker's answers, before vs after, with ratios.
 *
 *   npm run bench:hostile -- [--tree DIR] [--only NAME,...] [--duration S] [--help]
 *
 * Each attack gets a fresh hold on a copy of a data dir seeded once per checkout, its heap capped
 * with --max-old-space-size and its RSS watched from outside (killed past a cap): a hold that
 * runs out of memory or crashes is a result in the table, not a failed run. The two checkouts
 * take turns going first, attack by attack, so the shared machine's load falls on both alike.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request, Agent, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { gzipSync } from 'node:zlib'
import { Secp256k1Keypair } from '@atproto/crypto'
import { identity, serviceToken, testPlcUrl } from '../test/_identity.ts'
import {
  freePort,
  getJson,
  openLoad,
  OWNER,
  ownerToken,
  pushBlob,
  ROOT,
  startHold,
  stopHold,
  type Hold,
} from './lib.ts'

const ATTACKS = [
  'pairs',
  'pairs-unlimited',
  'random-pairs',
  'did-gzip',
  'did-huge',
  'export-abandon',
  'token-replay',
  'forged-tokens',
  'many-issuers',
] as const
type AttackName = (typeof ATTACKS)[number]

/** `text` in lines of at most 96 characters, the later ones indented by `indent`. */
const wrap = (text: string, indent: number) => {
  const lines = ['']
  for (const word of text.split(' ')) {
    const last = lines[lines.length - 1]
    if (last.length + word.length + 1 > 96 && last.trim())
      lines.push(' '.repeat(indent) + word)
    else lines[lines.length - 1] = last ? `${last} ${word}` : word
  }
  return lines.join('\n')
}

const usage =
  () => `Hostile-load benchmark: issue 19's attacks against real holds, before and after.

  npm run bench:hostile -- [options]

Attacks (--only picks some, comma-separated; default all, in this order):
${ATTACKS.map((a) => `  ${wrap(`${a.padEnd(16)} item ${ATTACK_DEFS[a].item}: ${ATTACK_DEFS[a].what}`, 19)}`).join('\n')}

Options:
  --tree DIR            the checkout to compare with ("before"), run attack by attack beside
                        this one ("after", ${ROOT}); without it only this one runs
  --only NAMES          attacks to run
  --duration S          length of each attack (default 10)
  --window S            honest measurement before and after each attack (default 3)
  --records N           stats records seeded into the repo first (default 20000)
  --connections N       the attacker's connections (default 16)
  --probe-rate N        honest requests per second, open loop, _health and getBlob (default 100)
  --heap-mb N           the hold's --max-old-space-size (default 512)
  --rss-cap-mb N        the hold is killed past this RSS, as the OOM killer of a machine of
                        that size would, and that is its result (default 512)
  --slow-read-kib N     pairs: the slow export's read rate, KiB/s (default 64)
  --bomb-mib N          did-gzip, did-huge: MiB of the document once inflated (default 256)
  --bomb-requests N     did-gzip, did-huge: requests per wave, one issuer each (default 16)
  --exports N           export-abandon: exports started (default 100)
  --abandon-after S     export-abandon: seconds they stay open unread (default 10)
  --issuers N           many-issuers: issuers at most (default 50000)
  --issuer-seconds S    many-issuers: seconds at most (default 20)
  --port N              the holds' port (default: a free one; the data dir's DID names it)
  --json FILE           also write the results as JSON
  --help                this text

Progress goes to stderr, the tables (Markdown) to stdout. The hold's Node flags are those of
npm start plus --max-old-space-size; LOG_LEVEL=warn, its stderr kept for the crash report.`

const { values: args } = parseArgs({
  options: {
    tree: { type: 'string' },
    only: { type: 'string' },
    duration: { type: 'string', default: '10' },
    window: { type: 'string', default: '3' },
    records: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '16' },
    'probe-rate': { type: 'string', default: '100' },
    'heap-mb': { type: 'string', default: '512' },
    'rss-cap-mb': { type: 'string', default: '512' },
    'slow-read-kib': { type: 'string', default: '64' },
    'bomb-mib': { type: 'string', default: '256' },
    'bomb-requests': { type: 'string', default: '16' },
    exports: { type: 'string', default: '100' },
    'abandon-after': { type: 'string', default: '10' },
    issuers: { type: 'string', default: '50000' },
    'issuer-seconds': { type: 'string', default: '20' },
    port: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

const num = (name: keyof typeof args): number => {
  const n = Number(args[name])
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`--${name} must be a number`)
  return n
}
const BEFORE_TREE = args.tree === undefined ? undefined : resolve(args.tree)
const DURATION_S = num('duration')
const WINDOW_S = num('window')
const RECORDS = num('records')
const CONNECTIONS = num('connections')
const PROBE_RATE = num('probe-rate')
const HEAP_MB = num('heap-mb')
const RSS_CAP_MB = num('rss-cap-mb')
const SLOW_READ_KIB = num('slow-read-kib')
const BOMB_MIB = num('bomb-mib')
const BOMB_REQUESTS = num('bomb-requests')
const EXPORTS = num('exports')
const ABANDON_AFTER_S = num('abandon-after')
const ISSUERS = num('issuers')
const ISSUER_SECONDS = num('issuer-seconds')
const PASSWORD = 'bench-hostile-password'
const ADMIN = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`
const GET_BLOB = 'com.atproto.sync.getBlob'
const MiB = 1024 * 1024

const t0 = Date.now()
const log = (msg: string) =>
  process.stderr.write(
    `[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`,
  )
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const mb = (bytes: number) => (bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)
const load1 = () => loadavg()[0].toFixed(1)

// ---------------------------------------------------------------------------------------------
// The DID directory the holds ask: the test directory's identities (the owner), passed through
// and counted, and any number of made-up did:plc issuers sharing one key, for many-issuers.

const MASS_PREFIX = 'did:plc:hostile'
const massDid = (i: number) =>
  `${MASS_PREFIX}${i.toString(36).padStart(17, '0')}`

type Directory = {
  url: string
  fetched: { owner: number; mass: number; other: number }
  close: () => Promise<void>
}

const startDirectory = async (): Promise<Directory> => {
  const upstream = await testPlcUrl()
  const key = (await Secp256k1Keypair.create()).did().slice('did:key:'.length)
  const fetched = { owner: 0, mass: 0, other: 0 }
  // A document shaped as the PLC directory's are (one key, a handle, a PDS).
  const massDoc = (did: string) =>
    JSON.stringify({
      '@context': [
        'https://www.w3.org/ns/did/v1',
        'https://w3id.org/security/multikey/v1',
        'https://w3id.org/security/suites/secp256k1-2019/v1',
      ],
      id: did,
      alsoKnownAs: [`at://${did.slice(-12)}.bsky.social`],
      verificationMethod: [
        {
          id: `${did}#atproto`,
          type: 'Multikey',
          controller: did,
          publicKeyMultibase: key,
        },
      ],
      service: [
        {
          id: '#atproto_pds',
          type: 'AtprotoPersonalDataServer',
          serviceEndpoint: 'https://shiitake.us-east.host.bsky.network',
        },
      ],
    })
  const server = createServer((req, res) => {
    const did = decodeURIComponent((req.url ?? '/').slice(1))
    if (did.startsWith(MASS_PREFIX)) {
      fetched.mass++
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(massDoc(did))
      return
    }
    if (did === OWNER) fetched.owner++
    else fetched.other++
    fetch(`${upstream}${req.url}`)
      .then(async (up) => {
        res.writeHead(up.status, {
          'content-type': up.headers.get('content-type') ?? 'application/json',
        })
        res.end(Buffer.from(await up.arrayBuffer()))
      })
      .catch(() => res.writeHead(502).end())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fetched,
    close: () => closeServer(server),
  }
}

const closeServer = (server: Server) =>
  new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  })

// ---------------------------------------------------------------------------------------------
// The watch: the hold's RSS and WAL every 100 ms and its open files every 500 ms, sampled from a
// worker thread (so the load this process drives cannot delay it), which also kills the hold
// when its RSS passes the cap.

type Sample = {
  at: number
  rss: number
  wal: number
  fds?: { all: number; sqlite: number; deleted: number }
}

const WATCH_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const fs = require('node:fs')
const { pid, wal, capBytes } = workerData
let ticks = 0
let killed = false
const timer = setInterval(() => {
  let rss = 0
  try {
    const m = /VmRSS:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8'))
    rss = m ? Number(m[1]) * 1024 : 0
  } catch {
    clearInterval(timer)
    parentPort.postMessage({ gone: true })
    return
  }
  let walBytes = 0
  try { walBytes = fs.statSync(wal).size } catch {}
  const sample = { at: Date.now(), rss, wal: walBytes }
  if (ticks++ % 5 === 0) {
    try {
      const fds = { all: 0, sqlite: 0, deleted: 0 }
      for (const fd of fs.readdirSync('/proc/' + pid + '/fd')) {
        fds.all++
        let target = ''
        try { target = fs.readlinkSync('/proc/' + pid + '/fd/' + fd) } catch { continue }
        if (target.endsWith('/hold.sqlite')) fds.sqlite++
        else if (target.endsWith('(deleted)')) fds.deleted++
      }
      sample.fds = fds
    } catch {}
  }
  if (!killed && rss > capBytes) {
    killed = true
    try { process.kill(pid, 'SIGKILL') } catch {}
    parentPort.postMessage({ killed: rss })
  }
  parentPort.postMessage({ sample })
}, 100)
parentPort.on('message', () => { clearInterval(timer); parentPort.close() })
`

class Watch {
  readonly samples: Sample[] = []
  killedAtRss: number | undefined
  private readonly worker: Worker

  constructor(pid: number, dir: string) {
    this.worker = new Worker(WATCH_WORKER, {
      eval: true,
      workerData: {
        pid,
        wal: join(dir, 'hold.sqlite-wal'),
        capBytes: RSS_CAP_MB * MiB,
      },
    })
    this.worker.on(
      'message',
      (m: { sample?: Sample; killed?: number; gone?: boolean }) => {
        if (m.sample) this.samples.push(m.sample)
        if (m.killed !== undefined) this.killedAtRss = m.killed
      },
    )
  }

  last(): Sample | undefined {
    return this.samples[this.samples.length - 1]
  }

  lastFds(): Sample['fds'] {
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i].fds) return this.samples[i].fds
    }
    return undefined
  }

  /** The largest values between two times. */
  peak(from: number, to: number) {
    const inside = this.samples.filter((s) => s.at >= from && s.at <= to)
    const max = (f: (s: Sample) => number | undefined) =>
      Math.max(0, ...inside.map((s) => f(s) ?? 0))
    return {
      rss: max((s) => s.rss),
      wal: max((s) => s.wal),
      fds: max((s) => s.fds?.all),
      sqlite: max((s) => s.fds?.sqlite),
      deleted: max((s) => s.fds?.deleted),
    }
  }

  async stop(): Promise<void> {
    this.worker.postMessage('stop')
    await this.worker.terminate()
  }
}

// ---------------------------------------------------------------------------------------------
// Load: a closed-loop sender (each connection sends its next request when the last is
// answered) whose requests can differ in path and headers, stopped by a predicate.

type Req = { path: string; headers?: Record<string, string> }

type BlastRun = {
  sent: number
  ok: number
  statuses: Record<string, number>
  seconds: number
  okRps: number
  p50: number
  p99: number
}

const blast = async (opts: {
  base: string
  connections: number
  next: (i: number) => Req | undefined
  done: () => boolean
  timeoutMs?: number
}): Promise<BlastRun> => {
  const url = new URL(opts.base)
  const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections })
  const statuses: Record<string, number> = {}
  const latency: number[] = []
  let i = 0
  let ok = 0
  const started = performance.now()
  const one = (r: Req) =>
    new Promise<number>((done) => {
      const req = request(
        { host, port: url.port, path: r.path, headers: r.headers, agent },
        (res) => {
          res.resume()
          res.on('end', () => done(res.statusCode ?? 0))
          res.on('error', () => done(0))
          res.on('close', () => done(0))
        },
      )
      req.on('error', () => done(0))
      req.setTimeout(opts.timeoutMs ?? 30_000, () =>
        req.destroy(new Error('timeout')),
      )
      req.end()
    })
  const connection = async () => {
    while (!opts.done()) {
      const r = opts.next(i++)
      if (!r) return
      const sent = performance.now()
      const status = await one(r)
      latency.push(performance.now() - sent)
      const key = status === 0 ? 'error' : String(status)
      statuses[key] = (statuses[key] ?? 0) + 1
      if (status >= 200 && status < 300) ok++
      // A refused connection answers at once: do not spin on a hold that is gone.
      if (status === 0) await sleep(50)
    }
  }
  await Promise.all(Array.from({ length: opts.connections }, connection))
  agent.destroy()
  const seconds = (performance.now() - started) / 1000
  latency.sort((a, b) => a - b)
  const at = (q: number) =>
    latency.length
      ? +latency[
          Math.min(latency.length - 1, Math.floor(q * latency.length))
        ].toFixed(1)
      : NaN
  return {
    sent: latency.length,
    ok,
    statuses,
    seconds,
    okRps: ok / seconds,
    p50: at(0.5),
    p99: at(0.99),
  }
}

const statusText = (s: Record<string, number>) =>
  Object.entries(s)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${v} ${k}`)
    .join(', ')

// ---------------------------------------------------------------------------------------------
// Honest clients: latency (open loop, _health and an anonymous getBlob) or, for the token
// attacks, throughput (closed loop, getBlob with the owner's valid token).

type Honest =
  | { kind: 'latency'; p50: number; p99: number; max: number; errors: number }
  | { kind: 'rps'; rps: number; p99: number; errors: number }
  | { kind: 'none' }

type Ctx = {
  h: Hold
  digest: string
  directory: Directory
  exited: () => boolean
  watch: Watch
  /** The hold's V8 heap right after a full GC (what it retains), in bytes. */
  heap: () => Promise<number | undefined>
}

const honestLatency = async (ctx: Ctx, seconds: number): Promise<Honest> => {
  if (ctx.exited()) return { kind: 'none' }
  const r = await openLoad({
    base: ctx.h.base,
    paths: ['/xrpc/_health', blobPath(ctx.digest, OWNER)],
    rate: PROBE_RATE,
    duration: seconds,
    connections: 4,
    timeoutMs: 20_000,
  })
  return {
    kind: 'latency',
    p50: r.p50,
    p99: r.p99,
    max: r.max,
    errors: r.errors,
  }
}

const honestRps = async (
  ctx: Ctx,
  done: () => boolean,
  token: string,
): Promise<Honest> => {
  if (ctx.exited()) return { kind: 'none' }
  const path = blobPath(ctx.digest, OWNER)
  const r = await blast({
    base: ctx.h.base,
    connections: 4,
    next: () => ({ path, headers: { authorization: `Bearer ${token}` } }),
    done: () => done() || ctx.exited(),
  })
  return {
    kind: 'rps',
    rps: r.okRps,
    p99: r.p99,
    errors: r.sent - r.ok,
  }
}

const honestText = (x: Honest | undefined): string => {
  if (!x || x.kind === 'none') return '—'
  const errors = x.errors ? `, ${x.errors} failed` : ''
  if (x.kind === 'latency') return `p50 ${x.p50}, p99 ${x.p99} ms${errors}`
  return `${x.rps.toFixed(0)}/s${errors}`
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each returns the honest client's figures during it, the attacker's answers and
// measures of its own (rows of the table, by label), and what to do after it before the
// "after" window (default: a few seconds' rest), with measures of that too.

/** A row's value: a number gets a ratio between the two checkouts, a text does not. */
type Measure = { label: string; value: number | string | undefined }

type Attacker = {
  sent: number
  seconds: number
  statuses: Record<string, number>
}

type Attack = {
  item: string
  what: string
  env?: Record<string, string>
  /** Honest throughput with a token (item 10) instead of open-loop latency. */
  honest: 'latency' | 'rps'
  run: (ctx: Ctx) => Promise<{
    during: Honest
    attacker: Attacker
    measures: Measure[]
    settle?: () => Promise<Measure[]>
  }>
}

const adminStatus = (h: Hold) =>
  getJson<{
    records: Record<string, number>
    stats: { counters: number; dirtyCounters: number }
  }>(`${h.base}/admin/status`, { headers: { authorization: ADMIN } })

const statsRecords = async (h: Hold): Promise<number | undefined> => {
  try {
    return (await adminStatus(h)).records['io.atcr.hold.stats'] ?? 0
  } catch {
    return undefined
  }
}

const metric = async (h: Hold, name: string): Promise<number | undefined> => {
  try {
    const text = await (await fetch(`${h.base}/metrics`)).text()
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** Waits (at most `ms`) until every changed counter is in the repo; the backlog left. */
const waitFlushed = async (ctx: Ctx, ms: number): Promise<number> => {
  const until = Date.now() + ms
  while (!ctx.exited()) {
    let dirty: number
    try {
      dirty = (await adminStatus(ctx.h)).stats.dirtyCounters
    } catch {
      return NaN
    }
    if (dirty === 0 || Date.now() > until) return dirty
    await sleep(500)
  }
  return NaN
}

const blobPath = (digest: string, did: string, repo?: string) =>
  `/xrpc/${GET_BLOB}?${new URLSearchParams({ did, cid: digest, method: 'GET', ...(repo ? { repo } : {}) })}`

/** Item 2: new pairs at full speed, plus one export read at SLOW_READ_KIB KiB/s meanwhile. */
const pairsAttack = async (ctx: Ctx) => {
  const deadline = Date.now() + DURATION_S * 1000
  const before = await statsRecords(ctx.h)
  const slow = slowExport(ctx, deadline)
  const [attack, during] = await Promise.all([
    blast({
      base: ctx.h.base,
      connections: CONNECTIONS,
      next: (i) => ({
        path: blobPath(
          ctx.digest,
          `did:plc:pairs${i.toString(36).padStart(19, '0')}`,
          'app',
        ),
      }),
      done: () => Date.now() > deadline || ctx.exited(),
    }),
    honestLatency(ctx, DURATION_S),
  ])
  return {
    during,
    attacker: attack,
    measures: [{ label: 'slow export', value: await slow }],
    settle: () => recordsMade(ctx, before),
  }
}

const slowExport = async (ctx: Ctx, deadline: number): Promise<string> => {
  const controller = new AbortController()
  const timer = setTimeout(
    () => controller.abort(),
    Math.max(0, deadline - Date.now()),
  )
  let status = 0
  let received = 0
  let size = NaN
  try {
    const res = await fetch(
      `${ctx.h.base}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(ctx.h.did)}`,
      { signal: controller.signal },
    )
    status = res.status
    size = Number(res.headers.get('content-length') ?? NaN)
    const reader = res.body!.getReader()
    const started = performance.now()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.byteLength
      const wait =
        started + (received / (SLOW_READ_KIB * 1024)) * 1000 - performance.now()
      if (wait > 0) await sleep(wait)
    }
  } catch {
    // Aborted at the deadline, or the hold went away.
  } finally {
    clearTimeout(timer)
  }
  const of = Number.isFinite(size) ? ` of ${mb(size)}` : ''
  return status ? `${status}, ${mb(received)}${of} MiB read` : 'no answer'
}

/** Once the counts are flushed (20 s at most): the stats records made since `before`. */
const recordsMade = async (
  ctx: Ctx,
  before: number | undefined,
): Promise<Measure[]> => {
  const backlog = await waitFlushed(ctx, 20_000)
  const after = await statsRecords(ctx.h)
  return [
    {
      label: 'stats records made',
      value:
        before !== undefined && after !== undefined
          ? after - before
          : undefined,
    },
    {
      label: 'counters still unflushed 20 s later',
      value: Number.isNaN(backlog) ? undefined : backlog,
    },
  ]
}

/** Item 3: random did and repo on a known blob, one client; the records it makes. */
const randomPairsAttack = async (ctx: Ctx) => {
  const before = await statsRecords(ctx.h)
  const deadline = Date.now() + DURATION_S * 1000
  const rand = (n: number) =>
    randomBytes(n).toString('base64url').toLowerCase().replace(/[-_]/g, 'x')
  const [attack, during] = await Promise.all([
    blast({
      base: ctx.h.base,
      connections: CONNECTIONS,
      next: () => ({
        path: blobPath(ctx.digest, `did:plc:${rand(18).slice(0, 24)}`, rand(9)),
      }),
      done: () => Date.now() > deadline || ctx.exited(),
    }),
    honestLatency(ctx, DURATION_S),
  ])
  return {
    during,
    attacker: attack,
    measures: [],
    settle: async () => [
      ...(await recordsMade(ctx, before)),
      {
        label: 'first counts not taken (new-pair limit)',
        value: await metric(ctx.h, 'hold_stats_new_pairs_dropped_total'),
      },
    ],
  }
}

/**
 * Item 4: local did:web servers, one per issuer, answering `body`; a wave of one request per
 * issuer, each with a new token, again and again for the attack's duration.
 */
const didAttack = async (
  ctx: Ctx,
  body: Buffer,
  headers: Record<string, string>,
) => {
  const key = await Secp256k1Keypair.create()
  let fetches = 0
  const servers = await Promise.all(
    Array.from({ length: BOMB_REQUESTS }, async () => {
      const server = createServer((_req, res) => {
        fetches++
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': String(body.length),
          ...headers,
        })
        res.end(body)
      })
      await new Promise<void>((r) => server.listen(0, '::', r))
      return server
    }),
  )
  const issuers = servers.map(
    (s) => `did:web:localhost%3A${(s.address() as AddressInfo).port}`,
  )
  const started = performance.now()
  const deadline = Date.now() + DURATION_S * 1000
  const statuses: Record<string, number> = {}
  let sent = 0
  let waves = 0
  const attack = async () => {
    while (Date.now() < deadline && !ctx.exited()) {
      waves++
      await Promise.all(
        issuers.map(async (iss) => {
          let status = 'error'
          try {
            const jwt = await serviceToken({
              iss,
              aud: ctx.h.did,
              lxm: GET_BLOB,
              keypair: key,
            })
            sent++
            const res = await fetch(
              `${ctx.h.base}${blobPath(ctx.digest, OWNER)}`,
              {
                headers: { authorization: `Bearer ${jwt}` },
                signal: AbortSignal.timeout(30_000),
              },
            )
            await res.arrayBuffer()
            status = String(res.status)
          } catch {
            // The hold went away, or did not answer within 30 s.
          }
          statuses[status] = (statuses[status] ?? 0) + 1
        }),
      )
      await sleep(500)
    }
  }
  try {
    const [, during] = await Promise.all([
      attack(),
      honestLatency(ctx, DURATION_S),
    ])
    return {
      during,
      attacker: {
        sent,
        seconds: (performance.now() - started) / 1000,
        statuses,
      },
      measures: [
        { label: `waves of ${BOMB_REQUESTS} requests`, value: waves },
        { label: 'did.json fetches the hold made', value: fetches },
      ],
    }
  } finally {
    await Promise.all(servers.map(closeServer))
  }
}

const bombDoc = (bytes: number) => {
  const doc = JSON.stringify({ id: 'did:web:localhost', alsoKnownAs: [] })
  return Buffer.concat([
    Buffer.from(doc),
    Buffer.alloc(Math.max(0, bytes - doc.length), 0x20),
  ])
}

/** Made once for both checkouts: the gzip takes seconds of this process. */
const once = <T>(make: () => T) => {
  let made: T | undefined
  return () => (made ??= make())
}
const hugeDoc = once(() => bombDoc(BOMB_MIB * MiB))
const gzipBomb = once(() => gzipSync(hugeDoc(), { level: 9 }))

/**
 * Item 5: getRepo exports, each from an address of its own (the hold trusts X-Forwarded-For in
 * this run, as behind a proxy), that read nothing and hang up after ABANDON_AFTER_S.
 */
const exportAbandonAttack = async (ctx: Ctx) => {
  const url = new URL(ctx.h.base)
  const path = `/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(ctx.h.did)}`
  const statuses: Record<string, number> = {}
  const open: { destroy: () => void }[] = []
  const started = performance.now()
  const idleFds = ctx.watch.lastFds()
  const during = honestLatency(ctx, ABANDON_AFTER_S + 5)
  for (let k = 0; k < EXPORTS; k++) {
    const req = request({
      host: '127.0.0.1',
      port: url.port,
      path,
      agent: false,
      headers: { 'x-forwarded-for': `10.5.${k >> 8}.${k & 255}` },
    })
    req.on('response', (res) => {
      const key = String(res.statusCode)
      statuses[key] = (statuses[key] ?? 0) + 1
      // Refusals are read; an export is left unread, so the socket fills and stops.
      if (res.statusCode !== 200) res.resume()
    })
    req.on('error', () => {})
    req.end()
    open.push(req)
    await sleep(10)
  }
  await sleep(Math.max(0, ABANDON_AFTER_S * 1000 - EXPORTS * 10))
  const openFds = ctx.watch.lastFds()
  const openRss = ctx.watch.last()?.rss
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0)
  statuses['not answered'] = EXPORTS - answered
  for (const req of open) req.destroy()
  const honest = await during
  return {
    during: honest,
    attacker: {
      sent: EXPORTS,
      seconds: (performance.now() - started) / 1000,
      statuses,
    },
    measures: [
      { label: 'RSS with the exports open, MB', value: mbNum(openRss) },
      { label: 'SQLite connections before the attack', value: idleFds?.sqlite },
      { label: 'open fds before the attack', value: idleFds?.all },
      { label: 'SQLite connections with them open', value: openFds?.sqlite },
      {
        label: 'unlinked files (spools) with them open',
        value: openFds?.deleted,
      },
      { label: 'open fds with them open', value: openFds?.all },
    ],
    settle: async (): Promise<Measure[]> => {
      await sleep(5000)
      const fds = ctx.watch.lastFds()
      return [
        {
          label: 'RSS 5 s after the cut, MB',
          value: mbNum(ctx.watch.last()?.rss),
        },
        { label: 'SQLite connections 5 s after the cut', value: fds?.sqlite },
        { label: 'unlinked files 5 s after the cut', value: fds?.deleted },
        { label: 'open fds 5 s after the cut', value: fds?.all },
      ]
    },
  }
}

const mbNum = (bytes: number | undefined) =>
  bytes === undefined ? undefined : Math.round(bytes / MiB)

/** A JWT with the claims given and signature `sig` (one taken from another token, or junk). */
const forge = (claims: Record<string, unknown>, sig: string) =>
  [
    Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ES256K' })).toString(
      'base64url',
    ),
    Buffer.from(JSON.stringify(claims)).toString('base64url'),
    sig,
  ].join('.')

/** Item 10: attacking tokens from `next` alongside an honest client with the owner's token. */
const tokenAttack = async (
  ctx: Ctx,
  next: (i: number) => string | undefined,
  seconds: number,
) => {
  const honestToken = await ownerToken(ctx.h.did, GET_BLOB)
  const deadline = Date.now() + seconds * 1000
  const fetchedBefore = { ...ctx.directory.fetched }
  let attackDone = false
  const path = blobPath(ctx.digest, OWNER)
  const [attack, during] = await Promise.all([
    blast({
      base: ctx.h.base,
      connections: CONNECTIONS,
      next: (i) => {
        const jwt = next(i)
        return jwt === undefined
          ? undefined
          : { path, headers: { authorization: `Bearer ${jwt}` } }
      },
      done: () => Date.now() > deadline || ctx.exited(),
    }).finally(() => (attackDone = true)),
    honestRps(ctx, () => attackDone, honestToken),
  ])
  const f = ctx.directory.fetched
  return {
    attack,
    during,
    plc: {
      owner: f.owner - fetchedBefore.owner,
      mass: f.mass - fetchedBefore.mass,
    },
  }
}

const claimsFor = (iss: string, aud: string, i: number) => ({
  iat: Math.floor(Date.now() / 1000),
  iss,
  aud,
  exp: Math.floor(Date.now() / 1000) + 600,
  lxm: GET_BLOB,
  jti: `${i.toString(16)}${randomBytes(8).toString('hex')}`,
})

const ATTACK_DEFS: Record<AttackName, Attack> = {
  pairs: {
    item: '2',
    what: 'one anonymous client counting a new (DID, repository) pair per request at full speed on a known blob, and a getRepo export read slowly meanwhile (the WAL; the new-pair limit at its default)',
    honest: 'latency',
    run: pairsAttack,
  },
  'pairs-unlimited': {
    item: '2',
    what: 'the same with HOLD_NEW_PAIRS_PER_HOUR=0 (ignored by a hold without the limit): every pair becomes a record, so the WAL bound is shown under the heaviest flush load',
    env: { HOLD_NEW_PAIRS_PER_HOUR: '0' },
    honest: 'latency',
    run: pairsAttack,
  },
  'random-pairs': {
    item: '3',
    what: 'a random did and repo on a known blob per request, one client: the records it makes',
    honest: 'latency',
    run: randomPairsAttack,
  },
  'did-gzip': {
    item: '4',
    what: 'tokens whose iss is a did:web on a local server answering a gzip bomb (--bomb-mib once inflated), one issuer per request, in waves',
    env: { HOLD_DEV_ALLOW_LOCAL_DIDS: 'true' },
    honest: 'latency',
    run: (ctx) =>
      didAttack(ctx, gzipBomb(), {
        'content-encoding': 'gzip',
      }),
  },
  'did-huge': {
    item: '4',
    what: 'the same with a huge plain did.json (--bomb-mib)',
    env: { HOLD_DEV_ALLOW_LOCAL_DIDS: 'true' },
    honest: 'latency',
    run: (ctx) => didAttack(ctx, hugeDoc(), {}),
  },
  'export-abandon': {
    item: '5',
    what: 'getRepo exports from as many addresses (X-Forwarded-For trusted) that read nothing, then hang up (--exports, --abandon-after)',
    env: { HOLD_TRUSTED_PROXY_HEADER: 'x-forwarded-for' },
    honest: 'latency',
    run: exportAbandonAttack,
  },
  'token-replay': {
    item: '10',
    what: "one garbage token (the owner's DID, another key's signature) replayed",
    honest: 'rps',
    run: async (ctx) => {
      const garbage = await serviceToken({
        iss: OWNER,
        aud: ctx.h.did,
        lxm: GET_BLOB,
        exp: Math.floor(Date.now() / 1000) + 600,
        keypair: await Secp256k1Keypair.create(),
      })
      const r = await tokenAttack(ctx, () => garbage, DURATION_S)
      return {
        during: r.during,
        attacker: r.attack,
        measures: [
          { label: "fetches of the owner's DID document", value: r.plc.owner },
        ],
      }
    },
  },
  'forged-tokens': {
    item: '10',
    what: 'a new forged token naming the owner on every request (a real signature by another key)',
    honest: 'rps',
    run: async (ctx) => {
      // A real signature (by another key) on every forged token: each costs a full check.
      const sig = (
        await serviceToken({
          iss: OWNER,
          aud: ctx.h.did,
          keypair: await Secp256k1Keypair.create(),
        })
      ).split('.')[2]
      const r = await tokenAttack(
        ctx,
        (i) => forge(claimsFor(OWNER, ctx.h.did, i), sig),
        DURATION_S,
      )
      return {
        during: r.during,
        attacker: r.attack,
        measures: [
          { label: "fetches of the owner's DID document", value: r.plc.owner },
        ],
      }
    },
  },
  'many-issuers': {
    item: '10',
    what: 'a new did:plc issuer on every request, junk signature (the DID cache; --issuers, --issuer-seconds)',
    honest: 'rps',
    run: async (ctx) => {
      // Junk signatures: rejected cheaply, but only after the issuer's document is fetched.
      const junk = Buffer.alloc(64, 0xff).toString('base64url')
      const heapBefore = await ctx.heap()
      const r = await tokenAttack(
        ctx,
        (i) =>
          i < ISSUERS
            ? forge(claimsFor(massDid(i), ctx.h.did, i), junk)
            : undefined,
        ISSUER_SECONDS,
      )
      const heapAfter = await ctx.heap()
      const issuers = Math.min(r.attack.sent, ISSUERS)
      const grown =
        heapBefore !== undefined && heapAfter !== undefined
          ? heapAfter - heapBefore
          : undefined
      return {
        during: r.during,
        attacker: r.attack,
        measures: [
          { label: 'distinct issuers', value: issuers },
          { label: 'DID documents fetched', value: r.plc.mass },
          {
            label: 'heap retained per issuer, KiB (after a full GC)',
            value:
              grown === undefined || !issuers
                ? undefined
                : +(grown / issuers / 1024).toFixed(1),
          },
        ],
      }
    },
  },
}

// ---------------------------------------------------------------------------------------------
// One checkout: its seeded data dir, then a fresh hold per attack.

type Side = {
  name: 'before' | 'after'
  tree: string
  commit: string
  seeded?: { dir: string; digest: string }
}

type Result = {
  outcome: string
  rss: { idle: number; peak: number }
  heap: { before: number | undefined; after: number | undefined }
  wal: { peak: number; after: number | undefined }
  honest: [Honest, Honest, Honest | undefined]
  attacker: Attacker
  measures: Measure[]
  load: string
}

/** A hold on a new data dir: RECORDS stats records and a known 512-byte blob. */
const seed = async (
  side: Side,
  port: number,
  directory: Directory,
): Promise<{ dir: string; digest: string }> => {
  const dir = await mkdtemp(join(tmpdir(), 'atcr-hostile-seed-'))
  const h = await startHold({
    tree: side.tree,
    dataDir: dir,
    port,
    env: { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_PLC_URL: directory.url },
  })
  try {
    const digest = await pushBlob(h, new Uint8Array(512).fill(7))
    for (let i = 0; i < RECORDS; i += 1000) {
      const baselines = Array.from(
        { length: Math.min(1000, RECORDS - i) },
        (_, k) => ({
          did: `did:plc:seeded${String(i + k).padStart(18, '0')}`,
          repository: 'app',
          pullCount: 1 + ((i + k) % 97),
          pushCount: 0,
        }),
      )
      await getJson(`${h.base}/admin/stats/import`, {
        method: 'POST',
        headers: { authorization: ADMIN, 'content-type': 'application/json' },
        body: JSON.stringify({ baselines }),
      })
    }
    for (;;) {
      const { stats } = await adminStatus(h)
      if (stats.dirtyCounters === 0) break
      log(`  ${side.name}: ${stats.dirtyCounters} records still to write`)
      await sleep(2000)
    }
    return { dir, digest }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  } finally {
    await stopHold(h, { killAfterMs: 30_000 })
  }
}

/**
 * Loaded into the hold (with --expose-gc): on SIGUSR2 a full GC, then the heap left on stderr,
 * the same in either checkout, since the hold's own code has no such hook.
 */
const HEAP_HOOK = `--import=data:text/javascript,${encodeURIComponent(
  "process.on('SIGUSR2', () => { globalThis.gc(); process.stderr.write('BENCH_HEAP ' + process.memoryUsage().heapUsed + '\\n') })",
)}`

const runAttack = async (
  name: AttackName,
  side: Side,
  port: number,
  directory: Directory,
): Promise<Result> => {
  const def = ATTACK_DEFS[name]
  const seeded = side.seeded!
  const dir = await mkdtemp(join(tmpdir(), 'atcr-hostile-'))
  await cp(seeded.dir, dir, { recursive: true })
  const h = await startHold({
    tree: side.tree,
    dataDir: dir,
    port,
    nodeFlags: [`--max-old-space-size=${HEAP_MB}`, '--expose-gc', HEAP_HOOK],
    stderr: 'pipe',
    env: {
      HOLD_ADMIN_PASSWORD: PASSWORD,
      HOLD_PLC_URL: directory.url,
      ...def.env,
    },
  })
  let stderr = ''
  const heapWaiters: ((bytes: number) => void)[] = []
  h.proc.stderr!.on('data', (d) => {
    stderr = (stderr + d).slice(-4000)
    for (const m of String(d).matchAll(/BENCH_HEAP (\d+)/g)) {
      heapWaiters.shift()?.(Number(m[1]))
    }
  })
  let exit: { code: number | null; signal: string | null } | undefined
  h.proc.once('exit', (code, signal) => (exit = { code, signal }))
  const watch = new Watch(h.proc.pid!, dir)
  const ctx: Ctx = {
    h,
    digest: seeded.digest,
    directory,
    exited: () => exit !== undefined,
    watch,
    heap: () =>
      new Promise((done) => {
        if (exit) return done(undefined)
        const timer = setTimeout(() => done(undefined), 10_000)
        heapWaiters.push((bytes) => {
          clearTimeout(timer)
          done(bytes)
        })
        h.proc.kill('SIGUSR2')
      }),
  }
  const progress = setInterval(() => {
    const s = watch.last()
    if (s)
      log(
        `    RSS ${mb(s.rss)} MB, WAL ${mb(s.wal)} MiB${exit ? ', hold gone' : ''}`,
      )
  }, 5000)
  log(`  ${side.name} (${side.commit.split(' ')[0]})`)
  try {
    const token = await ownerToken(h.did, GET_BLOB)
    const honestWindow = (seconds: number) => {
      if (def.honest === 'latency') return honestLatency(ctx, seconds)
      const until = Date.now() + seconds * 1000
      return honestRps(ctx, () => Date.now() > until, token)
    }
    // A first, unrecorded window: the hold's code is not yet compiled when it starts.
    await honestWindow(2)
    const honestBefore = await honestWindow(WINDOW_S)
    const idle = watch.last()!
    const heapBefore = await ctx.heap()
    log(`    before: ${honestText(honestBefore)}; attacking`)
    const started = Date.now()
    const { during, attacker, measures, settle } = await def.run(ctx)
    log(
      `    attacker: ${attacker.sent} requests (${statusText(attacker.statuses)})`,
    )
    let settled: Measure[] = []
    if (!ctx.exited()) {
      if (settle) settled = await settle()
      else await sleep(3000)
    }
    const heapAfter = await ctx.heap()
    const honestAfter = ctx.exited() ? undefined : await honestWindow(WINDOW_S)
    // The peak counts until the end: memory can still be growing after the last request.
    const peak = watch.peak(started, Date.now())
    const walAfter = ctx.exited() ? undefined : watch.last()?.wal
    let outcome = 'up'
    if (exit) {
      outcome =
        watch.killedAtRss !== undefined
          ? `killed: RSS passed ${RSS_CAP_MB} MB`
          : /heap out of memory|Allocation failed/i.test(stderr)
            ? `died: V8 heap out of memory (${HEAP_MB} MB)`
            : `died: ${exit.signal ?? `exit code ${exit.code}`}`
    }
    log(
      `    ${outcome}; during: ${honestText(during)}; after: ${honestText(honestAfter)}`,
    )
    return {
      outcome,
      rss: { idle: idle.rss, peak: peak.rss },
      heap: { before: heapBefore, after: heapAfter },
      wal: { peak: peak.wal, after: walAfter },
      honest: [honestBefore, during, honestAfter],
      attacker,
      measures: [...measures, ...settled],
      load: load1(),
    }
  } finally {
    clearInterval(progress)
    await watch.stop()
    await stopHold(h, { killAfterMs: 15_000 })
    await rm(dir, { recursive: true, force: true })
  }
}

const treeCommit = (tree: string): Promise<string> =>
  new Promise((done) => {
    const git = spawn('git', ['log', '-1', '--format=%h %s'], { cwd: tree })
    let out = ''
    git.stdout.on('data', (d) => (out += d))
    git.on('close', () => done(out.trim() || tree))
    git.on('error', () => done(tree))
  })

// ---------------------------------------------------------------------------------------------
// The tables: one per attack, a row per measure, a column per checkout and their ratio.

const num1 = (n: number) =>
  Math.abs(n) >= 100 || Number.isInteger(n)
    ? Math.round(n).toLocaleString('en-US')
    : n.toFixed(1)

const cell = (v: number | string | undefined) =>
  v === undefined ? '—' : typeof v === 'number' ? num1(v) : v

const ratio = (before: Measure['value'], after: Measure['value']) => {
  if (typeof before !== 'number' || typeof after !== 'number') return ''
  if (before === 0) return ''
  const r = after / before
  return `${r >= 10 ? r.toFixed(0) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(1)}×`
}

/** The rows of one result, by label, in the order they are shown. */
const rowsOf = (def: Attack, r: Result): Measure[] => {
  const h = r.honest
  const lat = (
    x: Honest | undefined,
    f: (x: Honest & { kind: 'latency' }) => number,
  ) => (x?.kind === 'latency' ? f(x) : undefined)
  const rps = (x: Honest | undefined) => (x?.kind === 'rps' ? x.rps : undefined)
  const errors = (x: Honest | undefined) =>
    x && x.kind !== 'none' ? x.errors : undefined
  const honest: Measure[] =
    def.honest === 'latency'
      ? [
          {
            label: 'honest p99 before the attack, ms',
            value: lat(h[0], (x) => x.p99),
          },
          { label: 'honest p50 during, ms', value: lat(h[1], (x) => x.p50) },
          { label: 'honest p99 during, ms', value: lat(h[1], (x) => x.p99) },
          {
            label: 'honest longest wait during, ms',
            value: lat(h[1], (x) => x.max),
          },
          { label: 'honest requests failed during', value: errors(h[1]) },
          { label: 'honest p99 after, ms', value: lat(h[2], (x) => x.p99) },
        ]
      : [
          { label: 'honest getBlob/s before the attack', value: rps(h[0]) },
          { label: 'honest getBlob/s during', value: rps(h[1]) },
          { label: 'honest requests failed during', value: errors(h[1]) },
          { label: 'honest getBlob/s after', value: rps(h[2]) },
        ]
  return [
    { label: 'hold', value: r.outcome },
    { label: 'RSS before the attack, MB', value: mbNum(r.rss.idle) },
    { label: 'peak RSS, MB', value: mbNum(r.rss.peak) },
    {
      label: 'V8 heap after a full GC, before the attack, MB',
      value: mbNum(r.heap.before),
    },
    {
      label: 'V8 heap after a full GC, after it, MB',
      value: mbNum(r.heap.after),
    },
    { label: 'peak WAL, MiB', value: +(r.wal.peak / MiB).toFixed(1) },
    {
      label: 'WAL after, MiB',
      value:
        r.wal.after === undefined ? undefined : +(r.wal.after / MiB).toFixed(1),
    },
    ...honest,
    { label: 'attack requests', value: r.attacker.sent },
    {
      label: 'attack requests/s',
      value: r.attacker.seconds
        ? r.attacker.sent / r.attacker.seconds
        : undefined,
    },
    { label: 'attack answers', value: statusText(r.attacker.statuses) || '—' },
    ...r.measures,
    { label: 'load average (1 min) at the end', value: r.load },
  ]
}

const table = (
  name: AttackName,
  sides: Side[],
  results: Map<Side, Result | { error: string }>,
): string => {
  const def = ATTACK_DEFS[name]
  const rows = sides.map((s) => {
    const r = results.get(s)!
    return 'error' in r
      ? [{ label: 'hold', value: `bench error: ${r.error}` }]
      : rowsOf(def, r)
  })
  const labels = [...new Set(rows.flatMap((r) => r.map((m) => m.label)))]
  const value = (i: number, label: string) =>
    rows[i].find((m) => m.label === label)?.value
  const compare = sides.length === 2
  const head = [
    'measure',
    ...sides.map((s) => `${s.name} (${s.commit.split(' ')[0]})`),
    ...(compare ? ['after / before'] : []),
  ]
  const lines = labels.map((label) => [
    label,
    ...sides.map((_, i) => cell(value(i, label))),
    ...(compare ? [ratio(value(0, label), value(1, label))] : []),
  ])
  const envText = Object.entries(def.env ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')
  return [
    `### ${name} (item ${def.item})`,
    '',
    `${def.what}.${envText ? ` Hold env: ${envText}.` : ''}`,
    '',
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...lines.map((l) => `| ${l.join(' | ')} |`),
  ].join('\n')
}

const main = async () => {
  if (args.help) {
    console.log(usage())
    return
  }
  const only = args.only?.split(',').map((s) => s.trim())
  for (const name of only ?? []) {
    if (!ATTACKS.includes(name as AttackName)) {
      throw new Error(
        `--only: unknown attack "${name}"; one of ${ATTACKS.join(', ')}`,
      )
    }
  }
  const names = ATTACKS.filter((a) => !only || only.includes(a))
  const sides: Side[] = []
  if (BEFORE_TREE !== undefined) {
    sides.push({
      name: 'before',
      tree: BEFORE_TREE,
      commit: await treeCommit(BEFORE_TREE),
    })
  }
  sides.push({ name: 'after', tree: ROOT, commit: await treeCommit(ROOT) })
  for (const s of sides) log(`${s.name}: ${s.tree} (${s.commit})`)
  log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  )
  await identity(OWNER)
  const directory = await startDirectory()
  const port = args.port ? Number(args.port) : await freePort()
  const results = new Map<AttackName, Map<Side, Result | { error: string }>>()
  try {
    for (const side of sides) {
      log(`${side.name}: seeding ${RECORDS} stats records`)
      side.seeded = await seed(side, port, directory)
    }
    for (const [i, name] of names.entries()) {
      const def = ATTACK_DEFS[name]
      log(`${name} (item ${def.item})`)
      const byside = new Map<Side, Result | { error: string }>()
      // The checkouts take turns going first.
      const order = i % 2 ? [...sides].reverse() : sides
      for (const side of order) {
        try {
          byside.set(side, await runAttack(name, side, port, directory))
        } catch (err) {
          // One attack that cannot be measured leaves the others' tables standing.
          const message = err instanceof Error ? err.message : String(err)
          log(`    bench error: ${message}`)
          byside.set(side, { error: message })
        }
      }
      results.set(name, byside)
    }
  } finally {
    for (const s of sides) {
      if (s.seeded) await rm(s.seeded.dir, { recursive: true, force: true })
    }
    await directory.close()
  }
  const minutes = ((Date.now() - t0) / 60_000).toFixed(1)
  const out = [
    `${sides.map((s) => `${s.name}: ${s.commit} (${s.tree})`).join('; ')}.`,
    `${cpus().length} cores; hold heap cap ${HEAP_MB} MB, killed past ${RSS_CAP_MB} MB RSS; ${RECORDS} records seeded; attacks of ${DURATION_S} s from ${CONNECTIONS} connections; ${minutes} min in all.`,
    `Honest client: for items 2-5, _health and an anonymous getBlob at ${PROBE_RATE}/s in all (open loop, each request timed from when it was due, failed past 20 s); for item 10, getBlob with the owner's valid token from 4 connections (closed loop, sharing the cores with the attacker). "before the attack" and "after" are ${WINDOW_S} s windows.`,
    '',
    ...names.flatMap((name) => [table(name, sides, results.get(name)!), '']),
  ]
  console.log(out.join('\n'))
  if (args.json) {
    await writeFile(
      args.json,
      JSON.stringify(
        {
          sides: sides.map(({ name, tree, commit }) => ({
            name,
            tree,
            commit,
          })),
          args,
          results: Object.fromEntries(
            [...results].map(([name, m]) => [
              name,
              Object.fromEntries([...m].map(([s, r]) => [s.name, r])),
            ]),
          ),
        },
        null,
        2,
      ),
    )
  }
}

await main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exitCode = 1
})
