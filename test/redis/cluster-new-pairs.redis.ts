import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../../src/ids.ts'
import { ownerAuth, TEST_OWNER, waitFor, xrpc } from '../_util.ts'
import {
  getStats,
  pull,
  startCluster,
  storeBlob,
  type TestCluster,
} from './_cluster.ts'

const KNOWN = ['known-1', 'known-2', 'known-3']

/** hold_stats_new_pairs_dropped_total of one machine. */
const newPairsDropped = async (base: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text()
  const m = /^hold_stats_new_pairs_dropped_total (\d+)$/m.exec(text)
  return m ? Number(m[1]) : NaN
}

describe('HOLD_NEW_PAIRS_PER_HOUR on frontends', () => {
  let cluster: TestCluster
  let blob: string

  beforeAll(async () => {
    cluster = await startCluster({
      frontends: 2,
      env: { HOLD_NEW_PAIRS_PER_HOUR: '1' },
    })
    blob = await storeBlob(cluster.frontends[0].url, TEST_OWNER, 'app')
  })
  afterAll(async () => {
    await cluster?.close()
  })

  it('spends no token on a pair another frontend counted, only on pairs no machine has', async () => {
    const [a, b] = cluster.frontends
    // The owner's pulls on A (the owner is trusted with its own pairs) make the pairs known.
    const owner = await ownerAuth(a.url)
    for (const repo of KNOWN) {
      const res = await xrpc(
        a.url,
        ids.SyncGetBlob,
        { did: TEST_OWNER, cid: blob, repo, method: 'GET' },
        { headers: owner },
      )
      expect(res.status).toBe(200)
    }
    for (const repo of KNOWN) {
      await waitFor(
        async () =>
          (await getStats(cluster.writer.url, TEST_OWNER, repo)).pullCount ===
          1,
        20_000,
      )
    }
    // Anonymous pulls on B, which never counted those pairs; then two pairs nobody has.
    for (const repo of [...KNOWN, 'fresh-1', 'fresh-2']) {
      expect(await pull(b.url, TEST_OWNER, repo, blob)).toBe(200)
    }
    for (const [repo, pulls] of [
      ...KNOWN.map((r) => [r, 2] as const),
      ['fresh-1', 1] as const,
    ]) {
      await waitFor(
        async () =>
          (await getStats(cluster.writer.url, TEST_OWNER, repo)).pullCount ===
          pulls,
        20_000,
      )
    }
    // One token for the hour: fresh-1 took it, fresh-2 was served and not counted.
    expect(await newPairsDropped(b.url)).toBe(1)
    expect((await getStats(b.url, TEST_OWNER, 'fresh-2')).pullCount).toBe(0)
  })
})
