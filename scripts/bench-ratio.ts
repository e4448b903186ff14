/**
 * Counted / not counted getBlob, hold by hold (not part of `npm test`):
 *   npm run bench:ratio -- [--variant 'LABEL:KEY=VALUE,...' ...] [--tree LABEL=DIR ...]
 *                          [--holds 4] [--alternations 4]
 *                          [--requests 50000] [--connections 32] [--flush-ms 60000] [--compiled]
 *                          [--node-flags FLAGS]
 *
 * Two holds of the same code can differ by 10-30% in a getBlob's CPU from one process to the
 * next (where V8 and the allocator put things, what the machine's other tenants do while each
 * runs), so a benchmark that starts one hold per configuration reads that difference as the
 * configuration's. This one starts `--holds` fresh holds of each configuration, one after the
 * other with the configurations' order turned each time, and inside each hold drives url (getBlob
 * `method=GET` without `repo`, not counted) and url+repo (counted) back to back `--alternations`
 * times, in turns, `--requests` each. A hold's figure is its url CPU per request over its
 * url+repo CPU per request, summed over the alternations (every thread of the process, from
 * /proc/<pid>/task/<tid>/schedstat, in nanoseconds); a configuration's figure is the median over
 * its holds, and the range says how far one hold's can be from it. What url+repo took over url
 * is also split between the main thread (the event loop: JavaScript, the collector's pauses) and
 * the others (V8's helper threads: concurrent marking, parallel scavenges; libuv's pool).
 *
 * The configurations are `default` (the hold as shipped), `counting nothing`
 * (HOLD_COUNT_SOURCE=manifest: `repo` is parsed, checked and signed into the URL, nothing is
 * counted; its figure is what `repo` costs a call apart from counting) and each `--variant`,
 * e.g. `--variant 'window 250:HOLD_STATS_PERSIST_MS=250'`, and each `--tree LABEL=DIR`, another
 * checkout (`git archive <commit> | tar -x -C DIR`, node_modules linked in) with its own code: an
 * experiment measured hold by hold.
 */
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  compileBenchServer,
  load,
  median,
  parseVariant,
  pushBlob,
  scenarioPaths,
  startHold,
  stopHold,
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true, default: [] },
    tree: { type: 'string', multiple: true, default: [] },
    holds: { type: 'string', default: '4' },
    alternations: { type: 'string', default: '4' },
    requests: { type: 'string', default: '50000' },
    connections: { type: 'string', default: '32' },
    'flush-ms': { type: 'string', default: '60000' },
    compiled: { type: 'boolean', default: false },
    // Flags for the holds' node, e.g. --node-flags='--single-threaded-gc'.
    'node-flags': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

/**
 * CPU time so far of a process's main thread (the event loop) and of its other threads (V8's
 * helpers, libuv's pool), in µs; schedstat counts nanoseconds.
 */
const threadsCpuUs = (pid: number): { main: number; others: number } => {
  const us = { main: 0, others: 0 }
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(
        readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(
          ' ',
        )[0],
      )
      us[Number(tid) === pid ? 'main' : 'others'] += ns / 1000
    } catch {
      // A thread that ended between the listing and the read.
    }
  }
  return us
}

const signed = (us: number): string =>
  `${us >= 0 ? '+' : ''}${us.toFixed(1)} µs`

const main = async () => {
  const holds = Number(args.holds)
  const alternations = Number(args.alternations)
  const requests = Number(args.requests)
  const connections = Number(args.connections)
  const configs: {
    label: string
    env: Record<string, string>
    dir?: string
    server?: string
  }[] = [
    { label: 'default', env: {} },
    { label: 'counting nothing', env: { HOLD_COUNT_SOURCE: 'manifest' } },
    ...args.variant.map(parseVariant),
    ...args.tree.map((t) => {
      const eq = t.indexOf('=')
      if (eq < 1) throw new Error(`--tree ${t}: give it as LABEL=DIR`)
      return { label: t.slice(0, eq), env: {}, dir: resolve(t.slice(eq + 1)) }
    }),
  ]
  if (args.compiled) {
    const server = compileBenchServer()
    for (const c of configs) {
      c.server = c.dir ? compileBenchServer(c.dir) : server
    }
  }
  console.log(
    `bench:ratio: ${configs.map((c) => c.label).join(', ')}; ${holds} holds each, ${alternations} alternations of ${requests} requests, ${connections} connections, records flushed every ${args['flush-ms']} ms; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  )
  const ratios = new Map<string, number[]>(configs.map((c) => [c.label, []]))
  const cpu = new Map<
    string,
    { url: number[]; repo: number[]; main: number[]; others: number[] }
  >(configs.map((c) => [c.label, { url: [], repo: [], main: [], others: [] }]))
  for (let h = 0; h < holds; h++) {
    // The configurations' order turns each time, so none always follows the same one.
    const order = configs.map((_, i) => configs[(i + h) % configs.length])
    for (const config of order) {
      const hold = await startHold({
        tree: config.dir,
        server: config.server,
        nodeFlags: args['node-flags']?.split(' ').filter(Boolean),
        env: { HOLD_STATS_FLUSH_MS: args['flush-ms'], ...config.env },
      })
      try {
        const digest = await pushBlob(hold, randomBytes(1024))
        const paths = scenarioPaths(digest)
        const cases = ['url', 'url+repo'] as const
        // Unmeasured: V8 compiles both paths' hot code before the clock starts.
        for (const s of cases) {
          await load({
            base: hold.base,
            paths: paths[s],
            connections,
            amount: 20000,
          })
        }
        const us = { url: 0, 'url+repo': 0 }
        // What url+repo took over url, on the main thread and on the others.
        const extra = { main: 0, others: 0 }
        for (let k = 0; k < alternations; k++) {
          for (const s of k % 2 ? [...cases].reverse() : cases) {
            const before = threadsCpuUs(hold.proc.pid!)
            const run = await load({
              base: hold.base,
              paths: paths[s],
              connections,
              amount: requests,
            })
            if (run.errors > 0) {
              throw new Error(`${config.label} ${s}: ${run.errors} errors`)
            }
            const after = threadsCpuUs(hold.proc.pid!)
            const main = (after.main - before.main) / requests
            const others = (after.others - before.others) / requests
            us[s] += main + others
            const sign = s === 'url' ? -1 : 1
            extra.main += (sign * main) / alternations
            extra.others += (sign * others) / alternations
          }
        }
        const ratio = us.url / us['url+repo']
        ratios.get(config.label)!.push(ratio)
        cpu.get(config.label)!.url.push(us.url / alternations)
        cpu.get(config.label)!.repo.push(us['url+repo'] / alternations)
        cpu.get(config.label)!.main.push(extra.main)
        cpu.get(config.label)!.others.push(extra.others)
        console.log(
          `${config.label}, hold ${h + 1}: url ${(us.url / alternations).toFixed(1)} µs, url+repo ${(us['url+repo'] / alternations).toFixed(1)} µs of CPU per request (${signed(extra.main)} on the main thread, ${signed(extra.others)} on the others), url+repo / url ${ratio.toFixed(3)}`,
        )
      } finally {
        await stopHold(hold)
      }
    }
  }
  const nothing = median(ratios.get('counting nothing')!)
  console.log(
    `\n| configuration | url+repo / url (median of holds) | range | url µs | url+repo µs | url+repo over url, main thread µs | the other threads µs | over counting nothing |`,
  )
  console.log('|---|---:|---|---:|---:|---:|---:|---:|')
  for (const { label } of configs) {
    const r = ratios.get(label)!
    const m = median(r)
    const c = cpu.get(label)!
    console.log(
      `| ${label} | ${m.toFixed(3)} | ${Math.min(...r).toFixed(3)}-${Math.max(...r).toFixed(3)} | ${median(c.url).toFixed(1)} | ${median(c.repo).toFixed(1)} | ${signed(median(c.main))} | ${signed(median(c.others))} | ${(m / nothing).toFixed(3)} |`,
    )
  }
  console.log(
    `\nurl+repo / url is url's CPU per request over url+repo's inside one hold (the throughput ratio of a hold bound by its CPU); "over counting nothing" divides it by the figure of the hold that parses and signs \`repo\` and counts nothing, what counting itself costs. Load average at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}.`,
  )
}

if (args.help) {
  console.log(
    "npm run bench:ratio -- [--variant 'LABEL:KEY=VALUE,...' ...] [--tree LABEL=DIR ...] [--holds 4] [--alternations 4] [--requests 50000] [--connections 32] [--flush-ms 60000] [--compiled] [--node-flags FLAGS]",
  )
} else {
  await main()
}
