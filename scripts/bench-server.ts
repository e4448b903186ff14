/**
 * A hold for benchmarks: the real server, plus two routes the benchmark reads (a bare Hono route,
 * the ceiling of this stack, and commit counters), and with BENCH_COUNTER=seed the seed
 * document's counting design in place of ours. Prints `READY <port>` when it listens.
 */
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { LexMap } from '@atproto/lex-data'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import type { AppContextFields } from '../src/context.ts'
import { ids } from '../src/lexicons.ts'
import { HoldServer } from '../src/server.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import type { Counter } from '../src/stats/service.ts'

/**
 * The seed's design (`IncrementPullCount`): read the record, add one, write it back as one
 * signed commit per count. Serialised through the single writer, with the read inside the
 * writer's turn, so that it loses nothing, and awaited, so a counted request costs its commit.
 */
class SeedDesignCounter implements Counter {
  private readonly f: Omit<AppContextFields, 'counter'>
  constructor(f: Omit<AppContextFields, 'counter'>) {
    this.f = f
  }
  countPull(did: string, repository: string) {
    return this.bump(did, repository, 'pull')
  }
  countPush(did: string, repository: string) {
    return this.bump(did, repository, 'push')
  }
  has(did: string, repository: string) {
    return (
      this.f.reader.get(ids.HoldStats, statsRecordKey(did, repository)) !== null
    )
  }
  private async bump(did: string, repository: string, kind: 'pull' | 'push') {
    const rkey = statsRecordKey(did, repository)
    await this.f.writer.putRecordsFrom(() => {
      const now = new Date().toISOString()
      const cur = this.f.reader.get(ids.HoldStats, rkey)?.value
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
      if (kind === 'pull') {
        rec.pullCount = (rec.pullCount as number) + 1
        rec.lastPull = now
      } else {
        rec.pushCount = (rec.pushCount as number) + 1
        rec.lastPush = now
      }
      rec.updatedAt = now
      return [{ collection: ids.HoldStats, rkey, record: rec }]
    })
  }
}

const env = readEnv()
const seed = process.env.BENCH_COUNTER === 'seed'
const seedLite = process.env.BENCH_COUNTER === 'seed-lite'
const hold = await HoldServer.create(
  envToCfg(env, 'bench'),
  envToSecrets(env),
  {
    counter: seed || seedLite ? (f) => new SeedDesignCounter(f) : undefined,
  },
)
// The seed's design is one commit per count as a PDS makes it, covering proofs included (the
// firehose event carries them); BENCH_COUNTER=seed-lite keeps the hold's lighter commit path.
if (seed || process.env.BENCH_COMMIT === 'library') {
  hold.ctx.writer.commitFormat = 'library'
}
const commits = { count: 0, ops: 0, maxOps: 0 }
hold.ctx.writer.onCommit(({ ops }) => {
  commits.count++
  commits.ops += ops.length
  commits.maxOps = Math.max(commits.maxOps, ops.length)
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
hold.app.post('/_bench/loop-delay', (c) => {
  const ms = (ns: number) => +(ns / 1e6).toFixed(2)
  const out = {
    p50: ms(loopDelay.percentile(50)),
    p99: ms(loopDelay.percentile(99)),
    p999: ms(loopDelay.percentile(99.9)),
    max: ms(loopDelay.max),
  }
  loopDelay.reset()
  return c.json(out)
})
hold.app.get('/_bench/info', (c) =>
  c.json({
    ...commits,
    pendingPairs: hold.ctx.stats.pendingPairs,
    rssMb: process.memoryUsage().rss / 1024 / 1024,
    heapMb: process.memoryUsage().heapUsed / 1024 / 1024,
    externalMb: process.memoryUsage().external / 1024 / 1024,
    // Where the resident memory is: anonymous (heaps, SQLite caches), file-backed, shared.
    status: procStatus(),
    nodeCacheMb: hold.ctx.writer.nodes.usedBytes / 1024 / 1024,
  }),
)
// Times one flush of whatever changed (the scale benchmark changes 200 counters first).
hold.app.post('/_bench/flush', async (c) =>
  c.json(await hold.ctx.stats.flush()),
)
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
