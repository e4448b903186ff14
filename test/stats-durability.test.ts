import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { COUNT_JOURNAL_FILE, CountJournal } from '../src/stats/journal.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import {
  freePort,
  pushBlob,
  removeDir,
  sleep,
  spawnHold,
  tempDir,
  waitFor,
  xrpc,
  type SpawnedHold,
} from './_util.ts'
import { recordsIn, verifiedRepo } from './_repo.ts'

const STATS = ids.HoldStats
// Only the drain on stop (and the flush at start) write records.
const ENV = { HOLD_STATS_FLUSH_MS: '3600000', LOG_LEVEL: 'info' }

type StatsView = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}

const PAIRS = [
  { did: 'did:plc:durable1aaaaaaaaaaaaaaaa', repo: 'myapp', pulls: 7 },
  { did: 'did:plc:durable1aaaaaaaaaaaaaaaa', repo: 'tools/builder', pulls: 3 },
  { did: 'did:plc:durable2aaaaaaaaaaaaaaaa', repo: 'myapp', pulls: 11 },
  { did: 'did:web:example.com', repo: 'a.b/c-d', pulls: 1 },
]

/** Pushes one blob per pair (a counted push) and pulls it `pulls` times, some concurrently. */
const makeCounts = async (url: string) => {
  for (const { did, repo, pulls } of PAIRS) {
    const { digest, status } = await pushBlob(url, randomBytes(2048), {
      did,
      repo,
    })
    expect(status).toBe(201)
    await Promise.all(
      Array.from({ length: pulls }, async (_, i) => {
        const res = await xrpc(url, ids.SyncGetBlob, {
          did,
          cid: digest,
          repo,
          method: i % 2 ? 'GET' : undefined,
        })
        expect(res.status).toBe(200)
      }),
    )
  }
}

const allStats = async (url: string) => {
  const out: StatsView[] = []
  for (const { did, repo } of PAIRS) {
    const res = await xrpc<StatsView>(url, ids.HoldGetStats, {
      did,
      repo,
    })
    expect(res.status).toBe(200)
    out.push(res.body)
  }
  return out
}

const getRecord = (url: string, holdDid: string, did: string, repo: string) =>
  xrpc<{ value: StatsView & { ownerDid: string } }>(url, ids.RepoGetRecord, {
    repo: holdDid,
    collection: STATS,
    rkey: statsRecordKey(did, repo),
  })

/** The counter table and the record index of a stopped hold, read straight from its database. */
const readStopped = (dataDir: string) => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'), { readOnly: true })
  try {
    return {
      counters: db
        .prepare(
          `SELECT c.did, c.repository, c.pull_count, c.push_count, d.version IS NOT NULL AS behind
           FROM stats_counter c LEFT JOIN stats_dirty d USING (did, repository)
           ORDER BY c.did, c.repository`,
        )
        .all() as {
        did: string
        repository: string
        pull_count: number
        push_count: number
        /** 1 when the pair's record is behind its counter. */
        behind: number
      }[],
      records: (
        db
          .prepare('SELECT rkey FROM record WHERE collection = ?')
          .all(STATS) as { rkey: string }[]
      ).map((r) => r.rkey),
    }
  } finally {
    db.close()
  }
}

/** The counts in a stopped hold's journal lines that its counter table does not hold. */
const journaled = (dataDir: string) => {
  const db = new DatabaseSync(join(dataDir, 'hold.sqlite'), { readOnly: true })
  const { folded } = db.prepare('SELECT folded FROM stats_journal').get() as {
    folded: number
  }
  db.close()
  const journal = new CountJournal(join(dataDir, COUNT_JOURNAL_FILE))
  try {
    return journal
      .open(folded)
      .lines.flatMap((line) => ('counts' in line ? line.counts : []))
  } finally {
    journal.close()
  }
}

const verifyCar = async (hold: SpawnedHold) =>
  recordsIn(await verifiedRepo(hold.url, hold.did), STATS)

describe('stats durability across stops and crashes (child process)', () => {
  const running: SpawnedHold[] = []
  const dirs: string[] = []
  const start = async (dataDir: string, port: number) => {
    const hold = await spawnHold({ dataDir, port, env: ENV })
    running.push(hold)
    return hold
  }
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

  it('keeps every count and writes the records on SIGTERM: restart gives equal getStats and records', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const first = await start(dataDir, port)
    await makeCounts(first.url)
    const before = await allStats(first.url)
    expect(before.map((s) => [s.pullCount, s.pushCount])).toEqual(
      PAIRS.map((p) => [p.pulls, 1]),
    )
    // No record yet: the flush interval is an hour.
    for (const { did, repo } of PAIRS) {
      expect((await getRecord(first.url, first.did, did, repo)).status).toBe(
        404,
      )
    }

    first.proc.kill('SIGTERM')
    expect(await first.exited).toEqual({ code: 0, signal: null })
    expect(first.output()).toContain('hold stopped')

    // The drain wrote the table and the records before exit.
    const stopped = readStopped(dataDir)
    expect(
      stopped.counters.map((c) => [
        c.did,
        c.repository,
        c.pull_count,
        c.push_count,
      ]),
    ).toEqual(
      [...PAIRS]
        .sort((a, b) =>
          `${a.did}\u0000${a.repo}` < `${b.did}\u0000${b.repo}` ? -1 : 1,
        )
        .map((p) => [p.did, p.repo, p.pulls, 1]),
    )
    for (const c of stopped.counters) expect(c.behind).toBe(0)
    expect(stopped.records.sort()).toEqual(
      PAIRS.map((p) => statsRecordKey(p.did, p.repo)).sort(),
    )

    const second = await start(dataDir, port)
    expect(second.did).toBe(first.did)
    expect(await allStats(second.url)).toEqual(before)
    for (const [i, { did, repo }] of PAIRS.entries()) {
      const rec = await getRecord(second.url, second.did, did, repo)
      expect(rec.status).toBe(200)
      expect(rec.body.value).toMatchObject({
        did,
        ownerDid: did,
        repository: repo,
        pullCount: before[i].pullCount,
        pushCount: before[i].pushCount,
        lastPull: before[i].lastPull,
        lastPush: before[i].lastPush,
      })
    }
    expect((await verifyCar(second)).length).toBe(PAIRS.length)

    second.proc.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })
  })

  it('journals counts as often as HOLD_STATS_PERSIST_MS says', async () => {
    // Pulls one blob back to back for 2.5 s, stops the hold, and reads how many journal lines
    // its table took: about one a window with counts in it.
    const linesWith = async (env: Record<string, string>) => {
      const dataDir = await tempDir()
      dirs.push(dataDir)
      const hold = await spawnHold({
        dataDir,
        port: await freePort(),
        env: { ...ENV, ...env },
      })
      running.push(hold)
      const { did, repo } = PAIRS[0]
      const { digest } = await pushBlob(hold.url, randomBytes(64), {
        did,
        repo,
      })
      let pulls = 0
      for (const end = Date.now() + 2500; Date.now() < end; pulls++) {
        const res = await xrpc(hold.url, ids.SyncGetBlob, {
          did,
          cid: digest,
          repo,
          method: 'GET',
        })
        expect(res.status).toBe(200)
      }
      hold.proc.kill('SIGTERM')
      expect(await hold.exited).toEqual({ code: 0, signal: null })
      const db = new DatabaseSync(join(dataDir, 'hold.sqlite'), {
        readOnly: true,
      })
      try {
        const { folded } = db
          .prepare('SELECT folded FROM stats_journal')
          .get() as { folded: number }
        const { pull_count } = db
          .prepare('SELECT pull_count FROM stats_counter')
          .get() as { pull_count: number }
        expect(pull_count).toBe(pulls)
        return folded
      } finally {
        db.close()
      }
    }
    // 2.5 s of counts: about 100 windows of 25 ms, three of a second (and the stop's line).
    expect(await linesWith({})).toBeGreaterThan(20)
    expect(
      await linesWith({ HOLD_STATS_PERSIST_MS: '1000' }),
    ).toBeLessThanOrEqual(5)
  })

  it('keeps counts that reached the journal or the table through kill -9, and the records catch up on the next start', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const first = await start(dataDir, port)
    await makeCounts(first.url)
    const before = await allStats(first.url)
    // Counts reach the count journal every 25 ms, the table once a second.
    await sleep(250)

    first.proc.kill('SIGKILL')
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    expect(first.output()).not.toContain('hold stopped')

    // The table and the journal's lines past the table's hold every count, each once; no
    // record was written.
    const crashed = readStopped(dataDir)
    const held = new Map<string, number>()
    for (const c of crashed.counters) {
      held.set(`${c.did} ${c.repository}`, c.pull_count)
      expect(c.behind).toBe(1)
    }
    for (const d of journaled(dataDir)) {
      const key = `${d.did} ${d.repository}`
      held.set(key, (held.get(key) ?? 0) + d.pulls)
    }
    expect(
      PAIRS.map(({ did, repo }) => held.get(`${did} ${repo}`) ?? 0),
    ).toEqual(PAIRS.map((p) => p.pulls))
    expect(crashed.records).toEqual([])

    const second = await start(dataDir, port)
    expect(await allStats(second.url)).toEqual(before)
    for (const [i, { did, repo }] of PAIRS.entries()) {
      const rec = await waitFor(async () => {
        const res = await getRecord(second.url, second.did, did, repo)
        return res.status === 200 ? res : undefined
      })
      expect(rec?.body.value).toMatchObject({
        ownerDid: did,
        repository: repo,
        pullCount: before[i].pullCount,
        pushCount: 1,
        lastPull: before[i].lastPull,
        lastPush: before[i].lastPush,
      })
    }
    const inCar = await verifyCar(second)
    expect(inCar.map((c) => c.rkey).sort()).toEqual(
      PAIRS.map((p) => statsRecordKey(p.did, p.repo)).sort(),
    )

    // Counting goes on after the crash from where it was.
    const { did, repo } = PAIRS[0]
    const { digest } = await pushBlob(second.url, randomBytes(10), {
      did,
      repo,
    })
    const res = await xrpc(second.url, ids.SyncGetBlob, {
      did,
      cid: digest,
      repo,
    })
    expect(res.status).toBe(200)
    const after = await xrpc<StatsView>(second.url, ids.HoldGetStats, {
      did,
      repo,
    })
    expect(after.body).toMatchObject({
      pullCount: before[0].pullCount + 1,
      pushCount: 2,
    })
    second.proc.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })
  })
})
