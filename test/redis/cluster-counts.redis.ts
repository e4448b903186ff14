import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../../src/ids.ts'
import { subscribe } from '../_firehose.ts'
import { xrpc } from '../_util.ts'
import {
  getStats,
  pull,
  startCluster,
  storeBlob,
  waitForPulls,
  type TestCluster,
} from './_cluster.ts'

const DID = 'did:plc:clustercounts0000000000'

describe('two frontends and a writer on one Redis', () => {
  let cluster: TestCluster
  beforeAll(async () => {
    cluster = await startCluster({ frontends: 2 })
  })
  afterAll(() => cluster?.close())

  it('N concurrent counted pulls across both frontends are exactly N at the writer and on each frontend', async () => {
    const [a, b] = cluster.frontends
    const cid = await storeBlob(a.url, DID, 'app')
    const N = 600
    const statuses = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        pull(i % 2 ? a.url : b.url, DID, 'app', cid),
      ),
    )
    expect(statuses.every((s) => s === 200)).toBe(true)
    expect(await waitForPulls(cluster.writer.url, DID, 'app', N)).toBe(N)
    // Each frontend: the writer's published table plus what it has not seen applied.
    expect(await waitForPulls(a.url, DID, 'app', N)).toBe(N)
    expect(await waitForPulls(b.url, DID, 'app', N)).toBe(N)
    const s = await getStats(a.url, DID, 'app')
    expect(s.pushCount).toBe(1)
  })

  it('a count taken on a frontend shows on that frontend at once', async () => {
    const [a] = cluster.frontends
    const cid = await storeBlob(a.url, DID, 'at-once')
    expect(await pull(a.url, DID, 'at-once', cid)).toBe(200)
    expect((await getStats(a.url, DID, 'at-once')).pullCount).toBe(1)
  })

  it('listStats on a frontend lists the pairs the writer applied', async () => {
    const [a, b] = cluster.frontends
    const cid = await storeBlob(b.url, DID, 'listed')
    expect(await pull(b.url, DID, 'listed', cid)).toBe(200)
    expect(await waitForPulls(a.url, DID, 'listed', 1)).toBe(1)
    const res = await xrpc<{
      stats: { repository: string; pullCount: number }[]
    }>(a.url, ids.HoldListStats, { did: DID })
    expect(res.status).toBe(200)
    const listed = Object.fromEntries(
      res.body.stats.map((s) => [s.repository, s.pullCount]),
    )
    expect(listed).toEqual({ app: 600, 'at-once': 1, listed: 1 })
  })

  it('repo reads on a frontend are answered by the writer', async () => {
    const [a] = cluster.frontends
    const viaFrontend = await xrpc<{ did: string }>(
      a.url,
      ids.ServerDescribeServer,
    )
    expect(viaFrontend.status).toBe(200)
    expect(viaFrontend.body.did).toBe(
      `did:web:localhost%3A${cluster.writerPort}`,
    )
    const head = await xrpc<{ cid: string }>(a.url, ids.SyncGetLatestCommit, {
      did: viaFrontend.body.did,
    })
    const direct = await xrpc<{ cid: string }>(
      cluster.writer.url,
      ids.SyncGetLatestCommit,
      { did: viaFrontend.body.did },
    )
    expect(head.status).toBe(200)
    expect(head.body.cid).toBe(direct.body.cid)
  })

  it("subscribeRepos on a frontend is the writer's firehose, piped through", async () => {
    const [a] = cluster.frontends
    const sub = await subscribe(a.url, '?cursor=0')
    try {
      // The writer's first commits (its captain) replay from cursor 0.
      await sub.untilSeq(1)
      expect(sub.seqs()[0]).toBe(1)
    } finally {
      sub.ws.close()
    }
  })
})
