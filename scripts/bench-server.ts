/**
 * A hold for benchmarks: the real server, plus two routes the benchmark reads (a bare Hono route,
 * the ceiling of this stack, and commit counters), and with BENCH_COUNTER=seed one signed commit
 * per count around the real getBlob. Prints `READY <port>` when it listens.
 */
import { subscribe } from 'node:diagnostics_channel'
import { readFileSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import {
  constants,
  createHistogram,
  monitorEventLoopDelay,
  PerformanceObserver,
} from 'node:perf_hooks'
import type { LexMap } from '@atproto/lex-data'
import type { App } from '../src/api/util.ts'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import type { AppContext } from '../src/context.ts'
import { ids } from '../src/lexicons.ts'
import { HoldServer } from '../src/server.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'

/**
 * One signed commit per count, the design first sketched for ATCR's hold stats
 * (`IncrementPullCount`), installed around the real getBlob: after a counted
 * 2xx (a GET with a repository, answered with a URL or the bytes from byte 0), read the stats
 * record, add one and write it back as one signed commit, serialised through the single writer
 * with the read inside the writer's turn, so that it loses nothing, and awaited, so a counted
 * request costs its commit. The commit is the hold's own. The hold also counts the request its
 * own way; give it a HOLD_STATS_FLUSH_MS longer than the run, so the records are the per-count
 * commits' alone (the benchmark checks that both agree).
 */
const commitPerCount = (app: App, ctx: AppContext) => {
  app.use(`/xrpc/${ids.SyncGetBlob}`, async (c, next) => {
    await next()
    if (c.req.method !== 'GET' || c.res.status < 200 || c.res.status >= 300) {
      return
    }
    const query = new URL(c.req.url).searchParams
    const did = query.get('did')
    const repository = query.get('repo')
    const method = query.get('method')
    const range = c.req.header('range')
    if (!did || !repository || (method !== null && method !== 'GET')) return
    if (range !== undefined && !/^bytes=0-/.test(range)) return
    await bump(ctx, did, repository)
  })
}

const bump = async (ctx: AppContext, did: string, repository: string) => {
  const rkey = statsRecordKey(did, repository)
  await ctx.writer.putRecordsFrom(() => {
    const now = new Date().toISOString()
    const cur = ctx.reader.get(ids.HoldStats, rkey)?.value
    const rec: LexMap = cur
      ? { ...cur }
      : {
          $type: ids.HoldStats,
          did,
          ownerDid: did,
          repository,
          pullCount: 0,
          pushCount: 0,
          createdAt: now,
        }
    rec.pullCount = (rec.pullCount as number) + 1
    rec.lastPull = now
    rec.updatedAt = now
    return [{ collection: ids.HoldStats, rkey, record: rec }]
  })
}

const env = readEnv()
const hold = await HoldServer.create(
  envToCfg(env, 'bench'),
  envToSecrets(env),
  { extend: process.env.BENCH_COUNTER === 'seed' ? commitPerCount : undefined },
)
const commits = { count: 0, ops: 0, maxOps: 0 }
const commitWaiters: (() => void)[] = []
hold.ctx.writer.onCommit(({ ops }) => {
  commits.count++
  commits.ops += ops.length
  commits.maxOps = Math.max(commits.maxOps, ops.length)
  for (const wake of commitWaiters.splice(0)) wake()
})
// Answers at the hold's next commit (a stats flush, when only pulls arrive): a benchmark lines
// its measurement windows up with the flushes this way, without polling the hold.
hold.app.post('/_bench/next-commit', async (c) => {
  await new Promise<void>((resolve) => commitWaiters.push(resolve))
  return c.json({ ...commits })
})
hold.app.get('/_bench/bare', (c) => c.json({ ok: true, hold: 'bench' }))
const procStatus = (): Record<string, string> => {
  try {
    const text = readFileSync('/proc/self/status', 'utf8')
    return Object.fromEntries(
      text
        .split('\n')
        .filter((line) => /^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM):/.test(line))
        .map((line) => line.split(/:\s+/) as [string, string]),
    )
  } catch {
    return {}
  }
}
// The hold's event-loop delay, for telling its own stalls from the machine's.
const loopDelay = monitorEventLoopDelay({ resolution: 1 })
loopDelay.enable()
// And V8's collector's pauses by kind over the same time (a scavenge frees the young generation,
// a mark-compact the whole heap), to tell a stall that is the collector from one that is not.
type Pauses = { count: number; ms: number; max: number }
const kinds: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
}
let pauses: Record<string, Pauses> = {}
// Observed from the first call on (each entry costs a little; the other benchmarks never ask).
let collector: PerformanceObserver | undefined
const observeCollector = () => {
  collector = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const { kind: k } = (
        entry as PerformanceEntry & { detail: { kind: number } }
      ).detail
      const kind = kinds[k] ?? 'other'
      const p = (pauses[kind] ??= { count: 0, ms: 0, max: 0 })
      p.count++
      p.ms += entry.duration
      p.max = Math.max(p.max, entry.duration)
    }
  })
  collector.observe({ entryTypes: ['gc'] })
}
// And the hold's own time per call: from Node's HTTP server handing over a parsed request to
// the response's last byte handed to the kernel. What the client sees adds the time a request
// or an answer waits in the kernel and the time the hold's thread is not running at all (the
// machine's scheduling), which this cannot see.
const served = createHistogram()
const requestStarts = new WeakMap<object, bigint>()
let timingCalls = false
const timeCalls = () => {
  timingCalls = true
  subscribe('http.server.request.start', (message) => {
    const { response } = message as { response: object }
    requestStarts.set(response, process.hrtime.bigint())
  })
  subscribe('http.server.response.finish', (message) => {
    const { response } = message as { response: object }
    const start = requestStarts.get(response)
    if (start === undefined) return
    requestStarts.delete(response)
    served.record(Math.max(1, Number(process.hrtime.bigint() - start)))
  })
}
hold.app.post('/_bench/loop-delay', (c) => {
  if (!collector) observeCollector()
  if (!timingCalls) timeCalls()
  const ms = (ns: number) => +(ns / 1e6).toFixed(2)
  const out = {
    p50: ms(loopDelay.percentile(50)),
    p99: ms(loopDelay.percentile(99)),
    p999: ms(loopDelay.percentile(99.9)),
    max: ms(loopDelay.max),
    served: {
      count: served.count,
      p50: ms(served.percentile(50)),
      p99: ms(served.percentile(99)),
      p999: ms(served.percentile(99.9)),
      max: ms(served.count > 0 ? served.max : 0),
    },
    gc: Object.fromEntries(
      Object.entries(pauses).map(([kind, p]) => [
        kind,
        { count: p.count, ms: +p.ms.toFixed(1), max: +p.max.toFixed(1) },
      ]),
    ),
  }
  loopDelay.reset()
  served.reset()
  pauses = {}
  return c.json(out)
})
hold.app.get('/_bench/info', (c) =>
  c.json({
    ...commits,
    pulls: hold.ctx.stats.totals.pulls,
    // The process's CPU time so far (user + system), for CPU per request between two reads.
    cpuMs: (() => {
      const { user, system } = process.cpuUsage()
      return (user + system) / 1000
    })(),
    pendingPairs: hold.ctx.stats.pendingPairs,
    rssMb: process.memoryUsage().rss / 1024 / 1024,
    heapMb: process.memoryUsage().heapUsed / 1024 / 1024,
    externalMb: process.memoryUsage().external / 1024 / 1024,
    // Where the resident memory is: anonymous (heaps, SQLite caches), file-backed, shared.
    status: procStatus(),
    nodeCacheMb: hold.ctx.writer.nodes.usedBytes / 1024 / 1024,
    // Nodes kept, by MST layer (index = layer).
    nodeCacheLayers: hold.ctx.writer.nodes.perLayer,
  }),
)
// Waits until the write-ahead log is copied into the database in full (at most 30 s), as it is
// between two flushes at the default cadence; answers how long that took.
hold.app.post('/_bench/wal-settled', async (c) => {
  const started = performance.now()
  for (;;) {
    const wal = hold.ctx.db.walState()
    if (!wal || wal.copied >= wal.frames) break
    if (performance.now() - started > 30_000) {
      return c.json({ error: 'the log was not copied within 30 s' }, 503)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return c.json({ ms: performance.now() - started })
})
// Times one flush of whatever changed (the scale benchmark changes 200 counters first).
hold.app.post('/_bench/flush', async (c) =>
  c.json(await hold.ctx.stats.flush()),
)
// A CPU profile of a window the benchmark chooses (scripts/bench-profile.ts): the same V8
// profiler as `node --cpu-prof`, without the start-up and warm-up in it.
// The session is opened on first use: a hold that is not profiled runs without one.
let inspector: Session | undefined
const session = (): Session => {
  if (!inspector) {
    inspector = new Session()
    inspector.connect()
  }
  return inspector
}
/** Writes a profile to the file the benchmark names (query `file`), and says where. */
const saved = (profile: unknown, file: string | undefined) => {
  if (file) writeFileSync(file, JSON.stringify(profile))
  return { ok: true, file }
}
hold.app.post('/_bench/profile/start', async (c) => {
  await session().post('Profiler.enable')
  await session().post('Profiler.setSamplingInterval', {
    interval: Number(c.req.query('us') ?? 1000),
  })
  await session().post('Profiler.start')
  return c.json({ ok: true })
})
hold.app.post('/_bench/profile/stop', async (c) => {
  if (!inspector) return c.json({ error: 'not profiling' }, 400)
  const { profile } = await inspector.post('Profiler.stop')
  return c.json(saved(profile, c.req.query('file')))
})
// What survives the young generation (bench-profile --heap): V8's sampling heap profiler, keeping
// the samples of objects that lived through a scavenge (promoted, then freed by a mark-compact,
// or still live at the stop) and dropping those a scavenge freed.
hold.app.post('/_bench/heap/start', async (c) => {
  await session().post('HeapProfiler.enable')
  await session().post('HeapProfiler.startSampling', {
    samplingInterval: Number(c.req.query('bytes') ?? 4096),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  })
  return c.json({ ok: true })
})
hold.app.post('/_bench/heap/stop', async (c) => {
  if (!inspector) return c.json({ error: 'not profiling' }, 400)
  const { profile } = await inspector.post('HeapProfiler.stopSampling')
  return c.json(saved(profile, c.req.query('file')))
})
await hold.start()
process.stdout.write(`READY ${hold.port}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    hold.destroy().then(
      () => (process.exitCode = 0),
      () => (process.exitCode = 1),
    )
  })
}
