import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterClientKey } from '../../src/cluster/cluster.ts'
import { ids } from '../../src/ids.ts'
import { ClientHasher, hash32, Sketch } from '../../src/stats/hll.ts'
import { bearer, identity } from '../_identity.ts'
import { holdInfo, TEST_OWNER, waitFor, xrpc } from '../_util.ts'
import { startCluster, storeBlob, type TestCluster } from './_cluster.ts'

const DID = 'did:plc:clusteruniques0000000000'
const clients = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) =>
    `did:plc:uniq${prefix}${i}`.padEnd(32, '0'),
  )

type Day = { day: string; pulls: number; uniqueClients?: number }

describe("unique clients of frontends' pulls", () => {
  let cluster: TestCluster
  beforeAll(async () => {
    cluster = await startCluster({ frontends: 2 })
  })
  afterAll(() => cluster?.close())

  it("reach the writer's estimate: clients seen only by frontends count, a client seen on two machines counts once", async () => {
    const [a, b] = cluster.frontends
    const holdDid = (await holdInfo(cluster.writer.url)).did
    const cid = await storeBlob(a.url, DID, 'app')
    const onA = clients('a', 4)
    const onB = clients('b', 3)
    const onWriter = clients('w', 2)
    const onBoth = clients('both', 1)
    const pullAs = async (base: string, as: string | undefined) => {
      if (as) await identity(as)
      const res = await xrpc(
        base,
        ids.SyncGetBlob,
        { did: DID, cid, repo: 'app', method: 'GET' },
        { headers: as ? await bearer({ iss: as, aud: holdDid }) : {} },
      )
      expect(res.status).toBe(200)
    }
    let pulls = 0
    const plan: [string, string | undefined][] = [
      ...onA.map((d): [string, string] => [a.url, d]),
      ...onB.map((d): [string, string] => [b.url, d]),
      ...onWriter.map((d): [string, string] => [cluster.writer.url, d]),
      [a.url, onBoth[0]],
      [b.url, onBoth[0]],
      // One anonymous client (this test's address) on all three machines.
      [a.url, undefined],
      [b.url, undefined],
      [cluster.writer.url, undefined],
    ]
    for (const [base, as] of plan) {
      await pullAs(base, as)
      pulls++
    }
    // What one sketch of every distinct client says, with the cluster's address key.
    const hasher = new ClientHasher(
      clusterClientKey(cluster.env.HOLD_SIGNING_KEY),
    )
    const expected = new Sketch()
    for (const d of [...onA, ...onB, ...onWriter, ...onBoth]) {
      expected.add(hash32(d))
    }
    expected.add(hasher.of('ip:127.0.0.1'))
    // The push that stored the blob was counted with its caller, the owner.
    expected.add(hash32(TEST_OWNER))
    const want = expected.estimate()
    expect(want).toBeGreaterThanOrEqual(11)

    let last: Day | undefined
    await waitFor(async () => {
      const res = await xrpc<{ days: Day[] }>(
        cluster.writer.url,
        ids.HoldGetStatsHistory,
        { did: DID, repo: 'app', since: new Date().toISOString().slice(0, 10) },
      )
      last = res.body.days?.at(-1) ?? (res.body as unknown as Day)
      return last?.pulls === pulls && last.uniqueClients === want
    }, 20_000).catch(() => undefined)
    expect(last).toMatchObject({ pulls, uniqueClients: want })
  })
})
