import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterKeys } from '../../src/cluster/redis.ts'
import { dayOf } from '../../src/stats/days.ts'
import { encodeEntry, type StreamEntry } from '../../src/stats/stream-entry.ts'
import { startHold, waitFor, type TestHold } from '../_util.ts'
import { startRedis, type TestRedis } from './_cluster.ts'

const keys = clusterKeys('atcr-hold')
const DID = 'did:plc:streamreplay00000000000'

const entry = (producer: string, seq: number, pulls: number): StreamEntry => ({
  producer,
  seq,
  deltas: [
    {
      did: DID,
      repository: `r-${producer}`,
      pulls,
      pushes: 0,
      lastPull: Date.now(),
      lastPush: 0,
      first: Date.now(),
      day: dayOf(Date.now()),
    },
  ],
})

describe('the writer applies the counts stream exactly once', () => {
  let redis: TestRedis
  let client: Redis
  let writer: TestHold
  beforeAll(async () => {
    redis = await startRedis()
    client = new Redis(redis.url)
    writer = await startHold({
      env: {
        HOLD_ROLE: 'writer',
        HOLD_REDIS_URL: redis.url,
        HOLD_SIGNING_KEY: randomBytes(32).toString('hex'),
      },
    })
    // The group exists once the writer reads.
    await waitFor(async () => {
      const groups = (await client
        .xinfo('GROUPS', keys.stream)
        .catch(() => [])) as unknown[]
      return groups.length > 0
    })
  })
  afterAll(async () => {
    await writer?.stop()
    client?.disconnect()
    await redis?.close()
  })

  const pulls = (repo: string) => writer.hold.ctx.stats.get(DID, repo).pullCount
  const pending = async () =>
    ((await client.xpending(keys.stream, keys.group)) as [number])[0]

  it('a batch applied and not acknowledged (a crash between the two) is skipped when read again', async () => {
    const cluster = writer.hold.ctx.cluster!
    const consumer = cluster.consumer!
    // The writer's command connection goes: it applies, and cannot acknowledge.
    cluster.redis.disconnect()
    // In one MULTI, so the writer reads them as one batch.
    const multi = client.multi()
    for (let seq = 1; seq <= 3; seq++) {
      multi.xadd(keys.stream, '*', ...encodeEntry(entry('crash', seq, 10)))
    }
    await multi.exec()
    await waitFor(() => pulls('r-crash') === 30)
    expect(await pending()).toBe(3)
    const skippedBefore = consumer.totals.skipped
    await cluster.redis.connect()
    await waitFor(async () => (await pending()) === 0, 15_000)
    expect(consumer.totals.skipped - skippedBefore).toBe(3)
    expect(pulls('r-crash')).toBe(30)
  })

  it('an entry sent twice (a lost XADD reply) counts once', async () => {
    const fields = encodeEntry(entry('twice', 1, 7))
    await client.xadd(keys.stream, '*', ...fields)
    await client.xadd(keys.stream, '*', ...fields)
    await client.xadd(keys.stream, '*', ...encodeEntry(entry('twice', 2, 1)))
    await waitFor(async () => pulls('r-twice') === 8 && (await pending()) === 0)
    await new Promise((r) => setTimeout(r, 300))
    expect(pulls('r-twice')).toBe(8)
  })

  it('a malformed entry is acknowledged and skipped; the ones after it are applied', async () => {
    const consumer = writer.hold.ctx.cluster!.consumer!
    const before = consumer.totals.malformed
    await client.xadd(keys.stream, '*', 'c', '{"p":"bad","s":1,"d":[["x"]]}')
    await client.xadd(keys.stream, '*', 'other', 'field')
    await client.xadd(keys.stream, '*', ...encodeEntry(entry('after', 1, 2)))
    await waitFor(async () => pulls('r-after') === 2 && (await pending()) === 0)
    expect(consumer.totals.malformed - before).toBe(2)
  })

  it("publishes the applied counts and each frontend process's applied sequence number", async () => {
    const view = await client.hget(keys.view(DID), 'r-twice')
    expect(JSON.parse(view!)).toMatchObject({ pullCount: 8 })
    expect(await client.hget(keys.producers, 'twice')).toBe('2')
  })
})
