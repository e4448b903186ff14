import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { TokenBuckets } from '../src/stats/limiter.ts'
import { GET_BLOB, addCrew, getStats, sha256Hex, tokenFor } from './_access.ts'
import { identity } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STRANGER = 'did:plc:newpairstranger00000000000'
const ALICE = 'did:plc:newpairalice0000000000000'
const CREW_DID = 'did:plc:newpaircrew00000000000000'
const HOUR = 3_600_000

describe('TokenBuckets', () => {
  it('gives a key its hourly amount at once, then one more every 3600/N seconds', () => {
    const b = new TokenBuckets(4)
    const t = 1_000_000
    expect([1, 2, 3, 4, 5].map(() => b.take('a', t))).toEqual([
      true,
      true,
      true,
      true,
      false,
    ])
    expect(b.take('b', t)).toBe(true)
    expect(b.take('a', t + HOUR / 4 - 1)).toBe(false)
    expect(b.waitMs('a', t + HOUR / 4 - 1)).toBeGreaterThan(0)
    expect(b.take('a', t + HOUR / 2)).toBe(true)
    expect(b.refused).toBe(2)
  })

  it('never holds more than its hourly amount, however long a key waits', () => {
    const b = new TokenBuckets(2)
    expect(b.take('a', 0)).toBe(true)
    const later = 10 * HOUR
    expect([1, 2, 3].map(() => b.take('a', later))).toEqual([true, true, false])
  })

  it('is off at 0', () => {
    const b = new TokenBuckets(0)
    expect(b.enabled).toBe(false)
    for (let i = 0; i < 1000; i++) expect(b.take('a')).toBe(true)
  })

  it('keeps at most maxKeys buckets, dropping full ones and then the least recently used', () => {
    const b = new TokenBuckets(10, 100)
    for (let i = 0; i < 1000; i++) b.take(`k${i}`, i)
    expect(b.size).toBeLessThanOrEqual(100)
    // The most recent keys keep their (spent) tokens.
    expect(b.waitMs('k999', 999)).toBe(0)
  })
})

describe('new (DID, repository) pairs from unrelated clients', () => {
  const holds: TestHold[] = []
  const start = async (
    env: Record<string, string> = {},
    restart?: TestHold,
  ) => {
    const h = await startHold({
      env: { HOLD_STATS_FLUSH_MS: '3600000', ...env },
      dataDir: restart?.dataDir,
      port: restart?.port,
    })
    holds.push(h)
    return h
  }
  afterEach(async () => {
    for (const h of holds.splice(0)) await h.stop()
  })
  const dirs: string[] = []
  afterAll(async () => {
    for (const d of dirs) await removeDir(d)
  })

  const blob = randomBytes(64)
  const cid = `sha256:${sha256Hex(blob)}`
  const pull = (
    h: TestHold,
    did: string,
    repo: string,
    headers: Record<string, string> = {},
  ) => xrpc(h.url, GET_BLOB, { did, cid, repo }, { headers })
  const stored = async (h: TestHold) => {
    expect((await pushBlob(h.url, blob, { did: TEST_OWNER })).status).toBe(201)
    dirs.push(h.dataDir)
  }

  it('are limited by default: an anonymous client starts 100 pairs, the 101st is served but not counted', async () => {
    const h = await start()
    await stored(h)
    expect(h.hold.ctx.cfg.newPairsPerHour).toBe(100)
    for (let i = 0; i < 101; i++) {
      const did = `did:plc:spray${String(i).padStart(19, '0')}`
      expect((await pull(h, did, 'r')).status).toBe(200)
    }
    const stats = h.hold.ctx.stats
    stats.persist()
    expect(stats.summary().counters).toBe(100)
    expect(
      (await getStats(h, `did:plc:spray${'100'.padStart(19, '0')}`, 'r'))
        .pullCount,
    ).toBe(0)
    const metrics = await (await fetch(`${h.url}/metrics`)).text()
    expect(metrics).toContain('hold_stats_new_pairs_dropped_total 1')
    expect(metrics).toContain('hold_stats_dropped_total 1')
  })

  it('a spray of random pairs makes only the budget’s records; pairs that exist keep counting', async () => {
    const h = await start({ HOLD_NEW_PAIRS_PER_HOUR: '5' })
    await stored(h)
    for (let i = 0; i < 40; i++) {
      expect(
        (await pull(h, `did:plc:${randomBytes(12).toString('hex')}`, `r${i}`))
          .status,
      ).toBe(200)
    }
    // The pair the owner pushed to exists: anonymous pulls of it all count.
    expect(
      (
        await pushBlob(h.url, randomBytes(32), {
          did: TEST_OWNER,
          repo: 'pushed',
        })
      ).status,
    ).toBe(201)
    for (let i = 0; i < 20; i++) {
      expect((await pull(h, TEST_OWNER, 'pushed')).status).toBe(200)
    }
    expect((await getStats(h, TEST_OWNER, 'pushed')).pullCount).toBe(20)
    await h.hold.ctx.stats.flush()
    expect(h.hold.ctx.reader.counts()['io.atcr.hold.stats']).toBe(6)
  })

  it('the pair’s own DID, the hold owner and crew start pairs without using the budget', async () => {
    const h = await start({ HOLD_NEW_PAIRS_PER_HOUR: '1' })
    await stored(h)
    await identity(ALICE)
    expect(
      (await addCrew(h, CREW_DID, ['blob:read'], { as: TEST_OWNER })).status,
    ).toBe(200)
    for (let i = 0; i < 5; i++) {
      const repo = `own/${i}`
      expect(
        (await pull(h, ALICE, repo, await tokenFor(h, ALICE, GET_BLOB))).status,
      ).toBe(200)
      expect(
        (
          await pull(
            h,
            ALICE,
            `${repo}-o`,
            await tokenFor(h, TEST_OWNER, GET_BLOB),
          )
        ).status,
      ).toBe(200)
      expect(
        (
          await pull(
            h,
            ALICE,
            `${repo}-c`,
            await tokenFor(h, CREW_DID, GET_BLOB),
          )
        ).status,
      ).toBe(200)
    }
    for (let i = 0; i < 5; i++) {
      for (const suffix of ['', '-o', '-c']) {
        expect((await getStats(h, ALICE, `own/${i}${suffix}`)).pullCount).toBe(
          1,
        )
      }
    }
    expect(h.hold.ctx.newPairs.refused).toBe(0)
  })

  it('an unrelated DID has a budget of its own, apart from anonymous callers', async () => {
    const h = await start({ HOLD_NEW_PAIRS_PER_HOUR: '2' })
    await stored(h)
    const auth = await tokenFor(h, STRANGER, GET_BLOB)
    for (let i = 0; i < 3; i++) {
      expect((await pull(h, ALICE, `s/${i}`, auth)).status).toBe(200)
      expect((await pull(h, ALICE, `a/${i}`)).status).toBe(200)
    }
    const counted = async (prefix: string) => {
      const out = []
      for (let i = 0; i < 3; i++) {
        out.push((await getStats(h, ALICE, `${prefix}/${i}`)).pullCount)
      }
      return out
    }
    expect(await counted('s')).toEqual([1, 1, 0])
    expect(await counted('a')).toEqual([1, 1, 0])
  })

  it('each client address has its own budget behind a trusted proxy', async () => {
    const h = await start({
      HOLD_NEW_PAIRS_PER_HOUR: '1',
      HOLD_TRUSTED_PROXY_HEADER: 'X-Forwarded-For',
    })
    await stored(h)
    for (const [ip, repo] of [
      ['203.0.113.1', 'x/1'],
      ['203.0.113.1', 'x/2'],
      ['203.0.113.2', 'x/3'],
    ]) {
      expect(
        (await pull(h, ALICE, repo, { 'x-forwarded-for': ip })).status,
      ).toBe(200)
    }
    expect((await getStats(h, ALICE, 'x/1')).pullCount).toBe(1)
    expect((await getStats(h, ALICE, 'x/2')).pullCount).toBe(0)
    expect((await getStats(h, ALICE, 'x/3')).pullCount).toBe(1)
  })

  it('a pair counted before a restart is known from the table after it', async () => {
    const first = await start({ HOLD_NEW_PAIRS_PER_HOUR: '1' })
    await stored(first)
    expect((await pull(first, ALICE, 'before')).status).toBe(200)
    await first.stop()
    holds.splice(holds.indexOf(first), 1)
    const h = await start({ HOLD_NEW_PAIRS_PER_HOUR: '1' }, first)
    expect((await pull(h, ALICE, 'after')).status).toBe(200)
    for (let i = 0; i < 5; i++) {
      expect((await pull(h, ALICE, 'before')).status).toBe(200)
    }
    expect((await pull(h, ALICE, 'refused')).status).toBe(200)
    expect((await getStats(h, ALICE, 'before')).pullCount).toBe(6)
    expect((await getStats(h, ALICE, 'after')).pullCount).toBe(1)
    expect((await getStats(h, ALICE, 'refused')).pullCount).toBe(0)
  })

  it('HOLD_NEW_PAIRS_PER_HOUR=0 turns the limit off', async () => {
    const h = await start({ HOLD_NEW_PAIRS_PER_HOUR: '0' })
    await stored(h)
    for (let i = 0; i < 150; i++) {
      expect((await pull(h, ALICE, `off/${i}`)).status).toBe(200)
    }
    h.hold.ctx.stats.persist()
    expect(h.hold.ctx.stats.summary().counters).toBe(150)
  })
})
