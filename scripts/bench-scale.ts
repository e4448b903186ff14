/**
 * Scale benchmark (not part of `npm test`):
 *   npm run bench:scale [-- --records 1000000 | --dids 10000 --repos 10]
 *                       [--seed bulk|counts] [--data-dir /tmp/atcr-scale] [--pin] [--rate 1000]
 *                       [--compiled] [--hold-env KEY=VALUE ...]
 *
 * Seeds a hold with dids x repos io.atcr.hold.stats records (100,000 by default; --records N
 * gives N / 10 DIDs of 10 repositories). `--seed bulk` (the default) writes the counter rows,
 * their records and blocks straight into the data dir and builds the tree in one signed commit,
 * as a repair does (rebuildTree); `--seed counts` goes through the real counting path instead
 * (counter table, then flushes of 200 records per commit; about 2 minutes per 100,000 records).
 * Both leave the same records and the same tree. Then it starts the hold as a child process and
 * measures: start-up time, RSS, the time to flush 200 changed records (right after their pulls
 * and back to back, and as at the default 60 s cadence: pulls persisted, log copied),
 * getStats and listStats latency at --rate req/s (open loop, with a bare route as the floor and
 * the hold's event-loop delay, collector pauses and own time per call, the generator's own longest
 * stall, and the CPU time the hypervisor gave elsewhere on each core), and
 * the time to export the repo with getRepo. With --data-dir
 * an already seeded directory is reused. --pin puts the hold and this
 * process on separate cores (taskset) and drives the latency runs with the lean load generator
 * that keeps its core busy (latency-load.ts; without --pin, node:http's client). --compiled runs the hold compiled to JavaScript, as the
 * image runs it, instead of from its TypeScript sources (lib.ts, compileBenchServer).
 * --hold-env adds a variable to the hold's environment (MALLOC_ARENA_MAX=2, say).
 */
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { verifyRepoCar } from '@atproto/repo'
import { ids } from '../src/ids.ts'
import { encode } from '@atproto/lex-cbor'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { Database } from '../src/db.ts'
import { loadSigningKey } from '../src/identity.ts'
import { cborCidBytes, cidString } from '../src/repo/cid.ts'
import { syncEvent } from '../src/repo/events.ts'
import { RecordIndex } from '../src/repo/record-index.ts'
import { rebuildTree } from '../src/repo/repair.ts'
import { Sequencer } from '../src/repo/sequencer.ts'
import { SqlRepoStorage } from '../src/repo/storage.ts'
import { iso, toRecord, type CounterRow } from '../src/stats/counter-row.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { HoldServer } from '../src/server.ts'
import { testPlcUrl, identity } from '../test/_identity.ts'
import {
  compileBenchServer,
  getJson,
  median,
  openLoad,
  type OpenRun,
  OWNER,
  pushBlob,
  startHold,
  stopHold,
} from './lib.ts'
import { latencyLoad } from './latency-load.ts'

const { values: args } = parseArgs({
  options: {
    records: { type: 'string' },
    dids: { type: 'string', default: '10000' },
    repos: { type: 'string', default: '10' },
    seed: { type: 'string', default: 'bulk' },
    'data-dir': { type: 'string' },
    verify: { type: 'boolean', default: false },
    // The hold's DID names its port, so seeding and measuring use the same one.
    port: { type: 'string', default: '18877' },
    pin: { type: 'boolean', default: false },
    // Requests a second for the getStats, listStats and bare-route latencies.
    rate: { type: 'string', default: '1000' },
    compiled: { type: 'boolean', default: false },
    // KEY=VALUE added to the hold's environment (repeatable), e.g. MALLOC_ARENA_MAX=2.
    'hold-env': { type: 'string', multiple: true, default: [] },
  },
})
const RATE = Number(args.rate)
const MIB = 1024 * 1024
const REPOS = Number(args.repos)
const DIDS = args.records
  ? Math.ceil(Number(args.records) / REPOS)
  : Number(args.dids)
if (!Number.isSafeInteger(DIDS) || DIDS < 1 || !(REPOS >= 1)) {
  throw new Error('--records, --dids and --repos take positive integers')
}
if (args.seed !== 'bulk' && args.seed !== 'counts') {
  throw new Error('--seed takes bulk or counts')
}
const dataDir =
  args['data-dir'] ?? join(tmpdir(), `atcr-scale-${DIDS}x${REPOS}`)

const didOf = (i: number) => `did:plc:scale${String(i).padStart(19, '0')}`
const repoOf = (j: number) => (j === 0 ? 'app' : `service-${j}`)

const generator = args.pin ? 'raw sockets, own core' : 'node:http client'

const latencies = (run: OpenRun) =>
  `p50 ${run.p50} ms, p99 ${run.p99} ms, p99.9 ${run.p999} ms, max ${run.max} ms; ${run.rps.toFixed(0)} req/s, ${run.errors} errors` +
  (run.generatorStall === undefined
    ? ''
    : `; the generator's longest stall ${run.generatorStall} ms`)

/** Each core's steal time so far (/proc/stat, in USER_HZ ticks of 10 ms), in ms. */
const stealMs = (): number[] =>
  readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d+ /.test(line))
    .map((line) => Number(line.split(/\s+/)[8]) * 10)

const progress = (label: string, done: number, total: number) => {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${label} ${done}/${total}`)
    if (done === total) process.stderr.write('\n')
  } else if (done === total || done % Math.ceil(total / 10) === 0) {
    console.error(`${label} ${done}/${total}`)
  }
}

const pullsOf = (i: number, j: number) => 1 + ((i * 7 + j * 13) % 50)

const seedEnv = async () => {
  await mkdir(dataDir, { recursive: true })
  await identity(OWNER)
  return readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: args.port,
    HOLD_DATA_DIR: dataDir,
    HOLD_OWNER_DID: OWNER,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_STATS_FLUSH_MS: '86400000',
    LOG_LEVEL: 'warn',
  })
}

/** Counts for every pair through the hold's own counting path, then flushes them all. */
const seedCounts = async () => {
  const env = await seedEnv()
  const hold = await HoldServer.create(envToCfg(env, 'seed'), envToSecrets(env))
  const started = performance.now()
  const total = DIDS * REPOS
  let commits = 0
  hold.ctx.writer.onCommit(() => {
    commits++
    progress('committing', Math.min(commits * 200, total), total)
  })
  for (let i = 0; i < DIDS; i++) {
    for (let j = 0; j < REPOS; j++) {
      const n = pullsOf(i, j)
      for (let k = 0; k < n; k++) hold.ctx.stats.countPull(didOf(i), repoOf(j))
    }
    if (i % 1000 === 999) hold.ctx.stats.persist()
  }
  const flush = await hold.ctx.stats.flush()
  await hold.destroy()
  console.error(
    `seeded ${flush.records} records in ${flush.commits} commits, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  )
}

/**
 * The same counters and records written straight into the data dir, a batch of pairs per
 * transaction, then one new tree over every record (rebuildTree, as HOLD_REPAIR builds it) and a
 * #sync event for it, so consumers and getRepo see one repo.
 */
const seedBulk = async () => {
  const env = await seedEnv()
  const cfg = envToCfg(env, 'seed')
  // A first start makes the repo (captain, identity events), then the rows go in beside it.
  const hold = await HoldServer.create(cfg, envToSecrets(env))
  await hold.destroy()
  const started = performance.now()
  const database = new Database(join(dataDir, 'hold.sqlite'))
  // A seed, not the hold: the whole index in memory, and no fsync until the checkpoint at the
  // end (a crash here means seeding again).
  database.db.exec('PRAGMA cache_size = -2000000')
  database.db.exec('PRAGMA synchronous = OFF')
  const records = new RecordIndex(database.db)
  const storage = new SqlRepoStorage(database, records)
  const keypair = await loadSigningKey(dataDir, undefined)
  const root = storage.getRootSync()!
  const insertCounter = database.db.prepare(
    `INSERT INTO stats_counter (did, repository, pull_count, push_count, last_pull, last_push,
       created_at, updated_at, version)
     VALUES (?, ?, ?, 0, ?, NULL, ?, ?, 1)`,
  )
  // Each record goes into the repo with its counter, so none is behind.
  const clearDirty = database.db.prepare('DELETE FROM stats_dirty')
  // The hold adds each persist's counts to its totals itself; a seed does the same per batch.
  const addTotals = database.db.prepare(
    'UPDATE stats_total SET pulls = pulls + ? WHERE id = 1',
  )
  const at = new Date('2026-01-01T00:00:00.000Z').getTime()
  const total = DIDS * REPOS
  const BATCH_DIDS = 10_000
  for (let first = 0; first < DIDS; first += BATCH_DIDS) {
    database.transaction(() => {
      let pulls = 0
      for (let i = first; i < Math.min(DIDS, first + BATCH_DIDS); i++) {
        for (let j = 0; j < REPOS; j++) {
          const stamp = iso(at + (i * REPOS + j) * 1000)
          const row: CounterRow = {
            did: didOf(i),
            repository: repoOf(j),
            pull_count: pullsOf(i, j),
            push_count: 0,
            last_pull: stamp,
            last_push: null,
            created_at: stamp,
            updated_at: stamp,
            version: 1,
            base_pull: null,
            base_push: null,
            base_last_pull: null,
            base_last_push: null,
          }
          insertCounter.run(
            row.did,
            row.repository,
            row.pull_count,
            stamp,
            stamp,
            stamp,
          )
          pulls += row.pull_count
          const bytes = encode(toRecord(row))
          const cid = cidString(cborCidBytes(bytes))
          storage.putBlockSync(cid, bytes, root.rev)
          records.put(
            ids.HoldStats,
            statsRecordKey(row.did, row.repository),
            cid,
            root.rev,
            stamp,
          )
        }
      }
      addTotals.run(pulls)
      clearDirty.run()
    })
    progress('rows', Math.min(DIDS, first + BATCH_DIDS) * REPOS, total)
  }
  const sequencer = new Sequencer(database)
  const rebuilt = await rebuildTree({
    database,
    storage,
    records,
    did: cfg.did,
    rev: root.rev,
    keypair,
    inTxn: (head) => sequencer.append([syncEvent(cfg.did, head)]),
  })
  database.checkpoint()
  await database.close()
  console.error(
    `seeded ${rebuilt.kept} records in one commit, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  )
}

const main = async () => {
  if (!existsSync(join(dataDir, 'hold.sqlite'))) {
    await (args.seed === 'bulk' ? seedBulk() : seedCounts())
  } else console.error(`reusing ${dataDir}`)

  const server = args.compiled ? compileBenchServer() : undefined
  const start = () =>
    startHold({
      dataDir,
      port: Number(args.port),
      server,
      env: {
        HOLD_STATS_FLUSH_MS: '86400000',
        ...Object.fromEntries(
          args['hold-env'].map((kv) => [
            kv.slice(0, kv.indexOf('=')),
            kv.slice(kv.indexOf('=') + 1),
          ]),
        ),
      },
    })
  // A start as after a crash (no clean-stop mark: the whole tree is walked), stopped cleanly,
  // then the start measured below, which finds the mark.
  // (Opened as the hold opens it, so a data dir of an older version is migrated first.)
  const dropMark = new Database(join(dataDir, 'hold.sqlite'))
  dropMark.db.exec('DELETE FROM repo_clean_stop')
  await dropMark.close()
  const dbBytes = statSync(join(dataDir, 'hold.sqlite')).size
  const walked = await start()
  const walkedMs = walked.startMs
  await stopHold(walked)
  const h = await start()
  const rows: [string, string, string][] = []
  try {
    const startMs = h.startMs
    const rssStart = (await getJson<{ rssMb: number }>(`${h.base}/_bench/info`))
      .rssMb

    const mem = async (phase: string) => {
      const m = await getJson<{
        rssMb: number
        heapMb: number
        externalMb: number
        nodeCacheMb: number
        nodeCacheLayers: number[]
        status: Record<string, string>
      }>(`${h.base}/_bench/info`)
      console.error(
        `${phase}: rss ${m.rssMb.toFixed(0)} MB, heap ${m.heapMb.toFixed(0)} MB, external ${m.externalMb.toFixed(0)} MB, node cache ${m.nodeCacheMb.toFixed(1)} MB (nodes by layer, from 0: ${m.nodeCacheLayers.join(' ')}), ${Object.entries(
          m.status,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      )
    }
    await mem('after start')
    // A 200-record flush: 200 counted pulls over 200 different pairs spread over the repo.
    const blob = randomBytes(512)
    const digest = await pushBlob(h, blob)
    // Five flushes right after their pulls and back to back: each one also persists the pulls
    // and starts while the last one's log is still being copied. Then five as at the default
    // cadence (a minute apart): the hold's own persist (every 25 ms) has written the pulls,
    // and the log is copied in full, before the flush starts.
    const flushMs: number[] = []
    const settledMs: number[] = []
    const copiedMs: number[] = []
    for (let round = 0; round < 10; round++) {
      const pulls = Array.from({ length: 200 }, (_, k) => {
        const i = (round * 1999 + k * 49) % DIDS
        const q = new URLSearchParams({
          did: didOf(i),
          cid: digest,
          method: 'GET',
          repo: repoOf(k % REPOS),
        })
        return fetch(`${h.base}/xrpc/${ids.SyncGetBlob}?${q}`).then((r) =>
          r.arrayBuffer(),
        )
      })
      await Promise.all(pulls)
      if (round >= 5) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        const copied = await getJson<{ ms: number }>(
          `${h.base}/_bench/wal-settled`,
          { method: 'POST' },
        )
        copiedMs.push(copied.ms)
      }
      const result = await getJson<{
        records: number
        commits: number
        ms: number
      }>(`${h.base}/_bench/flush`, { method: 'POST' })
      if (result.records !== 200 || result.commits !== 1) {
        throw new Error(
          `expected one commit of 200 records, got ${JSON.stringify(result)}`,
        )
      }
      ;(round < 5 ? flushMs : settledMs).push(result.ms)
    }

    await mem('after start and 10 flushes')
    const statsPaths = Array.from({ length: 500 }, (_, k) => {
      const q = new URLSearchParams({
        did: didOf((k * 97) % DIDS),
        repo: repoOf(k % REPOS),
      })
      return `/xrpc/${ids.HoldGetStats}?${q}`
    })
    const listPaths = Array.from(
      { length: 500 },
      (_, k) => `/xrpc/${ids.HoldListStats}?did=${didOf((k * 97) % DIDS)}`,
    )
    // Open-loop, --rate requests a second for 10 s, with the bare Hono route at the same rate
    // as the floor this machine and stack set for any route. With --pin the load generator has
    // a core of its own and is the lean one (scripts/latency-load.ts), whose own tail is well
    // below the hold's; without, node:http's client (openLoad), which sleeps between sends.
    const atRate = (paths: string[], duration = 10) =>
      (args.pin ? latencyLoad : openLoad)({
        base: h.base,
        paths,
        rate: RATE,
        duration,
      })
    // --pin: the hold on CPU 0, this process (the load generator) on CPU 1, to see how much of
    // the latency tail is the two sharing both cores.
    if (args.pin) {
      execFileSync('taskset', ['-a', '-cp', '0', String(h.proc.pid)])
      execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)])
    }
    // Unmeasured: 20 s of the same load first, so V8 has compiled the routes' hot code before
    // the clock starts (a started hold's first ~12,000 calls of a route bring bursts of
    // optimizing compiles, 10-70 ms each, which share the hold's core with its event loop: p99
    // 30-100 ms in those seconds, 2-3 ms once they are done), and the log of the ten flushes
    // above copied into the database, as it is between flushes at the default cadence (a
    // minute apart; see the row on how long copying one flush's log takes).
    await atRate(['/_bench/bare', ...statsPaths, ...listPaths], 20)
    await getJson(`${h.base}/_bench/wal-settled`, { method: 'POST' })
    type Pauses = { count: number; ms: number; max: number }
    type Quantiles = { p50: number; p99: number; p999: number; max: number }
    type Delay = Quantiles & {
      gc: Record<string, Pauses>
      served: Quantiles & { count: number }
    }
    const loopDelay = () =>
      getJson<Delay>(`${h.base}/_bench/loop-delay`, { method: 'POST' })
    // The CPU time the hypervisor gave to other machines while a run went on (steal), per core.
    const stolen = async (run: () => Promise<OpenRun>) => {
      const before = stealMs()
      const result = await run()
      const after = stealMs()
      return { result, steal: after.map((ms, i) => ms - (before[i] ?? 0)) }
    }
    await loopDelay()
    const getStats = await stolen(() => atRate(statsPaths))
    const getStatsDelay = await loopDelay()
    const listStats = await stolen(() => atRate(listPaths))
    const listStatsDelay = await loopDelay()
    const bare = await stolen(() => atRate(['/_bench/bare']))
    const bareDelay = await loopDelay()

    await mem('after getStats/listStats load')
    // The export read as a client reads it: when its first byte comes, how many bytes each
    // second after that, and the hold's resident memory sampled once a second meanwhile.
    const exportStarted = performance.now()
    const res = await fetch(
      `${h.base}/xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)}`,
    )
    const sentLength = res.headers.get('content-length')
    const carHash = createHash('sha256')
    const kept: Uint8Array[] = []
    let carBytes = 0
    let firstByteMs: number | undefined
    const perSecond: number[] = []
    const rssDuring: number[] = []
    const sampling = setInterval(() => {
      void getJson<{ rssMb: number }>(`${h.base}/_bench/info`).then((m) =>
        rssDuring.push(m.rssMb),
      )
    }, 1000)
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        const now = performance.now() - exportStarted
        firstByteMs ??= now
        const second = Math.floor((now - firstByteMs) / 1000)
        perSecond[second] = (perSecond[second] ?? 0) + chunk.byteLength
        carBytes += chunk.byteLength
        carHash.update(chunk)
        if (args.verify) kept.push(chunk)
      }
    } finally {
      clearInterval(sampling)
    }
    const exportMs = performance.now() - exportStarted
    // Whole seconds only: the last one is cut short by the end of the CAR.
    const paceMib = Array.from(perSecond.slice(0, -1), (b) => (b ?? 0) / MIB)
    let verified = ''
    if (args.verify) {
      const started = performance.now()
      const repo = await verifyRepoCar(Buffer.concat(kept), h.did)
      verified = `, verifyRepoCar: ${repo.creates.length} records in ${((performance.now() - started) / 1000).toFixed(1)} s`
    }
    await mem('after getRepo export')
    const rssEnd = (await getJson<{ rssMb: number }>(`${h.base}/_bench/info`))
      .rssMb

    rows.push(
      ['records', `${DIDS * REPOS} (${DIDS} DIDs x ${REPOS} repositories)`, ''],
      [
        'database size (hold.sqlite, checkpointed) per record',
        `${(dbBytes / 1024 / 1024).toFixed(0)} MiB, ${(dbBytes / (DIDS * REPOS)).toFixed(0)} bytes`,
        '',
      ],
      [
        'start-up after a clean stop (spawn to listening)',
        `${startMs.toFixed(0)} ms`,
        '< 3 s',
      ],
      [
        'start-up after a crash (the whole tree walked)',
        `${walkedMs.toFixed(0)} ms`,
        '',
      ],
      [
        'RSS after start / after the run',
        `${rssStart.toFixed(0)} / ${rssEnd.toFixed(0)} MB`,
        '< 300 MB',
      ],
      [
        'flush of 200 changed records, right after the pulls, back to back (median of 5)',
        `${median(flushMs).toFixed(0)} ms (${flushMs.map((m) => m.toFixed(0)).join(', ')})`,
        '',
      ],
      [
        'flush of 200 changed records, as at the 60 s cadence: pulls persisted, log copied (median of 5)',
        `${median(settledMs).toFixed(0)} ms (${settledMs.map((m) => m.toFixed(0)).join(', ')})`,
        '< 150 ms',
      ],
      [
        "the wait for the last flush's log to be copied, after the pulls and 100 ms (median of 5)",
        `${median(copiedMs).toFixed(0)} ms (${copiedMs.map((m) => m.toFixed(0)).join(', ')})`,
        '',
      ],
      [
        `getStats at ${RATE} req/s (open loop, 10 s, ${generator})`,
        latencies(getStats.result),
        'p99 < 2 ms',
      ],
      [
        `listStats at ${RATE} req/s (open loop, 10 s, ${generator})`,
        latencies(listStats.result),
        'p99 < 5 ms',
      ],
      [
        `bare Hono route at ${RATE} req/s (the floor)`,
        latencies(bare.result),
        '',
      ],
      [
        "the hold's own time per call, request parsed to answer written, during getStats / listStats / bare",
        ['p50', 'p99', 'p999', 'max']
          .map(
            (q) =>
              `${q.replace('p999', 'p99.9')} ${[getStatsDelay, listStatsDelay, bareDelay].map((d) => d.served[q as 'p99']).join(' / ')} ms`,
          )
          .join(', '),
        '',
      ],
      [
        `CPU time the hypervisor took (steal) during getStats / listStats / bare, per core${args.pin ? " (the hold's, the generator's)" : ''}`,
        [getStats, listStats, bare]
          .map((r) => r.steal.map((ms) => `${ms} ms`).join(', '))
          .join(' / '),
        '',
      ],
      [
        "the hold's event-loop delay during getStats / listStats / bare",
        ['p99', 'p999', 'max']
          .map(
            (q) =>
              `${q.replace('p999', 'p99.9')} ${[getStatsDelay, listStatsDelay, bareDelay].map((d) => d[q as 'p99']).join(' / ')} ms`,
          )
          .join(', '),
        '',
      ],
      [
        "the collector's pauses during getStats / listStats / bare",
        [getStatsDelay, listStatsDelay, bareDelay]
          .map((d) =>
            Object.entries(d.gc)
              .map(
                ([kind, p]) => `${p.count} ${kind} ${p.ms} ms (max ${p.max})`,
              )
              .join(', '),
          )
          .join(' / '),
        '',
      ],
      [
        'getRepo export',
        `${(exportMs / 1000).toFixed(1)} s, ${(carBytes / MIB).toFixed(1)} MiB${sentLength === null ? ' (chunked)' : ''}${verified}`,
        '',
      ],
      [
        'getRepo export: first byte after / MiB each whole second after it (min, median, max) / hold RSS during it',
        `${(firstByteMs ?? exportMs).toFixed(0)} ms / ${
          paceMib.length > 0
            ? `${Math.min(...paceMib).toFixed(1)}, ${median(paceMib).toFixed(1)}, ${Math.max(...paceMib).toFixed(1)}`
            : 'under a second in all'
        } / ${
          rssDuring.length > 0
            ? `${Math.min(...rssDuring).toFixed(0)}-${Math.max(...rssDuring).toFixed(0)} MB`
            : 'not sampled'
        }`,
        'steady, memory flat',
      ],
    )
    console.log(`\n| measure | value | target |`)
    console.log(`|---|---|---|`)
    for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`)
    const digestOfCar = carHash.digest('hex').slice(0, 12)
    console.error(`car sha256 ${digestOfCar}...`)
  } finally {
    await stopHold(h)
  }
}

await main()
