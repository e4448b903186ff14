import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CrewIndex } from '../src/auth/crew.ts'
import { ids } from '../src/lexicons.ts'
import { crewRecordKey } from '../src/auth/crew-rules.ts'
import {
  REQUEST_CREW,
  addCrew,
  expectXrpcError,
  removeCrew,
  tokenFor,
} from './_access.ts'
import { identity } from './_identity.ts'
import {
  TEST_OWNER,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const did = (name: string, i: number) =>
  `did:plc:${name}${String(i).padStart(24 - name.length, '0')}`

const requestCrew = async (
  h: TestHold,
  caller: string,
  headers: Record<string, string> = {},
) => {
  await identity(caller)
  return xrpc<{ status?: string; error?: string; message?: string }>(
    h.url,
    REQUEST_CREW,
    {},
    {
      method: 'POST',
      headers: { ...(await tokenFor(h, caller, REQUEST_CREW)), ...headers },
    },
  )
}

/** The crew as the index answers it, in a form toEqual compares. */
const view = (index: CrewIndex) =>
  index
    .members()
    .map((m) => ({ ...m, permissions: [...m.permissions].sort() }))
    .sort((a, b) => (a.member < b.member ? -1 : 1))

/** Counts how often the hold reads the crew collection through the record index. */
const countCrewReads = (h: TestHold) => {
  const reader = h.hold.ctx.reader
  const list = reader.list.bind(reader)
  const counter = { reads: 0 }
  reader.list = (collection, opts) => {
    if (collection === ids.HoldCrew) counter.reads++
    return list(collection, opts)
  }
  return counter
}

describe('the crew index follows commits', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_ALLOW_ALL_CREW: 'true',
        HOLD_CREW_JOINS_PER_HOUR: '0',
        HOLD_STATS_FLUSH_MS: '3600000',
      },
    })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('joins, changes and removals update it without reading the whole crew again', async () => {
    const crew = h.hold.ctx.crew
    expect(crew.member(TEST_OWNER)).toBeDefined()
    const counter = countCrewReads(h)

    for (let i = 0; i < 40; i++) {
      const member = did('joiner', i)
      expect((await requestCrew(h, member)).body.status).toBe('created')
      expect(crew.member(member)?.permissions).toEqual(
        new Set(['blob:read', 'blob:write']),
      )
    }
    const changed = did('joiner', 3)
    expect(
      (await addCrew(h, changed, ['blob:read'], { as: TEST_OWNER })).status,
    ).toBe(200)
    expect(crew.member(changed)?.permissions).toEqual(new Set(['blob:read']))
    const removed = did('joiner', 7)
    expect(
      (await removeCrew(h, crewRecordKey(removed), { as: TEST_OWNER })).status,
    ).toBe(200)
    expect(crew.member(removed)).toBeUndefined()

    expect(counter.reads).toBe(0)
    const fresh = new CrewIndex(h.hold.ctx.reader, h.hold.ctx.writer)
    expect(view(crew)).toEqual(view(fresh))
    expect(crew.members()).toHaveLength(40)
  })

  it('agrees with a fresh read after any mix of creates, updates and deletes, records naming one member twice included', async () => {
    const { writer, reader, crew } = h.hold.ctx
    const members = Array.from({ length: 6 }, (_, i) => did('mixed', i))
    // Most keys follow the API's rule (the member's DID); two name members under other keys.
    const rkeys = [...members.map(crewRecordKey), 'extra-a', 'extra-b']
    let seed = 7
    const random = (n: number) => {
      // xorshift32: a fixed sequence, spread over every residue
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return (seed >>> 0) % n
    }
    const permissions = [
      ['blob:read'],
      ['blob:write'],
      ['blob:read', 'blob:write'],
    ]
    for (let step = 0; step < 120; step++) {
      const rkey = rkeys[random(rkeys.length)]
      if (random(4) === 0) {
        await writer.deleteRecords([{ collection: ids.HoldCrew, rkey }])
      } else {
        const member = rkey.startsWith('extra')
          ? members[random(members.length)]
          : members[rkeys.indexOf(rkey)]
        await writer.putRecords([
          {
            collection: ids.HoldCrew,
            rkey,
            record: {
              $type: ids.HoldCrew,
              member,
              role: 'member',
              permissions: permissions[random(permissions.length)],
              addedAt: new Date(step * 1000).toISOString(),
            },
          },
        ])
      }
      expect(view(crew), `step ${step}`).toEqual(
        view(new CrewIndex(reader, writer)),
      )
    }
  })
})

describe('requestCrew joins are limited per caller and per client address', () => {
  const holds: TestHold[] = []
  const start = async (env: Record<string, string>) => {
    const h = await startHold({
      env: {
        HOLD_ALLOW_ALL_CREW: 'true',
        HOLD_STATS_FLUSH_MS: '3600000',
        ...env,
      },
    })
    holds.push(h)
    return h
  }
  afterEach(async () => {
    for (const h of holds.splice(0)) {
      await h.stop()
      await removeDir(h.dataDir)
    }
  })

  it('are limited by default (30 an hour), and over it a join is 429 RateLimitExceeded with Retry-After, writing nothing', async () => {
    const h = await start({})
    expect(h.hold.ctx.cfg.crewJoinsPerHour).toBe(30)
    for (let i = 0; i < 30; i++) {
      expect((await requestCrew(h, did('flood', i))).body.status).toBe(
        'created',
      )
    }
    const rev = await latest(h)
    const over = await requestCrew(h, did('flood', 30))
    expectXrpcError(over, 429, 'RateLimitExceeded')
    expect(over.body.message).toContain('HOLD_CREW_JOINS_PER_HOUR')
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(h.hold.ctx.crew.member(did('flood', 30))).toBeUndefined()
    expect(await latest(h)).toBe(rev)
    // Members asking again are answered as before: only joins take from the budget.
    expect((await requestCrew(h, did('flood', 0))).body.status).toBe(
      'already_member',
    )
    const metrics = await (await fetch(`${h.url}/metrics`)).text()
    expect(metrics).toContain('hold_crew_joins_refused_total 1')
  })

  it('each client address behind a trusted proxy has a budget of its own', async () => {
    const h = await start({
      HOLD_CREW_JOINS_PER_HOUR: '2',
      HOLD_TRUSTED_PROXY_HEADER: 'X-Forwarded-For',
    })
    const from = (ip: string) => ({ 'x-forwarded-for': ip })
    expect(
      (await requestCrew(h, did('addr', 0), from('203.0.113.1'))).status,
    ).toBe(200)
    expect(
      (await requestCrew(h, did('addr', 1), from('203.0.113.1'))).status,
    ).toBe(200)
    expectXrpcError(
      await requestCrew(h, did('addr', 2), from('203.0.113.1')),
      429,
      'RateLimitExceeded',
    )
    expect(
      (await requestCrew(h, did('addr', 2), from('203.0.113.2'))).body.status,
    ).toBe('created')
  })

  it('a caller removed and joining again from new addresses runs out of its own budget', async () => {
    const h = await start({
      HOLD_CREW_JOINS_PER_HOUR: '2',
      HOLD_TRUSTED_PROXY_HEADER: 'X-Forwarded-For',
    })
    const rejoiner = did('rejoin', 0)
    for (const ip of ['203.0.113.11', '203.0.113.12']) {
      expect(
        (await requestCrew(h, rejoiner, { 'x-forwarded-for': ip })).body.status,
      ).toBe('created')
      expect(
        (await removeCrew(h, crewRecordKey(rejoiner), { as: TEST_OWNER }))
          .status,
      ).toBe(200)
    }
    expectXrpcError(
      await requestCrew(h, rejoiner, { 'x-forwarded-for': '203.0.113.13' }),
      429,
      'RateLimitExceeded',
    )
    // The third address's own budget was not spent on the refused join.
    expect(
      (
        await requestCrew(h, did('rejoin', 1), {
          'x-forwarded-for': '203.0.113.13',
        })
      ).body.status,
    ).toBe('created')
  })

  it('HOLD_CREW_JOINS_PER_HOUR=0 turns the limit off', async () => {
    const h = await start({ HOLD_CREW_JOINS_PER_HOUR: '0' })
    for (let i = 0; i < 40; i++) {
      expect((await requestCrew(h, did('unlimited', i))).body.status).toBe(
        'created',
      )
    }
  })
})

const latest = async (h: TestHold) =>
  (
    await xrpc<{ rev: string }>(h.url, 'com.atproto.sync.getLatestCommit', {
      did: h.did,
    })
  ).body.rev
