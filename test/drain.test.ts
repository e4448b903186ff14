import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import {
  freePort,
  pushBlob,
  removeDir,
  spawnHold,
  tempDir,
  TEST_OWNER,
  waitFor,
  xrpc,
  type SpawnedHold,
} from './_util.ts'

// Records are written only by the drain (and the flush at start): the flush interval is an hour.
const ENV = { HOLD_STATS_FLUSH_MS: '3600000', LOG_LEVEL: 'info' }
const WORKERS = 24
const SIGTERM_AFTER = 400 // responses received
const PAIRS = [
  { did: TEST_OWNER, repo: 'app' },
  { did: TEST_OWNER, repo: 'tools/builder' },
  { did: 'did:plc:drainother00000000000000', repo: 'app' },
  { did: 'did:web:example.com', repo: 'lib.x/y-z' },
]
const key = (did: string, repo: string) => `${did} ${repo}`

/** getBlob calls per pair whose counted answer the server wrote, from its request log lines. */
const acceptedFromLog = (output: string): Map<string, number> => {
  const accepted = new Map<string, number>()
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue
    const entry = JSON.parse(line) as {
      msg: string
      nsid?: string
      status?: number
      query?: string
    }
    if (
      entry.msg !== 'request' ||
      entry.nsid !== ids.SyncGetBlob ||
      entry.status !== 200
    ) {
      continue
    }
    const q = new URLSearchParams(entry.query)
    if (!q.get('repo') || q.get('method') === 'PUT') continue
    const k = key(q.get('did')!, q.get('repo')!)
    accepted.set(k, (accepted.get(k) ?? 0) + 1)
  }
  return accepted
}

describe('graceful drain on SIGTERM (child process)', () => {
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

  it('exits 0 promptly under load, and every count it accepted is in getStats and the records after a restart', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const first = await spawnHold({ dataDir, port, env: ENV })
    running.push(first)
    const { digest } = await pushBlob(first.url, randomBytes(4096), {
      did: TEST_OWNER,
    })

    const received = new Map<string, number>()
    let total = 0
    let failed = 0
    let active = 0
    const unexpected: string[] = []
    const worker = async (w: number) => {
      active++
      for (let i = 0; ; i++) {
        const pair = PAIRS[(w + i) % PAIRS.length]
        try {
          const res = await xrpc(first.url, ids.SyncGetBlob, {
            did: pair.did,
            cid: digest,
            repo: pair.repo,
            // Both counted paths: a signed URL (JSON) and the bytes themselves.
            method: i % 2 ? 'GET' : undefined,
          })
          if (res.status !== 200) {
            unexpected.push(`${res.status} ${JSON.stringify(res.body)}`)
            break
          }
          const k = key(pair.did, pair.repo)
          received.set(k, (received.get(k) ?? 0) + 1)
          total++
        } catch {
          // Refused or cut by the stopping server: this request may or may not have counted.
          failed++
          break
        }
      }
      active--
    }
    const load = Promise.all(
      Array.from({ length: WORKERS }, (_, w) => worker(w)),
    )

    await waitFor(() => total >= SIGTERM_AFTER || unexpected.length > 0)
    expect(unexpected).toEqual([])
    expect(active).toBe(WORKERS) // the load is still running
    const atSigterm = total
    const stoppedAt = performance.now()
    first.proc.kill('SIGTERM')
    const exit = await first.exited
    const stopMs = performance.now() - stoppedAt
    await load
    expect(exit).toEqual({ code: 0, signal: null })
    // fly.toml gives 30 s; the drain needs the in-flight requests and one flush.
    expect(stopMs).toBeLessThan(5000)
    expect(unexpected).toEqual([])
    expect(failed).toBeGreaterThan(0) // every worker ran until the server went away
    // Requests the server was working on at the signal were answered, not cut.
    expect(total).toBeGreaterThan(atSigterm)
    expect(first.output()).not.toMatch(/"level":(50|60)/)

    const accepted = acceptedFromLog(first.output())
    const stopped = first
      .output()
      .match(/"records":(\d+),.*"msg":"hold stopped"/)
    expect(Number(stopped?.[1])).toBe(PAIRS.length)

    // The database as the drain left it: every counter's record is up to date.
    const db = new DatabaseSync(join(dataDir, 'hold.sqlite'), {
      readOnly: true,
    })
    const counters = db
      .prepare(
        `SELECT c.did, c.repository, c.pull_count, d.version IS NOT NULL AS behind
         FROM stats_counter c LEFT JOIN stats_dirty d USING (did, repository)`,
      )
      .all() as {
      did: string
      repository: string
      pull_count: number
      behind: number
    }[]
    db.close()
    expect(counters.length).toBe(PAIRS.length)
    for (const c of counters) expect(c.behind).toBe(0)

    const second = await spawnHold({ dataDir, port, env: ENV })
    running.push(second)
    let extra = 0
    for (const { did, repo } of PAIRS) {
      const k = key(did, repo)
      const stats = await xrpc<{ pullCount: number; pushCount: number }>(
        second.url,
        ids.HoldGetStats,
        { did, repo },
      )
      const record = await xrpc<{ value: { pullCount: number } }>(
        second.url,
        ids.RepoGetRecord,
        {
          repo: second.did,
          collection: ids.HoldStats,
          rkey: statsRecordKey(did, repo),
        },
      )
      expect(record.status).toBe(200)
      const got = received.get(k) ?? 0
      expect(got, k).toBeGreaterThan(0)
      // records == getStats == what the server answered 200 to >= what the client received
      expect(record.body.value.pullCount, k).toBe(stats.body.pullCount)
      expect(stats.body.pullCount, k).toBe(accepted.get(k))
      expect(stats.body.pullCount, k).toBeGreaterThanOrEqual(got)
      expect(
        counters.find((c) => c.did === did && c.repository === repo)
          ?.pull_count,
      ).toBe(stats.body.pullCount)
      extra += stats.body.pullCount - got
    }
    // A count the client did not see belongs to a request that failed at the stop.
    expect(extra).toBeLessThanOrEqual(failed)

    second.proc.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })
  })
})
