import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { daySums, plcDid } from './_stats.ts'
import {
  freePort,
  pushBlob,
  removeDir,
  sleep,
  spawnHold,
  tempDir,
  xrpc,
  type SpawnedHold,
} from './_util.ts'

const ENV = {
  HOLD_STATS_FLUSH_MS: '3600000',
  HOLD_NEW_PAIRS_PER_HOUR: '0',
  HOLD_TRUSTED_PROXY_HEADER: 'x-forwarded-for',
  // Every request and every count is logged: none may name a client address.
  LOG_LEVEL: 'debug',
}
const PAIRS = Array.from({ length: 6 }, (_, i) => ({
  did: plcDid(`durhist${i % 3}`),
  repo: `repo-${i}`,
}))
const ADDRESS = (i: number) => `192.0.2.${i % 200}`

/** Each pair's own counts beside the sum of its days, from a stopped hold's database. */
const sumsOf = (dataDir: string) => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'), { readOnly: true })
  try {
    return daySums(db)
  } finally {
    db.close()
  }
}

describe('day rows across restarts and kill -9 (child process)', () => {
  const running: SpawnedHold[] = []
  const dirs: string[] = []
  afterEach(async () => {
    for (const hold of running.splice(0)) {
      if (hold.proc.exitCode === null && hold.proc.signalCode === null) {
        hold.proc.kill('SIGKILL')
        await hold.exited
      }
    }
  })
  afterAll(async () => {
    for (const dir of dirs) await removeDir(dir)
  })

  it('add up to the totals after random concurrent load, a kill -9 in the middle of it, and a restart', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const start = async () => {
      const hold = await spawnHold({ dataDir, port, env: ENV })
      running.push(hold)
      return hold
    }
    const first = await start()
    const digests: string[] = []
    for (const { did, repo } of PAIRS) {
      const { digest, status } = await pushBlob(first.url, randomBytes(512), {
        did,
        repo,
      })
      expect(status).toBe(201)
      digests.push(digest)
    }
    /** Random pulls of random pairs, `concurrency` at a time, until told to stop. */
    const load = (url: string, concurrency: number) => {
      let stop = false
      let sent = 0
      const done = Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (!stop) {
            const i = Math.floor(Math.random() * PAIRS.length)
            sent++
            try {
              await xrpc(
                url,
                ids.SyncGetBlob,
                {
                  did: PAIRS[i].did,
                  cid: digests[i],
                  repo: PAIRS[i].repo,
                  method: 'GET',
                },
                { headers: { 'x-forwarded-for': ADDRESS(sent) } },
              )
            } catch {
              // The hold was killed under this request.
            }
          }
        }),
      )
      return {
        stop: async () => {
          stop = true
          await done
        },
      }
    }

    const busy = load(first.url, 8)
    await sleep(1500)
    first.proc.kill('SIGKILL')
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    await busy.stop()
    const crashed = sumsOf(dataDir)
    expect(crashed.length).toBe(PAIRS.length)
    expect(crashed.reduce((n, r) => n + r.pull_count, 0)).toBeGreaterThan(0)
    for (const r of crashed) {
      expect(r.day_pulls).toBe(r.pull_count)
      expect(r.day_pushes).toBe(r.push_count)
    }

    const second = await start()
    const more = load(second.url, 8)
    await sleep(1000)
    await more.stop()
    second.proc.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })
    const stopped = sumsOf(dataDir)
    for (const r of stopped) {
      expect(r.day_pulls).toBe(r.pull_count)
      expect(r.day_pushes).toBe(r.push_count)
    }
    expect(stopped.reduce((n, r) => n + r.pull_count, 0)).toBeGreaterThan(
      crashed.reduce((n, r) => n + r.pull_count, 0),
    )

    // A third start answers the same days as the table holds.
    const third = await start()
    let served = 0
    for (const { did, repo } of PAIRS) {
      const res = await xrpc<{ days: { pulls: number }[] }>(
        third.url,
        ids.HoldGetStatsHistory,
        {
          did,
          repo,
          since: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10),
        },
      )
      expect(res.status).toBe(200)
      served += res.body.days.reduce((n, d) => n + d.pulls, 0)
    }
    expect(served).toBe(stopped.reduce((n, r) => n + r.day_pulls, 0))

    for (const hold of [first, second, third]) {
      expect(hold.output()).not.toMatch(/192\.0\.2\./)
    }
  })
})
