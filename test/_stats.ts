import { randomBytes } from 'node:crypto'
import http from 'node:http'
import { Lexicons } from '@atproto/lexicon'
import { afterAll, beforeAll, expect } from 'vitest'
import { ids } from '../src/ids.ts'
import type { CommitEvent } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { PUBLISHED_STATS } from './_appview.ts'
import { pushBlob, removeDir, startHold, xrpc, type TestHold } from './_util.ts'

export const STATS = ids.HoldStats

/** io.atcr.hold.stats as ATCR publishes it (../shared/reference/atcr-published-lexicons.md). */
export const atcr = new Lexicons([PUBLISHED_STATS])

export type StatsView = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}
export type StatsRecord = StatsView & {
  $type: string
  ownerDid: string
  createdAt: string
  updatedAt: string
}

/** A keep-alive agent that counts the TCP connections it opens. */
export class CountingAgent extends http.Agent {
  opened = 0
  createConnection(
    ...args: Parameters<http.Agent['createConnection']>
  ): ReturnType<http.Agent['createConnection']> {
    this.opened++
    return super.createConnection(...args)
  }
}

export type HttpResult = {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

export const request = (
  url: string | URL,
  opts: {
    method?: string
    headers?: Record<string, string>
    agent?: http.Agent
  } = {},
): Promise<HttpResult> =>
  new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: opts.agent,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end()
  })

/** Runs tasks with at most `concurrency` in flight. */
export const pool = async (
  tasks: (() => Promise<void>)[],
  concurrency: number,
): Promise<void> => {
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tasks.length) await tasks[next++]()
    }),
  )
}

export const plcDid = (tag: string) =>
  `did:plc:${tag.padEnd(24, 'a').slice(0, 24)}`

/**
 * The hold the stats tests count on (flushes only when a test asks) with three blobs pushed
 * without a repo, and the reads they check it with. Call inside a describe: it starts the
 * hold in beforeAll and stops it in afterAll.
 */
export const statsHold = () => {
  let h: TestHold
  const hold = () => h
  const blobs: string[] = []
  const blobBytes: Buffer[] = []

  const getBlobUrl = (params: Record<string, string>) => {
    const url = new URL(`/xrpc/${ids.SyncGetBlob}`, h.url)
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
    return url
  }
  const getStats = async (did: string, repo: string) => {
    const res = await xrpc<StatsView>(h.url, ids.HoldGetStats, {
      did,
      repo,
    })
    expect(res.status).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldGetStats, res.body)
    // HOLD_COUNT_SOURCE's default, named in every answer; the counts are the rest.
    const { countSource, ...view } = res.body as StatsView & {
      countSource: string
    }
    expect(countSource).toBe('blob')
    return view
  }
  const getRecord = (did: string, repo: string) =>
    xrpc<{ uri: string; cid: string; value: StatsRecord; error?: string }>(
      h.url,
      ids.RepoGetRecord,
      { repo: h.did, collection: STATS, rkey: statsRecordKey(did, repo) },
    )
  const listAllRecords = async () => {
    const out: { uri: string; cid: string; value: StatsRecord }[] = []
    let cursor: string | undefined
    do {
      const res = await xrpc<{
        records: { uri: string; cid: string; value: StatsRecord }[]
        cursor?: string
      }>(h.url, ids.RepoListRecords, {
        repo: h.did,
        collection: STATS,
        limit: 100,
        cursor,
      })
      expect(res.status).toBe(200)
      out.push(...res.body.records)
      cursor = res.body.cursor
    } while (cursor)
    return out
  }
  const latestRev = async () => {
    const res = await xrpc<{ rev: string; cid: string }>(
      h.url,
      ids.SyncGetLatestCommit,
      { did: h.did },
    )
    expect(res.status).toBe(200)
    return res.body.rev
  }
  const commits: CommitEvent[] = []
  const counterRow = (did: string, repo: string) =>
    h.hold.ctx.db.db
      .prepare('SELECT * FROM stats_counter WHERE did = ? AND repository = ?')
      .get(did, repo)
  /** Checks a stats record against the hold's lexicon and ATCR's published one. */
  const assertValidBoth = (value: unknown) => {
    h.hold.ctx.lexicons.assertValidRecord(STATS, value)
    atcr.assertValidRecord(STATS, value)
  }

  beforeAll(async () => {
    // Hundreds of anonymous new pairs below: the new-pair limit is test/new-pair-limit.test.ts's.
    h = await startHold({
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_NEW_PAIRS_PER_HOUR: '0',
      },
    })
    h.hold.ctx.writer.onCommit((evt) => commits.push(evt))
    blobBytes.push(randomBytes(4096), randomBytes(300), randomBytes(20_000))
    for (const bytes of blobBytes) {
      // Pushed without repo: counts nothing.
      const { digest, status } = await pushBlob(h.url, bytes)
      expect(status).toBe(201)
      blobs.push(digest)
    }
    // The flush a start runs has nothing to write.
    await h.hold.ctx.stats.flush()
  })
  afterAll(async () => {
    const dir = h.dataDir
    await h.stop()
    await removeDir(dir)
  })

  return {
    hold,
    blobs,
    blobBytes,
    commits,
    getBlobUrl,
    getStats,
    getRecord,
    listAllRecords,
    latestRev,
    counterRow,
    assertValidBoth,
  }
}

/** A pair's own counts beside the sum of its days: day rows, pruned days and its open day. */
export type DaySums = {
  did: string
  repository: string
  pull_count: number
  push_count: number
  day_pulls: number
  day_pushes: number
}

/** Every pair's DaySums, read with `db` (the hold's database, open or read-only). */
export const daySums = (db: {
  prepare(sql: string): { all(): unknown[] }
}): DaySums[] =>
  db
    .prepare(
      `SELECT c.did, c.repository, c.pull_count, c.push_count,
         coalesce((SELECT sum(pulls) FROM stats_day d WHERE d.did = c.did AND d.repository = c.repository), 0)
           + coalesce((SELECT pulls FROM stats_day_pruned p WHERE p.did = c.did AND p.repository = c.repository), 0)
           + c.open_pulls AS day_pulls,
         coalesce((SELECT sum(pushes) FROM stats_day d WHERE d.did = c.did AND d.repository = c.repository), 0)
           + coalesce((SELECT pushes FROM stats_day_pruned p WHERE p.did = c.did AND p.repository = c.repository), 0)
           + c.open_pushes AS day_pushes
       FROM stats_counter c ORDER BY c.did, c.repository`,
    )
    .all() as DaySums[]
