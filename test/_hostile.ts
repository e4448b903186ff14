import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  CREW,
  GET_BLOB,
  expectXrpcError,
  expectZeroStats,
  filesUnder,
  raw,
  sha256Hex,
  snapshot,
  type RawResult,
} from './_access.ts'
import { bearer, identity } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

/**
 * One row of a hostile-request table: a request with one defect, and the 4xx and XRPC error
 * name it must get. Every row is also checked to count nothing and write nothing.
 */
export type HostileCase = {
  name: string
  status: number
  error: string
  request: () => Promise<RawResult>
}

export const STRANGER = 'did:plc:hostilestranger000000000000'
export const REPO = 'target/app'
export const NOW = () => Math.floor(Date.now() / 1000)

export const stored = randomBytes(2048)
export const storedHex = sha256Hex(stored)
export const storedCid = `sha256:${storedHex}`
export const fresh = randomBytes(512)
export const freshHex = sha256Hex(fresh)

let h: TestHold | undefined
let getUrl: URL | undefined

/** The hold the table runs against (started by refusesEach). */
export const hold = (): TestHold => {
  if (!h) throw new Error('no hostile hold: call refusesEach first')
  return h
}

/** A signed GET URL of the stored blob, as the hold issued it. */
export const signedGetUrl = (): URL => {
  if (!getUrl) throw new Error('no hostile hold: call refusesEach first')
  return getUrl
}

/** A query string encoded the way a client would (values percent-encoded). */
export const q = (params: Record<string, string> | [string, string][]) =>
  new URLSearchParams(params).toString()

/** getBlob of the stored blob for the target pair, with some parameters replaced or removed. */
export const getBlob = (over: Record<string, string | undefined> = {}) => {
  const params: Record<string, string> = {}
  for (const [k, v] of Object.entries({
    did: TEST_OWNER,
    cid: storedCid,
    repo: REPO,
    ...over,
  })) {
    if (v !== undefined) params[k] = v
  }
  return `/xrpc/${GET_BLOB}?${q(params)}`
}

export const send = (
  path: string,
  init: {
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    chunked?: boolean
  } = {},
) => raw(hold().url, { path, ...init })

export const auth = async (
  iss: string,
  lxm: string,
  more: { exp?: number; aud?: string } = {},
) => bearer({ iss, aud: more.aud ?? hold().did, lxm, exp: more.exp })

export const jsonTo = async (
  nsid: string,
  body: string | Buffer,
  opts: {
    as?: string
    type?: string
    chunked?: boolean
  } = {},
) =>
  send(`/xrpc/${nsid}`, {
    method: 'POST',
    headers: {
      'content-type': opts.type ?? 'application/json',
      ...(opts.as ? await auth(opts.as, nsid) : {}),
    },
    body,
    chunked: opts.chunked,
  })

export const crewInput = (record: Record<string, unknown>) =>
  JSON.stringify({ repo: hold().did, collection: CREW, record })

export const validCrew = (member = 'did:plc:hostilenewmember00000000') => ({
  member,
  role: 'write',
  permissions: ['blob:write'],
  addedAt: new Date().toISOString(),
})

export const withAuth = async (
  path: string,
  authorization: string | Promise<string>,
) => send(path, { headers: { authorization: await authorization } })

export const token = async (t: string | Promise<string>) => `Bearer ${await t}`

export const big = 'a'.repeat(70 * 1024)

/**
 * Sends each case to a public, open-crew hold that holds one blob of the target pair, and
 * checks the answer is the case's 4xx with a JSON {error, message} and that nothing was
 * counted or written. Last, the target pair is served and counted normally, so each row was
 * refused for its defect alone.
 */
export const refusesEach = (title: string, cases: HostileCase[]) =>
  describe(title, () => {
    beforeAll(async () => {
      h = await startHold({
        env: {
          HOLD_PUBLIC: 'true',
          HOLD_ALLOW_ALL_CREW: 'true',
          HOLD_STATS_FLUSH_MS: '3600000',
        },
      })
      await identity(STRANGER)
      expect((await pushBlob(h.url, stored, { did: TEST_OWNER })).status).toBe(
        201,
      )
      const signed = await xrpc<{ url: string }>(h.url, GET_BLOB, {
        did: TEST_OWNER,
        cid: storedCid,
        method: 'GET',
      })
      getUrl = new URL(signed.body.url)
    })
    afterAll(async () => {
      await hold().stop()
      await removeDir(hold().dataDir)
      h = undefined
      getUrl = undefined
    })

    for (const c of cases) {
      it(`${c.name} → ${c.status} ${c.error}`, async () => {
        const before = await snapshot(hold())
        const res = await c.request()
        expectXrpcError(res, c.status, c.error)
        expect(await snapshot(hold())).toEqual(before)
        await expectZeroStats(hold(), TEST_OWNER, REPO)
        expect(await filesUnder(join(hold().dataDir, 'blobs', 'tmp'))).toEqual(
          [],
        )
      })
    }

    it('served the target pair normally all along (the rows were refused for their defect alone)', async () => {
      const res = await send(getBlob())
      expect(res.status).toBe(200)
      const stats = await xrpc<{ pullCount: number }>(
        hold().url,
        ids.HoldGetStats,
        { did: TEST_OWNER, repo: REPO },
      )
      expect(stats.body.pullCount).toBe(1)
    })
  })
