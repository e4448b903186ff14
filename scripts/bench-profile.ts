/**
 * Where a request's time goes (not part of `npm test`):
 *   npm run bench:profile -- [--scenario url+repo] [--compiled] [--requests 60000] [--us 250] [--top 25]
 *
 * Starts one real hold as a child process (scripts/bench-server.ts, HOLD_STATS_FLUSH_MS 1000 as
 * in `npm run bench`, or --flush-ms; compiled by tsc with --compiled), stores a 1 KiB blob,
 * warms it up, then drives one scenario (lib.ts, scenarioPaths: getBlob's, or getStats and listStats after a
 * counted pull of every pair) with autocannon while the hold's V8 CPU profiler samples (the profiler of
 * `node --cpu-prof`, started and stopped around the measured window only). Prints the self time
 * by category (what the request path does: parsing, validation, signing, headers, middleware,
 * the adapter, logging, metrics, counting; the runtime: HTTP and sockets, GC) and the top frames
 * by self time, and keeps the .cpuprofile (open it in Chrome DevTools or speedscope).
 *
 * With --heap it samples, instead of the CPU, the allocations that outlive the young generation
 * (what a scavenge promotes to the old generation, which only a mark-compact frees, a pause of
 * tens of milliseconds on a large heap): bytes per request, and where they were allocated.
 * --rate N paces the load (N requests a second), as a real client's would be; --persist-ms sets
 * HOLD_STATS_PERSIST_MS (how often counts are journaled).
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  compileBenchServer,
  countEveryPair,
  getJson,
  load,
  pushBlob,
  scenarioPaths,
  startHold,
  stopHold,
} from './lib.ts'
import { tempDir } from '../test/_shared.ts'

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'url+repo' },
    compiled: { type: 'boolean', default: false },
    requests: { type: 'string', default: '60000' },
    connections: { type: 'string', default: '32' },
    us: { type: 'string', default: '250' },
    top: { type: 'string', default: '25' },
    out: { type: 'string' },
    summarise: { type: 'string' },
    heap: { type: 'boolean', default: false },
    // Flags for the hold's node, e.g. --node-flags='--trace-gc --max-semi-space-size=32'.
    'node-flags': { type: 'string' },
    rate: { type: 'string' },
    'flush-ms': { type: 'string', default: '1000' },
    'persist-ms': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(
    'npm run bench:profile -- [--scenario bare|url|url+repo|bytes|bytes+repo|getStats|listStats] [--compiled] [--requests N] [--connections N] [--us SAMPLING_US] [--top N] [--out DIR] [--summarise FILE.cpuprofile] [--heap [--rate N]] [--node-flags FLAGS] [--flush-ms 1000] [--persist-ms 25]',
  )
  process.exit(0)
}

type Frame = {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}
type ProfileNode = { id: number; callFrame: Frame; children?: number[] }
type Profile = {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

/** The first rule that matches a frame names its category. */
const CATEGORIES: [string, (f: Frame) => boolean][] = [
  ['idle', (f) => f.functionName === '(idle)'],
  // The inspector session that takes this profile, not the hold: left out like idle time.
  ['idle', (f) => f.url === 'node:inspector'],
  ['gc', (f) => f.functionName === '(garbage collector)'],
  ['program (V8, native, unattributed)', (f) => f.functionName === '(program)'],
  [
    "parsing: query string, URL (ours and the adapter's)",
    (f) =>
      /src\/api\/util\.ts|node:internal\/worker\/js_transferable/.test(f.url) ||
      /internal\/url|URLSearchParams|querystring/.test(f.url + f.functionName),
  ],
  [
    'validation: did, cid, repo, method',
    (f) =>
      /@atproto\/syntax|@atproto\/lex-data|src\/blobs\/digest\.ts|src\/stats\/rkey\.ts/.test(
        f.url,
      ),
  ],
  [
    'auth: token check, access',
    (f) => /src\/auth\/|src\/layers\/visibility/.test(f.url),
  ],
  [
    'signing the URL (HMAC, ISO date)',
    (f) =>
      /src\/blobs\/signed-url\.ts|internal\/crypto\//.test(f.url) ||
      /toISOString/.test(f.functionName),
  ],
  [
    'counting (count(), limits)',
    (f) =>
      /src\/stats\/(counting|limiter)\.ts/.test(f.url) ||
      (/src\/stats\/counter-store\.ts/.test(f.url) &&
        ['count', 'delta', 'has'].includes(f.functionName)),
  ],
  [
    'persist, flush, SQLite, repo commit',
    (f) =>
      /src\/stats\/|src\/repo\/|src\/db\.ts|node:sqlite|@atproto\/(crypto|repo|lex-cbor)|@noble|multiformats|cborg/.test(
        f.url,
      ),
  ],
  [
    'getBlob handler',
    (f) => /src\/api\/com\/atproto\/sync\/getBlob/.test(f.url),
  ],
  ['blob store', (f) => /src\/blobs\//.test(f.url)],
  ['middleware: observe, CORS', (f) => /src\/api\/middleware\//.test(f.url)],
  ['metrics (prom-client)', (f) => /prom-client/.test(f.url)],
  ['logging (pino)', (f) => /pino|sonic-boom/.test(f.url)],
  ['JSON serialisation', (f) => f.functionName === 'stringify'],
  [
    'headers (fetch API Headers, Hono, the adapter)',
    (f) =>
      /undici/.test(f.url) ||
      (/header|Header/.test(f.functionName) &&
        /hono|node-server|_http_outgoing/.test(f.url)),
  ],
  ['Hono adapter (@hono/node-server)', (f) => /@hono\/node-server/.test(f.url)],
  ['Hono: router, context, compose', (f) => /node_modules\/hono\//.test(f.url)],
  [
    'Node HTTP server and sockets',
    (f) =>
      /node:_http|node:net|node:stream|node:internal\/(streams|http|stream_base|net|timers|async_hooks|process\/task_queues)|node:events|_http_/.test(
        f.url,
      ) ||
      [
        'writev',
        'writeUtf8String',
        'writeLatin1String',
        'writeBuffer',
      ].includes(f.functionName),
  ],
  ['Node: other internals', (f) => f.url.startsWith('node:')],
  ['native, unattributed', (f) => f.url === ''],
  ['other', () => true],
]

const categoryOf = (f: Frame): string =>
  CATEGORIES.find(([, test]) => test(f))![0]

/** V8's own pseudo-frames; every other frame without a URL is native code called from JS. */
const PSEUDO = new Set(['(idle)', '(program)', '(garbage collector)', '(root)'])

const short = (f: Frame) => {
  const url = f.url
    .replace(/^file:\/\/.*?\/node_modules\//, '')
    .replace(/^file:\/\/.*?\/(src|scripts)\//, '$1/')
  return `${f.functionName || '(anonymous)'} ${url}:${f.lineNumber + 1}`
}

const summarise = (profile: Profile, top: number): string => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) {
    for (const child of n.children ?? []) parent.set(child, n.id)
  }
  // A native frame (an HMAC's init, a SQLite statement, a socket write) is put in the category
  // of the nearest JavaScript frame that called it.
  const categoryOfNode = (id: number): string => {
    let f = byId.get(id)!.callFrame
    if (f.url === '' && !PSEUDO.has(f.functionName)) {
      const own = categoryOf(f)
      if (own !== 'native, unattributed') return own
      for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
        const up = byId.get(p)!.callFrame
        if (up.url !== '') {
          f = up
          break
        }
      }
    }
    return categoryOf(f)
  }
  const selfUs = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  let total = 0
  let busy = 0
  const cats = new Map<string, number>()
  const frames = new Map<string, { us: number; cat: string }>()
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame
    const cat = categoryOfNode(id)
    total += us
    if (cat !== 'idle') busy += us
    cats.set(cat, (cats.get(cat) ?? 0) + us)
    const key = short(f)
    const cur = frames.get(key) ?? { us: 0, cat }
    cur.us += us
    frames.set(key, cur)
  }
  const pct = (us: number) => ((100 * us) / busy).toFixed(1)
  const lines = [
    `profiled ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (idle ${(((total - busy) / total) * 100).toFixed(0)}%)`,
    '',
    '| category (self time) | % of busy |',
    '|---|---:|',
    ...[...cats]
      .filter(([c]) => c !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([c, us]) => `| ${c} | ${pct(us)} |`),
    '',
    `| top ${top} frames by self time | category | % of busy |`,
    '|---|---|---:|',
    ...[...frames]
      .filter(([, v]) => v.cat !== 'idle')
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, top)
      .map(([k, v]) => `| \`${k}\` | ${v.cat} | ${pct(v.us)} |`),
  ]
  return lines.join('\n')
}

type HeapNode = {
  id: number
  callFrame: Frame
  selfSize: number
  children: HeapNode[]
}
type HeapProfile = {
  head: HeapNode
  samples: { size: number; nodeId: number }[]
}

/**
 * The surviving allocations by category and by place: the frame that allocated, with the
 * nearest frame of the hold's own code above it (where the allocation is asked for).
 */
const summariseHeap = (
  profile: HeapProfile,
  requests: number,
  top: number,
): string => {
  const own = /\/(src|scripts)\//
  const places = new Map<string, { bytes: number; cat: string }>()
  const cats = new Map<string, number>()
  let total = 0
  const walk = (node: HeapNode, stack: Frame[]) => {
    const here = [...stack, node.callFrame]
    if (node.selfSize > 0) {
      const caller = [...here].reverse().find((f) => own.test(f.url))
      const cat = categoryOf(node.callFrame)
      const key =
        short(node.callFrame) +
        (caller && caller !== node.callFrame ? ` <- ${short(caller)}` : '')
      const cur = places.get(key) ?? { bytes: 0, cat }
      cur.bytes += node.selfSize
      places.set(key, cur)
      cats.set(cat, (cats.get(cat) ?? 0) + node.selfSize)
      total += node.selfSize
    }
    for (const child of node.children) walk(child, here)
  }
  walk(profile.head, [])
  const pct = (b: number) => ((100 * b) / total).toFixed(1)
  return [
    `outlived the young generation: ${(total / 1e6).toFixed(1)} MB sampled, ${(total / requests).toFixed(0)} bytes per request`,
    '',
    '| category (allocating frame) | % of bytes |',
    '|---|---:|',
    ...[...cats]
      .sort((a, b) => b[1] - a[1])
      .map(([c, b]) => `| ${c} | ${pct(b)} |`),
    '',
    `| top ${top} places | category | % of bytes |`,
    '|---|---|---:|',
    ...[...places]
      .sort((a, b) => b[1].bytes - a[1].bytes)
      .slice(0, top)
      .map(([k, v]) => `| \`${k}\` | ${v.cat} | ${pct(v.bytes)} |`),
  ].join('\n')
}

const main = async () => {
  const scenario = args.scenario
  const requests = Number(args.requests)
  const connections = Number(args.connections)
  const out = args.out ?? (await tempDir('atcr-profile-'))
  const hold = await startHold({
    server: args.compiled ? compileBenchServer() : undefined,
    env: {
      HOLD_STATS_FLUSH_MS: args['flush-ms'],
      ...(args['persist-ms']
        ? { HOLD_STATS_PERSIST_MS: args['persist-ms'] }
        : {}),
    },
    nodeFlags: args['node-flags']?.split(' ').filter(Boolean),
  })
  try {
    const digest = await pushBlob(hold, randomBytes(1024))
    const paths = scenarioPaths(digest)[scenario]
    if (!paths) throw new Error(`--scenario: no scenario ${scenario}`)
    if (scenario === 'getStats' || scenario === 'listStats') {
      await countEveryPair(hold, digest)
    }
    console.error(
      `profiling ${scenario}: ${requests} requests, ${connections} connections, sampling every ${args.us} µs; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
    await load({
      base: hold.base,
      paths,
      connections,
      amount: Math.ceil(requests / 4),
    })
    const kind = args.heap ? 'heap' : 'profile'
    await getJson(
      `${hold.base}/_bench/${kind}/start?${args.heap ? 'bytes=4096' : `us=${args.us}`}`,
      { method: 'POST' },
    )
    const run = await load({
      base: hold.base,
      paths,
      connections,
      amount: requests,
      ...(args.rate ? { rate: Number(args.rate) } : {}),
    })
    await mkdir(out, { recursive: true })
    const file = join(
      out,
      `${scenario}.${args.heap ? 'heapprofile' : 'cpuprofile'}`,
    )
    await getJson(
      `${hold.base}/_bench/${kind}/stop?file=${encodeURIComponent(file)}`,
      { method: 'POST' },
    )
    console.error(
      `${run.rps.toFixed(0)} req/s, p99 ${run.p99} ms, errors ${run.errors}; profile in ${file}`,
    )
    const text = await readFile(file, 'utf8')
    console.log(
      args.heap
        ? summariseHeap(
            JSON.parse(text) as HeapProfile,
            requests,
            Number(args.top),
          )
        : summarise(JSON.parse(text) as Profile, Number(args.top)),
    )
  } finally {
    await stopHold(hold)
  }
}

if (args.summarise) {
  const profile = JSON.parse(await readFile(args.summarise, 'utf8')) as Profile
  console.log(summarise(profile, Number(args.top)))
} else {
  await main()
}
