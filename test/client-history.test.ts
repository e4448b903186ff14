// atcr-hold/client's history and trending queries against a live hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HoldClient, HoldError, type GetToken } from '../src/client/index.ts'
import { serviceToken } from './_identity.ts'
import { startHold, TEST_OWNER, waitFor, type TestHold } from './_util.ts'

const asOwner: GetToken = (aud, lxm, { exp }) =>
  serviceToken({ iss: TEST_OWNER, aud, lxm, exp })
const OWNER = 'did:plc:clienthistory000000000000'

let h: TestHold
let client: HoldClient

beforeAll(async () => {
  h = await startHold()
  client = new HoldClient({ allowHttpLocalhost: true, getToken: asOwner })
  const { digest } = await client.pushBlob(h.did, new Uint8Array([4, 2]))
  // Three pulls of one repository, one of another: the first trends above the second.
  for (const repo of ['hot', 'hot', 'hot', 'cold']) {
    await client.getBlob(h.did, { did: OWNER, cid: digest, repo })
  }
})
afterAll(() => h.stop())

const today = () => new Date().toISOString().slice(0, 10)

describe('history and trending through the client', () => {
  it('getStatsHistory answers today with its live counts', async () => {
    const history = await client.getStatsHistory(h.did, {
      did: OWNER,
      repo: 'hot',
      since: today(),
    })
    expect(history.days).toHaveLength(1)
    expect(history.days[0]).toMatchObject({ day: today(), pulls: 3 })
  })

  it('listTrending pages through the repositories by pulls', async () => {
    const order = await waitFor(async () => {
      const names: string[] = []
      for await (const page of client.listTrending(h.did, {
        days: 1,
        limit: 1,
      })) {
        names.push(...page.repositories.map((r) => r.repository))
      }
      return names.length === 2 ? names : undefined
    })
    expect(order).toEqual(['hot', 'cold'])
  })

  it('a range over 366 days is the hold’s InvalidRequest, typed', async () => {
    const err = await client
      .getStatsHistory(h.did, {
        did: OWNER,
        repo: 'hot',
        since: '2020-01-01',
        until: '2021-12-31',
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(err).toBeInstanceOf(HoldError)
    expect((err as HoldError).error).toBe('InvalidRequest')
  })
})
