import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { CLIENT_KEY_FILE } from '../src/stats/hll.ts'
import { DAY_MS, dayOf, dayString } from '../src/stats/days.ts'
import { plcDid } from './_stats.ts'
import {
  pushBlob,
  removeDir,
  startHold,
  tempDir,
  xrpc,
  type TestHold,
} from './_util.ts'

type Day = {
  day: string
  pulls: number
  pushes: number
  uniqueClients?: number
}
type History = {
  did: string
  repository: string
  since: string
  until: string
  days: Day[]
}
type Trending = {
  days: number
  cursor?: string
  repositories: {
    did: string
    repository: string
    pulls: number
    pullCount: number
    pushCount: number
  }[]
}

const ALICE = plcDid('historyalice')
const BOB = plcDid('historybob')
const today = () => dayString(dayOf(Date.now()))
const daysAgo = (n: number) => dayString(dayOf(Date.now()) - n)

describe('getStatsHistory and listTrending', () => {
  let h: TestHold
  let digest: string

  const pull = (did: string, repo: string, address: string) =>
    xrpc(
      h.url,
      ids.SyncGetBlob,
      { did, cid: digest, repo, method: 'GET' },
      { headers: { 'x-forwarded-for': address } },
    )
  const history = async (params: Record<string, string>) => {
    const res = await xrpc<History>(h.url, ids.HoldGetStatsHistory, params)
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldGetStatsHistory, res.body)
    return res.body
  }
  const trending = async (params: Record<string, string | number> = {}) => {
    const res = await xrpc<Trending>(h.url, ids.HoldListTrending, params)
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldListTrending, res.body)
    return res.body
  }

  beforeAll(async () => {
    // A fixed client key: which of the test's addresses share a sketch register (an estimate
    // one short) is then the same in every run, and none of these do.
    const dataDir = await tempDir()
    writeFileSync(join(dataDir, CLIENT_KEY_FILE), Buffer.alloc(32, 7))
    h = await startHold({
      dataDir,
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_NEW_PAIRS_PER_HOUR: '0',
        HOLD_TRUSTED_PROXY_HEADER: 'x-forwarded-for',
      },
    })
    ;({ digest } = await pushBlob(h.url, randomBytes(1000)))
    // alice/app: 12 pulls from 4 addresses; bob/tool: 3 pulls from 1; alice/quiet: none.
    for (let i = 0; i < 12; i++) {
      expect((await pull(ALICE, 'app', `198.51.100.${i % 4}`)).status).toBe(200)
    }
    for (let i = 0; i < 3; i++) {
      expect((await pull(BOB, 'tool', '203.0.113.9')).status).toBe(200)
    }
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it("answers a pair's days with zeros for days without counts, today live, with unique clients", async () => {
    const body = await history({ did: ALICE, repo: 'app', since: daysAgo(2) })
    expect(body).toMatchObject({
      did: ALICE,
      repository: 'app',
      since: daysAgo(2),
      until: today(),
    })
    expect(body.days).toEqual([
      { day: daysAgo(2), pulls: 0, pushes: 0 },
      { day: daysAgo(1), pulls: 0, pushes: 0 },
      { day: today(), pulls: 12, pushes: 0, uniqueClients: 4 },
    ])
    // A pull just taken is in today's row at once.
    await pull(ALICE, 'app', '198.51.100.77')
    const again = await history({
      did: ALICE,
      repo: 'app',
      since: today(),
      until: today(),
    })
    expect(again.days).toEqual([
      { day: today(), pulls: 13, pushes: 0, uniqueClients: 5 },
    ])
  })

  it('answers 366 days a call at most, both ends included, and zeros for a pair never counted', async () => {
    const last = dayOf(Date.now())
    const body = await history({
      did: ALICE,
      repo: 'quiet',
      since: dayString(last - 365),
      until: dayString(last),
    })
    expect(body.days).toHaveLength(366)
    expect(body.days[0].day).toBe(dayString(last - 365))
    expect(body.days.at(-1)!.day).toBe(dayString(last))
    expect(body.days.every((d) => d.pulls === 0 && d.pushes === 0)).toBe(true)
    const one = await history({
      did: BOB,
      repo: 'tool',
      since: today(),
      until: today(),
    })
    expect(one.days).toEqual([
      { day: today(), pulls: 3, pushes: 0, uniqueClients: 1 },
    ])
  })

  it("keeps imported baselines out of the days: they add up to the hold's own counts", async () => {
    await h.hold.ctx.stats.setStats({
      did: BOB,
      repository: 'tool',
      pullCount: 1000,
    })
    const stats = await xrpc<{ pullCount: number }>(h.url, ids.HoldGetStats, {
      did: BOB,
      repo: 'tool',
    })
    expect(stats.body.pullCount).toBe(1000)
    const body = await history({ did: BOB, repo: 'tool', since: daysAgo(3) })
    expect(body.days.reduce((n, d) => n + d.pulls, 0)).toBe(3)
    const t = await trending({ days: 1 })
    expect(t.repositories.find((r) => r.did === BOB)).toEqual({
      did: BOB,
      repository: 'tool',
      pulls: 3,
      pullCount: 1000,
      pushCount: 0,
    })
  })

  it('ranks repositories by pulls in the window and pages by cursor', async () => {
    const first = await trending({ days: 7, limit: 1 })
    expect(first.days).toBe(7)
    expect(first.repositories).toEqual([
      expect.objectContaining({ did: ALICE, repository: 'app', pulls: 13 }),
    ])
    expect(first.cursor).toBeDefined()
    const second = await trending({ days: 7, limit: 1, cursor: first.cursor! })
    expect(second.repositories).toEqual([
      expect.objectContaining({ did: BOB, repository: 'tool', pulls: 3 }),
    ])
    const third = await trending({ days: 7, limit: 1, cursor: second.cursor! })
    expect(third.repositories).toEqual([])
    expect(third.cursor).toBeUndefined()
  })

  it('refuses bad parameters with 400 InvalidRequest, and counts nothing', async () => {
    const before = h.hold.ctx.stats.totals.pulls
    const cases: [string, Record<string, string>, RegExp][] = [
      [ids.HoldGetStatsHistory, { did: ALICE, repo: 'app' }, /since/],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: '2026-02-30' },
        /since must be a UTC date/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: '2026/11/30' },
        /since must be a UTC date/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: '30-11-2026' },
        /since must be a UTC date/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: '2026-11-30T00:00Z' },
        /since/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: today(), until: 'tomorrow!!' },
        /until must be a UTC date/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: today(), until: daysAgo(1) },
        /before since/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'app', since: daysAgo(366), until: today() },
        /367 days; at most 366/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: 'not-a-did', repo: 'app', since: today() },
        /did/,
      ],
      [
        ids.HoldGetStatsHistory,
        { did: ALICE, repo: 'UPPER/..', since: today() },
        /repo/,
      ],
      [ids.HoldListTrending, { days: '0' }, /days/],
      [ids.HoldListTrending, { days: '31' }, /days/],
      [ids.HoldListTrending, { days: 'seven' }, /days/],
      [ids.HoldListTrending, { limit: '101' }, /limit/],
      [ids.HoldListTrending, { cursor: '!!!' }, /cursor/],
      [
        ids.HoldListTrending,
        { cursor: Buffer.from('1 did:plc:x').toString('base64url') },
        /cursor/,
      ],
      [
        ids.HoldListTrending,
        { cursor: Buffer.from(`x ${ALICE} app`).toString('base64url') },
        /cursor/,
      ],
    ]
    for (const [nsid, params, message] of cases) {
      const res = await xrpc<{ error: string; message: string }>(
        h.url,
        nsid,
        params,
      )
      expect(res.status, `${nsid} ${JSON.stringify(params)}`).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
      expect(res.body.message).toMatch(message)
    }
    expect(h.hold.ctx.stats.totals.pulls).toBe(before)
  })

  it('stores no client address: only sketches of keyed hashes', () => {
    h.hold.ctx.stats.persist()
    for (const file of ['hold.sqlite', 'hold.sqlite-wal']) {
      const bytes = readFileSync(join(h.dataDir, file))
      for (const address of ['198.51.100.', '203.0.113.9']) {
        expect(bytes.includes(address), `${address} in ${file}`).toBe(false)
      }
    }
  })

  it('forgets the days of a reset pair', async () => {
    await h.hold.ctx.stats.reset(ALICE)
    const body = await history({ did: ALICE, repo: 'app', since: today() })
    expect(body.days).toEqual([{ day: today(), pulls: 0, pushes: 0 }])
    const t = await trending({ days: 30 })
    expect(t.repositories.map((r) => r.did)).toEqual([BOB])
  })
})

describe('with HOLD_STATS_HISTORY_DAYS=0', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_HISTORY_DAYS: '0' } })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('answers 404 HistoryNotKept, naming the variable', async () => {
    for (const [nsid, params] of [
      [
        ids.HoldGetStatsHistory,
        {
          did: ALICE,
          repo: 'app',
          since: dayString(dayOf(Date.now() - DAY_MS)),
        },
      ],
      [ids.HoldListTrending, {}],
    ] as const) {
      const res = await xrpc<{ error: string; message: string }>(
        h.url,
        nsid,
        params,
      )
      expect(res.status).toBe(404)
      expect(res.body.error).toBe('HistoryNotKept')
      expect(res.body.message).toContain('HOLD_STATS_HISTORY_DAYS')
    }
  })
})
