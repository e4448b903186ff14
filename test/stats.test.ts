import { randomBytes } from 'node:crypto'
import http from 'node:http'
import { Lexicons, type LexiconDoc } from '@atproto/lexicon'
import { verifyRepoCar } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CommitEvent } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import {
  atprotoKeyFromDidDoc,
  getBytes,
  ownerAuth,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STATS = 'io.atcr.hold.stats'

/** io.atcr.hold.stats as ATCR publishes it (../shared/reference/atcr-published-lexicons.md). */
const ATCR_STATS_LEXICON: LexiconDoc = {
  lexicon: 1,
  id: 'io.atcr.hold.stats',
  defs: {
    main: {
      type: 'record',
      key: 'any',
      record: {
        type: 'object',
        required: [
          'ownerDid',
          'repository',
          'pullCount',
          'pushCount',
          'updatedAt',
        ],
        properties: {
          ownerDid: { type: 'string', format: 'did' },
          repository: { type: 'string', maxLength: 256 },
          pullCount: { type: 'integer', minimum: 0 },
          pushCount: { type: 'integer', minimum: 0 },
          lastPull: { type: 'string', format: 'datetime' },
          lastPush: { type: 'string', format: 'datetime' },
          updatedAt: { type: 'string', format: 'datetime' },
        },
      },
    },
  },
}
const atcr = new Lexicons([ATCR_STATS_LEXICON])

type StatsView = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}
type StatsRecord = StatsView & {
  $type: string
  ownerDid: string
  createdAt: string
  updatedAt: string
}

/** A keep-alive agent that counts the TCP connections it opens. */
class CountingAgent extends http.Agent {
  opened = 0
  createConnection(
    ...args: Parameters<http.Agent['createConnection']>
  ): ReturnType<http.Agent['createConnection']> {
    this.opened++
    return super.createConnection(...args)
  }
}

type HttpResult = {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

const request = (
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
const pool = async (
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

const plcDid = (tag: string) => `did:plc:${tag.padEnd(24, 'a').slice(0, 24)}`

describe('stats: counting, records, getStats and listStats', () => {
  let h: TestHold
  const blobs: string[] = []
  let blobBytes: Buffer[] = []

  const getBlobUrl = (params: Record<string, string>) => {
    const url = new URL('/xrpc/com.atproto.sync.getBlob', h.url)
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
    return url
  }
  const getStats = async (did: string, repo: string) => {
    const res = await xrpc<StatsView>(h.url, 'io.atcr.hold.getStats', {
      did,
      repo,
    })
    expect(res.status).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput('io.atcr.hold.getStats', res.body)
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
      'com.atproto.repo.getRecord',
      { repo: h.did, collection: STATS, rkey: statsRecordKey(did, repo) },
    )
  const listAllRecords = async () => {
    const out: { uri: string; cid: string; value: StatsRecord }[] = []
    let cursor: string | undefined
    do {
      const res = await xrpc<{
        records: { uri: string; cid: string; value: StatsRecord }[]
        cursor?: string
      }>(h.url, 'com.atproto.repo.listRecords', {
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
      'com.atproto.sync.getLatestCommit',
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
    blobBytes = [randomBytes(4096), randomBytes(300), randomBytes(20_000)]
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

  it('counts N concurrent pulls over many connections exactly, in getStats at once and in the records after one flush', async () => {
    const N = 600
    const dids = [plcDid('alice'), plcDid('bob'), 'did:web:example.com']
    const repos = ['myapp', 'tools/builder', 'lib-x', 'a.b/c__d']
    const pairs = dids.flatMap((did) => repos.map((repo) => ({ did, repo })))
    const expected = new Map<string, number>()
    const agent = new CountingAgent({ keepAlive: true, maxSockets: 64 })
    const pullsBefore = h.hold.ctx.stats.totals.pulls
    let seed = 0x9e3779b9
    const random = () => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
    const tasks = Array.from({ length: N }, (_, i) => {
      // Uneven spread over the pairs (seeded), so a swapped counter would show.
      const pair = pairs[Math.floor(random() ** 2 * pairs.length)]
      const key = `${pair.did} ${pair.repo}`
      expected.set(key, (expected.get(key) ?? 0) + 1)
      const params: Record<string, string> = {
        did: pair.did,
        cid: blobs[i % blobs.length],
        repo: pair.repo,
      }
      if (i % 3 === 0) params.method = 'GET'
      return async () => {
        const res = await request(getBlobUrl(params), { agent })
        expect(res.status).toBe(200)
        if (!params.method) {
          expect(res.body.length).toBe(blobBytes[i % blobs.length].length)
        }
      }
    })
    await pool(tasks, 48)
    agent.destroy()
    expect(agent.opened).toBeGreaterThanOrEqual(32)
    expect(h.hold.ctx.stats.totals.pulls - pullsBefore).toBe(N)

    // Visible at once, before any flush, and no record written yet.
    const commitsBefore = commits.length
    let sum = 0
    for (const { did, repo } of pairs) {
      const view = await getStats(did, repo)
      const want = expected.get(`${did} ${repo}`) ?? 0
      expect(view, `${did} ${repo}`).toMatchObject({
        did,
        repository: repo,
        pullCount: want,
        pushCount: 0,
      })
      if (want > 0) expect(view.lastPull).toBeDefined()
      expect(view.lastPush).toBeUndefined()
      sum += view.pullCount
      const rec = await getRecord(did, repo)
      expect(rec.status).toBe(404)
      expect(rec.body.error).toBe('RecordNotFound')
    }
    expect(sum).toBe(N)
    expect(commits.length).toBe(commitsBefore)

    const counted = pairs.filter((p) => expected.get(`${p.did} ${p.repo}`))
    expect(counted.length).toBe(pairs.length)
    const flushed = await h.hold.ctx.stats.flush()
    expect(flushed).toMatchObject({ records: counted.length, commits: 1 })
    expect(commits.length).toBe(commitsBefore + 1)

    let recordSum = 0
    for (const { did, repo } of counted) {
      const view = await getStats(did, repo)
      const rec = await getRecord(did, repo)
      expect(rec.status).toBe(200)
      expect(rec.body.uri).toBe(
        `at://${h.did}/${STATS}/${statsRecordKey(did, repo)}`,
      )
      const value = rec.body.value
      expect(value).toMatchObject({
        $type: STATS,
        did,
        ownerDid: did,
        repository: repo,
        pullCount: expected.get(`${did} ${repo}`),
        pushCount: 0,
        lastPull: view.lastPull,
      })
      expect(value.lastPush).toBeUndefined()
      expect(Date.parse(value.createdAt)).toBeLessThanOrEqual(
        Date.parse(value.updatedAt),
      )
      expect(view.pullCount).toBe(value.pullCount)
      assertValidBoth(value)
      recordSum += value.pullCount
    }
    expect(recordSum).toBe(N)

    const listed = (await listAllRecords()).filter((r) =>
      dids.includes(r.value.ownerDid),
    )
    expect(listed.length).toBe(counted.length)
    expect(listed.reduce((n, r) => n + r.value.pullCount, 0)).toBe(N)
    for (const r of listed) assertValidBoth(r.value)
  })

  it('validates against ATCR’s published schema only what that schema allows (the check can fail)', async () => {
    const [rec] = await listAllRecords()
    expect(rec).toBeDefined()
    const { ownerDid: _drop, ...noOwner } = rec.value
    void _drop
    expect(() => atcr.assertValidRecord(STATS, noOwner)).toThrow()
    expect(() =>
      atcr.assertValidRecord(STATS, { ...rec.value, pullCount: -1 }),
    ).toThrow()
    expect(() =>
      atcr.assertValidRecord(STATS, { ...rec.value, ownerDid: 'alice' }),
    ).toThrow()
    expect(() =>
      atcr.assertValidRecord(STATS, { ...rec.value, updatedAt: 'yesterday' }),
    ).toThrow()
    expect(() => atcr.assertValidRecord(STATS, rec.value)).not.toThrow()
  })

  it('counts nothing for HEAD, unknown blobs, invalid repos, resumed ranges, 4xx answers and signed-URL fetches; counts Range bytes=0-', async () => {
    const did = plcDid('quiet')
    const repo = 'quiet/app'
    const cid = blobs[2]
    const size = blobBytes[2].length
    const unknown = `sha256:${'0'.repeat(64)}`
    const noCount: [string, number, Promise<HttpResult>][] = [
      [
        'HTTP HEAD on getBlob',
        200,
        request(getBlobUrl({ did, cid, repo }), { method: 'HEAD' }),
      ],
      [
        'HTTP HEAD with method=GET',
        200,
        request(getBlobUrl({ did, cid, repo, method: 'GET' }), {
          method: 'HEAD',
        }),
      ],
      [
        'method=HEAD',
        200,
        request(getBlobUrl({ did, cid, repo, method: 'HEAD' })),
      ],
      ['unknown blob', 404, request(getBlobUrl({ did, cid: unknown, repo }))],
      [
        'unknown blob, method=GET',
        404,
        request(getBlobUrl({ did, cid: unknown, repo, method: 'GET' })),
      ],
      [
        'resumed range',
        206,
        request(getBlobUrl({ did, cid, repo }), {
          headers: { range: 'bytes=100-' },
        }),
      ],
      [
        'suffix range',
        206,
        request(getBlobUrl({ did, cid, repo }), {
          headers: { range: 'bytes=-10' },
        }),
      ],
      [
        'unsatisfiable range',
        416,
        request(getBlobUrl({ did, cid, repo }), {
          headers: { range: `bytes=${size}-` },
        }),
      ],
      [
        'bad method',
        400,
        request(getBlobUrl({ did, cid, repo, method: 'POST' })),
      ],
      ['bad cid', 400, request(getBlobUrl({ did, cid: 'sha256:zz', repo }))],
      [
        'method=PUT (the push counts on upload)',
        200,
        request(getBlobUrl({ did, cid, repo, method: 'PUT' }), {
          headers: await ownerAuth(h.url),
        }),
      ],
    ]
    for (const bad of ['Quiet', 'quiet//app', '-x', 'a___b', 'x'.repeat(257)]) {
      noCount.push([
        `invalid repo ${bad.slice(0, 20)}`,
        400,
        request(getBlobUrl({ did, cid, repo: bad })),
      ])
      noCount.push([
        `invalid repo ${bad.slice(0, 20)}, method=GET`,
        400,
        request(getBlobUrl({ did, cid, repo: bad, method: 'GET' })),
      ])
    }
    for (const [name, status, pending] of noCount) {
      const res = await pending
      expect(res.status, name).toBe(status)
      if (status >= 400) {
        expect(JSON.parse(res.body.toString()).error, name).toBeTypeOf('string')
      }
    }
    expect(await getStats(did, repo)).toEqual({
      did,
      repository: repo,
      pullCount: 0,
      pushCount: 0,
    })
    const list = await xrpc<{ stats: StatsView[] }>(
      h.url,
      'io.atcr.hold.listStats',
      {
        did,
      },
    )
    expect(list.body.stats).toEqual([])
    h.hold.ctx.stats.persist()
    expect(
      h.hold.ctx.db.db
        .prepare('SELECT count(*) AS n FROM stats_counter WHERE did = ?')
        .get(did),
    ).toEqual({ n: 0 })

    // A Range from byte 0 is a download, not a resume: it counts.
    const fromZero = await request(getBlobUrl({ did, cid, repo }), {
      headers: { range: 'bytes=0-' },
    })
    expect(fromZero.status).toBe(206)
    expect((await getStats(did, repo)).pullCount).toBe(1)
    const firstTen = await request(getBlobUrl({ did, cid, repo }), {
      headers: { range: 'bytes=0-9' },
    })
    expect(firstTen.status).toBe(206)
    expect((await getStats(did, repo)).pullCount).toBe(2)

    // Issuing a GET URL counts once; fetching it, however often, counts nothing more.
    const signed = await xrpc<{ url: string }>(
      h.url,
      'com.atproto.sync.getBlob',
      {
        did,
        cid,
        repo,
        method: 'GET',
      },
    )
    expect(signed.status).toBe(200)
    expect((await getStats(did, repo)).pullCount).toBe(3)
    for (let i = 0; i < 4; i++) {
      const got = await request(signed.body.url)
      expect(got.status).toBe(200)
      expect(got.body.length).toBe(size)
    }
    expect((await request(signed.body.url, { method: 'HEAD' })).status).toBe(
      200,
    )
    const view = await getStats(did, repo)
    expect(view.pullCount).toBe(3)
    expect(view.pushCount).toBe(0)
  })

  it('counts one push for an upload through a PUT URL issued with repo, and none for a failed or repo-less upload', async () => {
    const did = plcDid('pusher')
    const repo = 'pushed/image'
    const bytes = randomBytes(8192)
    const pushed = await pushBlob(h.url, bytes, { did, repo })
    expect(pushed.status).toBe(201)
    let view = await getStats(did, repo)
    expect(view).toMatchObject({ pullCount: 0, pushCount: 1 })
    expect(Date.parse(view.lastPush!)).toBeGreaterThan(Date.now() - 60_000)
    expect(view.lastPull).toBeUndefined()

    // Digest mismatch: 400 and no count.
    const other = randomBytes(8192)
    const signed = await xrpc<{ url: string }>(
      h.url,
      'com.atproto.sync.getBlob',
      {
        did,
        cid: `sha256:${'1'.repeat(64)}`,
        repo,
        method: 'PUT',
      },
      { headers: await ownerAuth(h.url) },
    )
    expect(signed.status).toBe(200)
    const bad = await fetch(signed.body.url, { method: 'PUT', body: other })
    expect(bad.status).toBe(400)
    await bad.arrayBuffer()
    // No repo: stored, not counted.
    const anon = await pushBlob(h.url, randomBytes(1000), { did })
    expect(anon.status).toBe(201)
    // Empty repo is no repo.
    const empty = await pushBlob(h.url, randomBytes(1000), { did, repo: '' })
    expect(empty.status).toBe(201)
    view = await getStats(did, repo)
    expect(view.pushCount).toBe(1)
    const list = await xrpc<{ stats: StatsView[] }>(
      h.url,
      'io.atcr.hold.listStats',
      {
        did,
      },
    )
    expect(list.body.stats.map((s) => s.repository)).toEqual([repo])

    await h.hold.ctx.stats.flush()
    const rec = await getRecord(did, repo)
    expect(rec.status).toBe(200)
    expect(rec.body.value).toMatchObject({
      pullCount: 0,
      pushCount: 1,
      lastPush: view.lastPush,
    })
    expect(rec.body.value.lastPull).toBeUndefined()
    assertValidBoth(rec.body.value)
  })

  it('answers zeros for an unknown pair and writes nothing', async () => {
    await h.hold.ctx.stats.flush()
    const rev = await latestRev()
    const commitsBefore = commits.length
    const did = plcDid('nobody')
    const view = await getStats(did, 'never/pulled')
    expect(view).toEqual({
      did,
      repository: 'never/pulled',
      pullCount: 0,
      pushCount: 0,
    })
    const list = await xrpc<{ stats: StatsView[]; cursor?: string }>(
      h.url,
      'io.atcr.hold.listStats',
      { did },
    )
    expect(list.status).toBe(200)
    expect(list.body).toEqual({ countSource: 'blob', stats: [] })
    h.hold.ctx.lexicons.assertValidXrpcOutput(
      'io.atcr.hold.listStats',
      list.body,
    )
    h.hold.ctx.stats.persist()
    expect(counterRow(did, 'never/pulled')).toBeUndefined()
    expect(await h.hold.ctx.stats.flush()).toMatchObject({
      records: 0,
      commits: 0,
    })
    expect(await latestRev()).toBe(rev)
    expect(commits.length).toBe(commitsBefore)
    expect((await getRecord(did, 'never/pulled')).status).toBe(404)
  })

  it('refuses bad getStats and listStats parameters with 400', async () => {
    const did = plcDid('alice')
    for (const params of [
      { did },
      { did, repo: 'MyApp' },
      { did, repo: 'a//b' },
      { did: 'alice', repo: 'myapp' },
      { repo: 'myapp' },
    ]) {
      const res = await xrpc(h.url, 'io.atcr.hold.getStats', params)
      expect(res.status, JSON.stringify(params)).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
    }
    for (const params of [
      { did, limit: 0 },
      { did, limit: 101 },
      { did, limit: -1 },
      { did, limit: 'ten' },
      { did, cursor: '!!!' },
      { did, cursor: Buffer.from('Bad Name').toString('base64url') },
      { did: 'nope' },
    ]) {
      const res = await xrpc(h.url, 'io.atcr.hold.listStats', params)
      expect(res.status, JSON.stringify(params)).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
    }
  })

  it('pages listStats through 7 repositories with limit=3, each once in name order, while counts change', async () => {
    const did = plcDid('lister')
    const names = [
      'alpha',
      'bravo',
      'charlie',
      'delta',
      'echo',
      'foxtrot',
      'golf',
    ]
    const pull = async (repo: string, times = 1) => {
      for (let i = 0; i < times; i++) {
        const res = await request(
          getBlobUrl({ did, cid: blobs[1], repo, method: 'GET' }),
        )
        expect(res.status).toBe(200)
      }
    }
    // Counted out of order; some only in the table, some still in memory.
    for (const [i, name] of ['golf', 'charlie', 'alpha', 'foxtrot'].entries()) {
      await pull(name, i + 1)
    }
    h.hold.ctx.stats.persist()
    for (const name of ['echo', 'bravo', 'delta']) await pull(name, 2)

    const seen: StatsView[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const res = await xrpc<{ stats: StatsView[]; cursor?: string }>(
        h.url,
        'io.atcr.hold.listStats',
        { did, limit: 3, cursor },
      )
      expect(res.status).toBe(200)
      h.hold.ctx.lexicons.assertValidXrpcOutput(
        'io.atcr.hold.listStats',
        res.body,
      )
      expect(res.body.stats.length).toBeLessThanOrEqual(3)
      seen.push(...res.body.stats)
      cursor = res.body.cursor
      pages++
      // Counts change between pages: on a page already seen, on pages still to come, and a flush.
      if (pages === 1) {
        await pull('alpha', 5)
        await pull('echo', 10)
      }
      if (pages === 2) {
        await h.hold.ctx.stats.flush()
        await pull('golf', 3)
      }
    } while (cursor && pages < 10)
    expect(pages).toBe(3)
    expect(seen.map((s) => s.repository)).toEqual(names)
    const counts = Object.fromEntries(
      seen.map((s) => [s.repository, s.pullCount]),
    )
    expect(counts).toEqual({
      alpha: 3, // read before the 5 more
      bravo: 2,
      charlie: 2,
      delta: 2,
      echo: 12, // read after the 10 more
      foxtrot: 4,
      golf: 4, // read after the 3 more
    })
    for (const s of seen) expect(s.did).toBe(did)

    // Without a limit, one page with everything and no cursor.
    const all = await xrpc<{ stats: StatsView[]; cursor?: string }>(
      h.url,
      'io.atcr.hold.listStats',
      { did },
    )
    expect(all.body.cursor).toBeUndefined()
    expect(all.body.stats.map((s) => [s.repository, s.pullCount])).toEqual([
      ['alpha', 8],
      ['bravo', 2],
      ['charlie', 2],
      ['delta', 2],
      ['echo', 12],
      ['foxtrot', 4],
      ['golf', 4],
    ])
  })

  it('flushes more than 200 changed counters in ceil(n/200) commits of at most 200 operations, then commits nothing', async () => {
    await h.hold.ctx.stats.flush()
    expect(h.hold.ctx.stats.dirtyCounters()).toBe(0)
    const did = plcDid('bulk')
    const n = 450
    const agent = new CountingAgent({ keepAlive: true, maxSockets: 32 })
    await pool(
      Array.from({ length: n }, (_, i) => async () => {
        const res = await request(
          getBlobUrl({
            did,
            cid: blobs[1],
            repo: `bulk/repo-${String(i).padStart(4, '0')}`,
            method: 'GET',
          }),
          { agent },
        )
        expect(res.status).toBe(200)
      }),
      32,
    )
    agent.destroy()
    const revBefore = await latestRev()
    const start = commits.length
    const result = await h.hold.ctx.stats.flush()
    const made = commits.slice(start)
    expect(result).toMatchObject({ records: n, commits: Math.ceil(n / 200) })
    expect(made.length).toBe(Math.ceil(n / 200))
    expect(made.map((c) => c.ops.length)).toEqual([200, 200, 50])
    for (const c of made) {
      expect(c.ops.every((op) => op.collection === STATS)).toBe(true)
    }
    // One commit per batch, each on top of the previous.
    const revs = made.map((c) => c.commit.rev)
    expect([...revs].sort()).toEqual(revs)
    expect(revs[0] > revBefore).toBe(true)
    expect(await latestRev()).toBe(revs[revs.length - 1])
    expect(h.hold.ctx.stats.dirtyCounters()).toBe(0)

    const again = await h.hold.ctx.stats.flush()
    expect(again).toMatchObject({ records: 0, commits: 0 })
    expect(commits.length).toBe(start + made.length)
    expect(await latestRev()).toBe(revs[revs.length - 1])

    // Each of the n records is there with its one pull.
    const rec = await getRecord(did, 'bulk/repo-0449')
    expect(rec.body.value).toMatchObject({
      pullCount: 1,
      repository: 'bulk/repo-0449',
    })
  })

  it('serves a repo CAR that still verifies after the flushes and holds every stats record', async () => {
    await h.hold.ctx.stats.flush()
    const doc = (await (
      await fetch(`${h.url}/.well-known/did.json`)
    ).json()) as Parameters<typeof atprotoKeyFromDidDoc>[0]
    const car = await getBytes(h.url, 'com.atproto.sync.getRepo', {
      did: h.did,
    })
    expect(car.status).toBe(200)
    const verified = await verifyRepoCar(
      car.bytes,
      h.did,
      atprotoKeyFromDidDoc(doc),
    )
    const inCar = new Map(
      verified.creates
        .filter((c) => c.collection === STATS)
        .map((c) => [c.rkey, c.cid.toString()]),
    )
    const listed = await listAllRecords()
    expect(listed.length).toBeGreaterThan(450)
    expect(inCar.size).toBe(listed.length)
    for (const r of listed) {
      expect(inCar.get(r.uri.split('/').pop()!)).toBe(r.cid)
    }
  })
})
