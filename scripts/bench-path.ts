/**
 * The getBlob request path, checkout against checkout (not part of `npm test`):
 *   npm run bench:path -- [--tree LABEL=DIR ...] [--rounds 5] [--requests 20000] [--only a,b]
 *
 * Starts one hold per checkout (this one, labelled `this`, and each `--tree`, e.g. an older
 * commit exported with `git archive` and node_modules linked in) as child processes, stores a
 * 1 KiB blob in each, and drives the scenarios of `npm run bench` that measure the request path
 * (bare, url, url+repo; HOLD_STATS_FLUSH_MS 1000, or --flush-ms) on every hold, round by
 * round, in an order shuffled each round so the machine's load falls on all alike. Prints
 * per checkout the median req/s of each scenario and the medians of the per-round ratios
 * url+repo / bare and url+repo / url, the figures the throughput targets are set in; and the
 * same from the hold's CPU time per request (/proc/<pid>/stat over each run, every thread, the
 * persists and flushes included), which the other load on a shared machine moves far less
 * than throughput.
 * `--only` may also name bytes, bytes+repo, and getStats and listStats (after 500 counted pulls
 * over the 50 pairs, so each reads a row, and a listStats page five); `--compiled` runs each
 * checkout compiled by tsc, as the image does (see compileBenchServer). `--count-nothing` adds
 * a hold of this checkout that counts nothing (HOLD_COUNT_SOURCE=manifest) and prints url+repo
 * here over url+repo there: what counting costs apart from the longer request `repo` makes.
 * `--variant 'LABEL:KEY=VALUE,...'` adds a hold of this checkout with those variables set, e.g.
 * `--variant 'window 250:HOLD_STATS_PERSIST_MS=250'`.
 * `--rate N` paces each measured run at N requests a second (`--requests` of them) instead of
 * sending them back to back: every case then carries the same load and only the CPU per
 * request tells them apart (the throughput table says nothing then).
 */
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  compileBenchServer,
  countEveryPair,
  load,
  median,
  openLoad,
  parseVariant,
  procSample,
  pushBlob,
  roundOrder,
  scenarioPaths,
  startHold,
  stopHold,
  type Hold,
  type Run,
} from './lib.ts'

/** The label of the hold --count-nothing adds. */
const NOTHING = 'counting nothing'

const { values: args } = parseArgs({
  options: {
    tree: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string', default: 'bare,url,url+repo' },
    compiled: { type: 'boolean', default: false },
    'flush-ms': { type: 'string', default: '1000' },
    'count-nothing': { type: 'boolean', default: false },
    variant: { type: 'string', multiple: true, default: [] },
    warmup: { type: 'string', default: '1000' },
    rate: { type: 'string' },
    // Flags for the holds' node, e.g. --node-flags='--single-threaded-gc'.
    'node-flags': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(
    'npm run bench:path -- [--tree LABEL=DIR ...] [--rounds N] [--requests N] [--connections N] [--only bare,url,url+repo,bytes,bytes+repo,getStats,listStats] [--compiled] [--flush-ms 1000] [--count-nothing] [--variant LABEL:KEY=VALUE,...] [--warmup 1000] [--rate N] [--node-flags FLAGS]',
  )
} else {
  await main()
}

async function main() {
  const rounds = Number(args.rounds)
  const requests = Number(args.requests)
  const connections = Number(args.connections)
  const warmup = Number(args.warmup)
  const rate = args.rate ? Number(args.rate) : undefined
  const names = args.only.split(',')
  const trees: { label: string; dir?: string; env?: Record<string, string> }[] =
    [
      { label: 'this' },
      // The same checkout with HOLD_COUNT_SOURCE=manifest: getBlob still checks `repo` and signs
      // it into the URL, and counts nothing; url+repo there against url+repo here is what
      // counting itself costs, apart from the longer request and answer `repo` makes.
      ...(args['count-nothing']
        ? [{ label: NOTHING, env: { HOLD_COUNT_SOURCE: 'manifest' } }]
        : []),
      ...args.variant.map(parseVariant),
      ...args.tree.map((t) => {
        const eq = t.indexOf('=')
        if (eq < 1) throw new Error(`--tree ${t}: give it as LABEL=DIR`)
        return { label: t.slice(0, eq), dir: resolve(t.slice(eq + 1)) }
      }),
    ]
  const load0 = loadavg()
  console.error(
    `bench:path: ${trees.map((t) => t.label).join(', ')}; ${rounds} rounds of ${requests} requests, ${rate ? `paced at ${rate} a second` : `${connections} connections`}, records flushed every ${args['flush-ms']} ms; load average ${load0.map((l) => l.toFixed(2)).join(' ')}`,
  )
  const holds: (Hold & { label: string })[] = []
  try {
    for (const t of trees) {
      const h = await startHold({
        tree: t.dir,
        server: args.compiled ? compileBenchServer(t.dir) : undefined,
        env: { HOLD_STATS_FLUSH_MS: args['flush-ms'], ...t.env },
        nodeFlags: args['node-flags']?.split(' ').filter(Boolean),
      })
      holds.push({ ...h, label: t.label })
    }
    const blob = randomBytes(1024)
    const cases: {
      hold: Hold & { label: string }
      name: string
      paths: string[]
    }[] = []
    for (const h of holds) {
      const digest = await pushBlob(h, blob)
      const paths = scenarioPaths(digest)
      if (names.some((n) => n === 'getStats' || n === 'listStats')) {
        await countEveryPair(h, digest)
      }
      for (const name of names) {
        if (!paths[name]) throw new Error(`--only: no scenario ${name}`)
        cases.push({ hold: h, name, paths: paths[name] })
      }
    }
    const key = (c: { hold: { label: string }; name: string }) =>
      `${c.hold.label} ${c.name}`
    const runs = new Map<string, Run[]>(cases.map((c) => [key(c), []]))
    // The hold's CPU time per answered request in each run: far steadier than throughput on a
    // machine whose other load moves, and what throughput is made of when the hold is CPU-bound.
    const cpu = new Map<string, number[]>(cases.map((c) => [key(c), []]))
    for (const c of cases) {
      await load({
        base: c.hold.base,
        paths: c.paths,
        connections,
        amount: Math.ceil(requests / 4),
      })
    }
    let last: (typeof cases)[number] | undefined
    for (let round = 1; round <= rounds; round++) {
      const order = roundOrder(cases, round, last)
      last = order[order.length - 1]
      for (const c of order) {
        // Unmeasured first, so that what a hold's first requests after another's run cost is
        // not paid by the measured run.
        if (warmup > 0) {
          await load({
            base: c.hold.base,
            paths: c.paths,
            connections,
            amount: warmup,
          })
        }
        const before = procSample(c.hold.proc.pid!)
        const run = rate
          ? await openLoad({
              base: c.hold.base,
              paths: c.paths,
              rate,
              duration: requests / rate,
            })
          : await load({
              base: c.hold.base,
              paths: c.paths,
              connections,
              amount: requests,
            })
        const after = procSample(c.hold.proc.pid!)
        cpu.get(key(c))!.push((after.cpuUs - before.cpuUs) / run.ok)
        if (run.errors) throw new Error(`${key(c)}: ${run.errors} errors`)
        runs.get(key(c))!.push(run)
        console.error(
          `round ${round} ${key(c).padEnd(20)} ${run.rps.toFixed(0).padStart(7)} req/s  p99 ${run.p99} ms  ${cpu.get(key(c))!.at(-1)!.toFixed(0)} µs CPU per request`,
        )
      }
    }
    const rps = (label: string, name: string) =>
      runs.get(`${label} ${name}`)?.map((r) => r.rps)
    const ratio = (label: string, a: string, b: string) => {
      const ra = rps(label, a)
      const rb = rps(label, b)
      if (!ra || !rb) return ''
      return median(ra.map((x, i) => x / rb[i])).toFixed(3)
    }
    const cpuOf = (label: string, name: string) => cpu.get(`${label} ${name}`)
    // CPU per request of b over a's: the throughput ratio a / b of a hold bound by its CPU.
    const cpuRatio = (label: string, a: string, b: string) => {
      const ca = cpuOf(label, a)
      const cb = cpuOf(label, b)
      if (!ca || !cb) return ''
      return median(ca.map((x, i) => cb[i] / x)).toFixed(3)
    }
    console.log(
      `\nload average at the start ${load0.map((l) => l.toFixed(2)).join(' ')}, at the end ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
    )
    console.log(
      `| checkout | ${names.map((n) => `${n} req/s`).join(' | ')} | url+repo / bare | url+repo / url | url / bare |`,
    )
    console.log(`|---|${names.map(() => '---:|').join('')}---:|---:|---:|`)
    for (const h of holds) {
      console.log(
        `| ${h.label} | ${names
          .map((n) => median(rps(h.label, n)!).toFixed(0))
          .join(
            ' | ',
          )} | ${ratio(h.label, 'url+repo', 'bare')} | ${ratio(h.label, 'url+repo', 'url')} | ${ratio(h.label, 'url', 'bare')} |`,
      )
    }
    console.log(
      `\n| checkout | ${names.map((n) => `${n} µs CPU per request`).join(' | ')} | url+repo / bare | url+repo / url | url / bare |`,
    )
    console.log(`|---|${names.map(() => '---:|').join('')}---:|---:|---:|`)
    for (const h of holds) {
      console.log(
        `| ${h.label} | ${names
          .map((n) => median(cpuOf(h.label, n)!).toFixed(0))
          .join(
            ' | ',
          )} | ${cpuRatio(h.label, 'url+repo', 'bare')} | ${cpuRatio(h.label, 'url+repo', 'url')} | ${cpuRatio(h.label, 'url', 'bare')} |`,
      )
    }
    if (args['count-nothing'] && names.includes('url+repo')) {
      const across = (
        of: (l: string) => number[] | undefined,
        inverse: boolean,
      ) => {
        const a = of('this')!
        const b = of(NOTHING)!
        return median(a.map((x, i) => (inverse ? b[i] / x : x / b[i]))).toFixed(
          3,
        )
      }
      console.log(
        `\nwhat counting itself costs: url+repo counted / url+repo on the hold counting nothing (HOLD_COUNT_SOURCE=manifest): ${across((l) => rps(l, 'url+repo'), false)} in throughput, ${across((l) => cpuOf(l, 'url+repo'), true)} in CPU per request`,
      )
    }
    console.log(
      '\nratios are medians of the per-round ratios; in the CPU table, a / b is the CPU per request of b over that of a (the throughput ratio of a hold bound by its CPU)',
    )
  } finally {
    for (const h of holds) await stopHold(h)
  }
}
