import { afterEach, describe, expect, it } from 'vitest'
import { sleep } from '../_util.ts'
import {
  getStats,
  pull,
  startCluster,
  storeBlob,
  waitForPulls,
  type TestCluster,
} from './_cluster.ts'

const DID = 'did:plc:clusterfailures000000000'

/**
 * Counted pulls on every frontend, round robin, a few at a time, until stopped; resolves to
 * how many the frontends answered 200 (each one counted) and how many they did not.
 */
const load = (
  cluster: TestCluster,
  targets: { repo: string; cid: string }[],
) => {
  let stop = false
  let ok = 0
  let failed = 0
  const worker = async (w: number) => {
    for (let i = w; !stop; i += 4) {
      const fe = cluster.frontends[i % cluster.frontends.length]
      if (fe.proc.exitCode !== null || fe.proc.signalCode !== null) continue
      const t = targets[i % targets.length]
      const status = await pull(fe.url, DID, t.repo, t.cid).catch(() => 0)
      if (status === 200) ok++
      else failed++
    }
  }
  const done = Promise.all([0, 1, 2, 3].map(worker))
  return {
    get ok() {
      return ok
    },
    stop: async () => {
      stop = true
      await done
      return { ok, failed }
    },
  }
}

/** The writer's pull count over `repos`, once it stops changing or reaches `want`. */
const writerTotal = async (
  cluster: TestCluster,
  repos: string[],
  want: number,
): Promise<number> => {
  let total = 0
  const until = Date.now() + 30_000
  while (Date.now() < until) {
    total = 0
    for (const repo of repos) {
      total += await waitForPulls(cluster.writer.url, DID, repo, -1, 0)
    }
    if (total === want) return total
    await sleep(200)
  }
  return total
}

const metric = async (url: string, name: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(name)) sum += Number(line.split(' ').pop())
  }
  return sum
}

describe('a cluster under failures', () => {
  let cluster: TestCluster | undefined
  afterEach(async () => {
    await cluster?.close()
    cluster = undefined
  })

  it('kill -9 the writer under load, restart it: every counted pull is applied exactly once', async () => {
    cluster = await startCluster({ frontends: 2 })
    const c = cluster
    const targets = await Promise.all(
      ['k1', 'k2', 'k3'].map(async (repo) => ({
        repo,
        cid: await storeBlob(c.frontends[0].url, DID, repo),
      })),
    )
    const running = load(c, targets)
    await sleep(1500)
    c.writer.proc.kill('SIGKILL')
    await c.writer.exited
    // Frontends go on serving and counting while the writer is gone.
    const before = running.ok
    await sleep(1500)
    expect(running.ok).toBeGreaterThan(before)
    await c.restartWriter()
    await sleep(1000)
    const { ok, failed } = await running.stop()
    expect(failed).toBe(0)
    expect(await writerTotal(c, ['k1', 'k2', 'k3'], ok)).toBe(ok)
  })

  it('Redis stopped for 10 s under load: pulls go on, counts buffer and spill, and all arrive once it is back', async () => {
    cluster = await startCluster({
      frontends: 2,
      // A small buffer, so the outage spills into the frontends' own tables.
      env: { HOLD_REDIS_BUFFER_PAIRS: '2' },
    })
    const c = cluster
    const repos = ['r1', 'r2', 'r3', 'r4', 'r5']
    const targets = await Promise.all(
      repos.map(async (repo) => ({
        repo,
        cid: await storeBlob(c.frontends[0].url, DID, repo),
      })),
    )
    const running = load(c, targets)
    await sleep(1000)
    await c.redis.stop()
    const before = running.ok
    await sleep(10_000)
    // Not one pull failed or waited on Redis: they kept being answered.
    expect(running.ok).toBeGreaterThan(before + 50)
    // getStats reads the writer's table through Redis: a clear 503 meanwhile, never a 500.
    const stats = await getStats(c.frontends[1].url, DID, 'r1')
    expect(stats.status).toBe(503)
    expect(stats).toMatchObject({ error: 'StatsUnavailable' })
    const spilled = await metric(c.frontends[0].url, 'hold_stats_spilled_total')
    expect(spilled).toBeGreaterThan(0)
    expect(c.frontends[0].output()).toContain(
      'spill into the local counter table',
    )
    await c.redis.start()
    await sleep(1500)
    const { ok, failed } = await running.stop()
    expect(failed).toBe(0)
    expect(await writerTotal(c, repos, ok)).toBe(ok)
  })

  it('a frontend killed with kill -9 loses only what it took in its last batch window', async () => {
    cluster = await startCluster({ frontends: 2 })
    const c = cluster
    const [a] = c.frontends
    const cid = await storeBlob(a.url, DID, 'fk')
    const K = 40
    for (let i = 0; i < K; i++)
      expect(await pull(a.url, DID, 'fk', cid)).toBe(200)
    // Well past the batch window: these K are in Redis, whatever happens to the frontend.
    await sleep(300)
    a.proc.kill('SIGKILL')
    await a.exited
    expect(await writerTotal(c, ['fk'], K)).toBe(K)
  })

  it('a frontend stopped while Redis is down keeps its counts in its data dir and sends them at its next start', async () => {
    cluster = await startCluster({ frontends: 1 })
    const c = cluster
    const cid = await storeBlob(c.frontends[0].url, DID, 'kept')
    for (let i = 0; i < 5; i++) {
      expect(await pull(c.frontends[0].url, DID, 'kept', cid)).toBe(200)
    }
    expect(await writerTotal(c, ['kept'], 5)).toBe(5)
    await c.redis.stop()
    for (let i = 0; i < 7; i++) {
      expect(await pull(c.frontends[0].url, DID, 'kept', cid)).toBe(200)
    }
    c.frontends[0].proc.kill('SIGTERM')
    expect((await c.frontends[0].exited).code).toBe(0)
    expect(c.frontends[0].output()).toContain('kept in the data dir')
    await c.redis.start()
    await c.restartFrontend(0)
    expect(await writerTotal(c, ['kept'], 12)).toBe(12)
  })
})
