/**
 * The 200-record stats flush, alone, compared across code trees (not part of `npm test`):
 *   node scripts/bench-flush.ts --data-dir /tmp/scale-100k [--trees DIR,DIR] [--rounds 4]
 *        [--flushes 5] [--ops 200] [--spread-ms 0] [--profile OUT_DIR] [--no-warm] [--trace]
 *
 * For each tree (a checkout of this repo; default: this one) the seeded data dir (from
 * `npm run bench:scale`, never changed here) is copied once, and then, round by round and
 * alternating the trees, a child process runs that tree's hold in-process on its copy (the port
 * the seed was made with, which names the hold's DID), waits for the start-up read of the tree
 * into the node cache (unless --no-warm), and times `--flushes` flushes of `--ops` changed
 * pairs each, chosen at random over the whole repo (200 counted pulls, then one flush, as
 * bench:scale does; --spread-ms spreads the pulls over that many ms, so the hold's own persists
 * write them between flushes, as requests would). With --profile each child's flushes are sampled by V8's CPU profiler
 * (`node --cpu-prof`'s) into OUT_DIR. Prints per-tree medians and the ratio of the medians.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    trees: { type: 'string' },
    rounds: { type: 'string', default: '4' },
    flushes: { type: 'string', default: '5' },
    ops: { type: 'string', default: '200' },
    port: { type: 'string', default: '18877' },
    profile: { type: 'string' },
    'no-warm': { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false },
    'spread-ms': { type: 'string', default: '0' },
    // Internal: one child's run.
    child: { type: 'string' },
    dir: { type: 'string' },
    seed: { type: 'string', default: '1' },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(
    'node scripts/bench-flush.ts --data-dir DIR [--trees DIR,DIR] [--rounds N] [--flushes N] [--ops N] [--spread-ms N] [--port N] [--profile OUT_DIR] [--no-warm] [--trace]',
  )
  process.exit(0)
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** A small seeded generator, so each tree's round changes the same pairs. */
const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

type ChildResult = { flushMs: number[]; rssMb: number; warmMs: number }

/** Time per SQL statement and the WAL bytes each COMMIT wrote, summed over the flushes. */
const traceSql = async (): Promise<() => void> => {
  const { StatementSync, DatabaseSync } = await import('node:sqlite')
  const spent = new Map<string, { ms: number; calls: number }>()
  const note = (sql: string, ms: number) => {
    const key = sql.replace(/\s+/g, ' ').slice(0, 70)
    const entry = spent.get(key) ?? { ms: 0, calls: 0 }
    entry.ms += ms
    entry.calls++
    spent.set(key, entry)
  }
  type Method = (this: { sourceSQL: string }, ...params: unknown[]) => unknown
  const proto = StatementSync.prototype as unknown as Record<string, Method>
  for (const method of ['run', 'get', 'all']) {
    const original = proto[method]
    proto[method] = function (...params) {
      const t = performance.now()
      try {
        return original.apply(this, params)
      } finally {
        note(this.sourceSQL, performance.now() - t)
      }
    }
  }
  // Frames a COMMIT wrote, from the WAL index's last frame number (a log that starts over
  // reuses its file, so the file's size does not tell).
  const { openSync, readSync } = await import('node:fs')
  const header = Buffer.alloc(24)
  let shm: number | undefined
  const lastFrame = () => {
    try {
      shm ??= openSync(`${process.env.HOLD_DATA_DIR}/hold.sqlite-shm`, 'r')
      readSync(shm, header, 0, 24, 0)
      return header.readUInt32LE(16)
    } catch {
      return 0
    }
  }
  let frames = 0
  const exec = DatabaseSync.prototype.exec
  DatabaseSync.prototype.exec = function (
    this: InstanceType<typeof DatabaseSync>,
    sql: string,
  ) {
    const commit = sql === 'COMMIT'
    const before = commit ? lastFrame() : 0
    const t = performance.now()
    try {
      return exec.call(this, sql)
    } finally {
      note(sql, performance.now() - t)
      if (commit) {
        const after = lastFrame()
        frames += after >= before ? after - before : after
      }
    }
  }
  return () => {
    const n = Number(args.flushes)
    console.error(
      `per flush: ${Math.round(frames / n)} WAL frames written at COMMIT (${((frames * (header.readUInt16LE(14) + 24)) / n / 2 ** 20).toFixed(1)} MiB)`,
    )
    for (const [sql, { ms, calls }] of [...spent]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, 20)) {
      console.error(
        `${(ms / n).toFixed(1).padStart(7)} ms ${String(Math.round(calls / n)).padStart(6)} calls  ${sql}`,
      )
    }
    spent.clear()
    frames = 0
  }
}

const runChild = async (): Promise<void> => {
  const tree = resolve(args.child!)
  let report: (() => void) | undefined
  const load = (path: string) => import(pathToFileURL(join(tree, path)).href)
  const { identity, testPlcUrl } = await load('test/_identity.ts')
  const { envToCfg, envToSecrets, readEnv } = await load('src/config.ts')
  const { HoldServer } = await load('src/server.ts')
  const owner = 'did:plc:benchowner00000000000000'
  await identity(owner)
  Object.assign(process.env, {
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: args.port,
    HOLD_DATA_DIR: args.dir,
    HOLD_OWNER_DID: owner,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_STATS_FLUSH_MS: '86400000',
    LOG_LEVEL: 'warn',
  })
  const env = readEnv()
  const hold = await HoldServer.create(
    envToCfg(env, 'bench'),
    envToSecrets(env),
  )
  await hold.start()
  const warmStarted = performance.now()
  if (!args['no-warm']) await hold.ctx.writer.warm()
  const warmMs = performance.now() - warmStarted
  // Every flush's pairs chosen up front, so the list of all pairs is let go before timing.
  const random = rng(Number(args.seed))
  const rounds: { did: string; repository: string }[][] = []
  {
    const pairs = hold.ctx.db.db
      .prepare('SELECT did, repository FROM stats_counter')
      .all() as { did: string; repository: string }[]
    for (let f = 0; f < Number(args.flushes); f++) {
      const chosen = new Set<number>()
      while (chosen.size < Number(args.ops)) {
        chosen.add(Math.floor(random() * pairs.length))
      }
      rounds.push([...chosen].map((i) => pairs[i]))
    }
  }
  let session: import('node:inspector/promises').Session | undefined
  if (args.profile) {
    const { Session } = await import('node:inspector/promises')
    session = new Session()
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 200 })
    await session.post('Profiler.start')
  }
  const flushMs: number[] = []
  if (args.trace) report = await traceSql()
  for (const chosen of rounds) {
    // Spread over --spread-ms, the counts reach the table in the hold's own persists between
    // flushes, as when they come from requests; else they all wait for the flush's persist.
    const spread = Number(args['spread-ms'])
    let k = 0
    for (const pair of chosen) {
      hold.ctx.stats.countPull(pair.did, pair.repository)
      if (spread > 0 && ++k % 10 === 0) {
        await new Promise((r) => setTimeout(r, (spread * 10) / chosen.length))
      }
    }
    const result = await hold.ctx.stats.flush()
    if (result.records !== chosen.length) {
      throw new Error(
        `expected ${chosen.length} records, got ${result.records}`,
      )
    }
    flushMs.push(result.ms)
    // As between a hold's flushes: the checkpoint worker gets its turn.
    await new Promise((r) => setTimeout(r, 200))
  }
  report?.()
  if (session) {
    const { writeFileSync } = await import('node:fs')
    const { profile } = await session.post('Profiler.stop')
    const file = join(args.profile!, `flush-${process.pid}.cpuprofile`)
    writeFileSync(file, JSON.stringify(profile))
    console.error(`profile: ${file}`)
  }
  const out: ChildResult = {
    flushMs,
    rssMb: process.memoryUsage().rss / 2 ** 20,
    warmMs,
  }
  await hold.destroy()
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`)
}

const runParent = async (): Promise<void> => {
  const source = args['data-dir']
  if (!source || !existsSync(join(source, 'hold.sqlite'))) {
    throw new Error(
      '--data-dir must name a seeded data dir (npm run bench:scale)',
    )
  }
  const trees = (args.trees ?? '.').split(',').map((t) => resolve(t))
  if (args.profile) await mkdir(args.profile, { recursive: true })
  const copies: string[] = []
  for (let t = 0; t < trees.length; t++) {
    const copy = `${resolve(source)}-flush-bench-${t}`
    await rm(copy, { recursive: true, force: true })
    execFileSync('cp', ['-a', source, copy])
    copies.push(copy)
  }
  const results: number[][] = trees.map(() => [])
  const rss: number[][] = trees.map(() => [])
  const nodeFlags = ['--max-semi-space-size=4']
  for (let round = 0; round < Number(args.rounds); round++) {
    // Alternating which tree goes first, so neither always follows the other.
    const order = trees.map((_, t) => t)
    if (round % 2 === 1) order.reverse()
    for (const t of order) {
      const child = spawn(
        process.execPath,
        [
          ...nodeFlags,
          'scripts/bench-flush.ts',
          '--child',
          trees[t],
          '--dir',
          copies[t],
          '--seed',
          String(round + 1),
          '--flushes',
          args.flushes!,
          '--ops',
          args.ops!,
          '--port',
          args.port!,
          ...(args.profile ? ['--profile', resolve(args.profile)] : []),
          ...(args['no-warm'] ? ['--no-warm'] : []),
          ...(args.trace ? ['--trace'] : []),
          '--spread-ms',
          args['spread-ms']!,
        ],
        { cwd: trees[t], stdio: ['ignore', 'pipe', 'inherit'] },
      )
      let stdout = ''
      child.stdout.on('data', (d) => (stdout += d))
      const code = await new Promise((r) => child.once('exit', r))
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '))
      if (code !== 0 || !line) throw new Error(`child for ${trees[t]} failed`)
      const result = JSON.parse(line.slice(7)) as ChildResult
      results[t].push(...result.flushMs)
      rss[t].push(result.rssMb)
      console.error(
        `round ${round + 1} ${trees[t]}: ${result.flushMs.map((m) => m.toFixed(0)).join(', ')} ms (warm ${result.warmMs.toFixed(0)} ms, rss ${result.rssMb.toFixed(0)} MB, load ${loadavg()[0].toFixed(2)})`,
      )
    }
  }
  for (let t = 0; t < trees.length; t++) {
    const xs = results[t]
    console.log(
      `${trees[t]}: median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)}, n ${xs.length}), rss at end ${median(rss[t]).toFixed(0)} MB`,
    )
  }
  for (let t = 1; t < trees.length; t++) {
    console.log(
      `${trees[t]} / ${trees[0]}: ${(median(results[t]) / median(results[0])).toFixed(3)}`,
    )
  }
  for (const copy of copies) await rm(copy, { recursive: true, force: true })
}

await (args.child ? runChild() : runParent())
