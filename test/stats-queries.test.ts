import { beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { plcDid, request, statsHold, type StatsView } from './_stats.ts'
import { xrpc, type TestHold } from './_util.ts'

describe('stats: getStats and listStats answers', () => {
  const s = statsHold()
  let h: TestHold
  beforeAll(() => {
    h = s.hold()
  })
  const {
    blobs,
    commits,
    getBlobUrl,
    getStats,
    getRecord,
    latestRev,
    counterRow,
  } = s

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
      ids.HoldListStats,
      { did },
    )
    expect(list.status).toBe(200)
    expect(list.body).toEqual({ countSource: 'blob', stats: [] })
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldListStats, list.body)
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
      const res = await xrpc(h.url, ids.HoldGetStats, params)
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
      const res = await xrpc(h.url, ids.HoldListStats, params)
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
        ids.HoldListStats,
        { did, limit: 3, cursor },
      )
      expect(res.status).toBe(200)
      h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldListStats, res.body)
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
      ids.HoldListStats,
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
})
