import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../src/api/util.ts'
import { atcrQuery, xrpcPath } from '../src/api/xrpc.ts'
import { XRPCError } from '../src/errors.ts'
import { ids, loadLexiconDocs, loadLexicons } from '../src/lexicons.ts'
import { raw, REQUEST_CREW, tokenFor } from './_access.ts'
import { identity } from './_identity.ts'
import {
  TEST_OWNER,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

/** A bare app with the helper's routes and the XRPC error shape, for what a lexicon changes. */
const bareApp = (): App => {
  const app: App = new Hono()
  app.onError((err, c) =>
    err instanceof XRPCError
      ? c.json({ error: err.error, message: err.message }, err.status as 400)
      : c.json({ error: 'InternalServerError', message: err.message }, 500),
  )
  return app
}

/** What the lexicon validator says about these params or this body. */
const validatorMessage = (check: () => unknown): string => {
  try {
    check()
  } catch (err) {
    return (err as Error).message
  }
  throw new Error('the validator accepted it')
}

describe('the route helper', () => {
  it('answers a route registered from ids at /xrpc/<NSID>, with the params decoded by the lexicon and its defaults applied', async () => {
    const app = bareApp()
    atcrQuery(app, loadLexicons(), ids.HoldListStats, (c, params) =>
      c.json(params),
    )
    expect(xrpcPath(ids.HoldListStats)).toBe('/xrpc/io.atcr.hold.listStats')
    const res = await app.request(
      `/xrpc/io.atcr.hold.listStats?did=${TEST_OWNER}&cursor=abc`,
    )
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      did: TEST_OWNER,
      cursor: 'abc',
      limit: 50,
    })
    const limited = await app.request(
      `/xrpc/io.atcr.hold.listStats?did=${TEST_OWNER}&limit=7`,
    )
    expect(await limited.json()).toEqual({ did: TEST_OWNER, limit: 7 })
  })

  it('takes limits and required fields from the lexicon, not the handler: change the lexicon and the route follows', async () => {
    const docs = loadLexiconDocs().map((doc) => {
      if (doc.id !== ids.HoldListStats) return doc
      const changed = structuredClone(doc) as unknown as {
        defs: {
          main: {
            parameters: {
              required: string[]
              properties: { limit: { maximum: number } }
            }
          }
        }
      }
      changed.defs.main.parameters.properties.limit.maximum = 5
      changed.defs.main.parameters.required = ['did', 'cursor']
      return changed as unknown as typeof doc
    })
    const { Lexicons } = await import('@atproto/lexicon')
    const app = bareApp()
    atcrQuery(app, new Lexicons(docs), ids.HoldListStats, (c, params) =>
      c.json(params),
    )
    const six = await app.request(
      `/xrpc/io.atcr.hold.listStats?did=${TEST_OWNER}&cursor=x&limit=6`,
    )
    expect(six.status).toBe(400)
    expect(await six.json()).toEqual({
      error: 'InvalidRequest',
      message: 'limit can not be greater than 5',
    })
    const noCursor = await app.request(
      `/xrpc/io.atcr.hold.listStats?did=${TEST_OWNER}&limit=5`,
    )
    expect(noCursor.status).toBe(400)
    expect(((await noCursor.json()) as { message: string }).message).toBe(
      'Params must have the property "cursor"',
    )
  })

  it('refuses to register an io.atcr route the lexicons do not describe as that kind of method', () => {
    const app = bareApp()
    expect(() =>
      atcrQuery(app, loadLexicons(), ids.HoldRequestCrew, (c) => c.json({})),
    ).toThrow()
    expect(() =>
      atcrQuery(app, loadLexicons(), ids.HoldCrew, (c) => c.json({})),
    ).toThrow()
  })
})

describe('the routes the hold serves', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_ALLOW_ALL_CREW: 'true',
        HOLD_STATS_FLUSH_MS: '3600000',
      },
    })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('are each /xrpc/<an NSID in ids> (or _health), and every method in ids is served', () => {
    const nsids = new Set<string>(Object.values(ids))
    const served = new Set(
      h.hold.app.routes
        .filter((r) => r.method !== 'ALL')
        .map((r) => r.path)
        .filter((path) => path.startsWith('/xrpc/') && path !== '/xrpc/_health')
        .map((path) => path.slice('/xrpc/'.length)),
    )
    for (const nsid of served) expect(nsids, nsid).toContain(nsid)
    const records = new Set<string>(
      loadLexiconDocs()
        .filter((doc) => doc.defs.main?.type === 'record' || !doc.defs.main)
        .map((doc) => doc.id),
    )
    const methods = [...nsids].filter((nsid) => !records.has(nsid))
    expect(methods.sort()).toEqual([...served].sort())
  })

  it('has a lexicon in lexicons/ for every io.atcr NSID in ids, and no lexicon for an NSID it does not name', () => {
    const documented = loadLexiconDocs().map((doc) => doc.id)
    const ours = Object.values(ids).filter((nsid) =>
      nsid.startsWith('io.atcr.'),
    )
    expect([...documented].sort()).toEqual([...ours].sort())
  })

  it('refuses listStats limit 101 with 400 and the validator’s message', async () => {
    const res = await xrpc(h.url, ids.HoldListStats, {
      did: TEST_OWNER,
      limit: 101,
    })
    expect(res.status).toBe(400)
    expect(res.body).toEqual({
      error: 'InvalidRequest',
      message: validatorMessage(() =>
        h.hold.ctx.lexicons.assertValidXrpcParams(ids.HoldListStats, {
          did: TEST_OWNER,
          limit: 101,
        }),
      ),
    })
    expect(res.body.message).toBe('limit can not be greater than 100')
  })

  it('refuses getStats without repo with 400 and the validator’s message', async () => {
    const res = await xrpc(h.url, ids.HoldGetStats, { did: TEST_OWNER })
    expect(res.status).toBe(400)
    expect(res.body).toEqual({
      error: 'InvalidRequest',
      message: validatorMessage(() =>
        h.hold.ctx.lexicons.assertValidXrpcParams(ids.HoldGetStats, {
          did: TEST_OWNER,
        }),
      ),
    })
    expect(res.body.message).toBe('Params must have the property "repo"')
  })

  it('refuses getStats with a repo longer than the lexicon allows, and a did that is not one, by the lexicon', async () => {
    const long = await xrpc(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'a'.repeat(257),
    })
    expect(long.status).toBe(400)
    expect(long.body.message).toBe(
      'repo must not be longer than 256 characters',
    )
    const notDid = await xrpc(h.url, ids.HoldGetStats, {
      did: 'alice',
      repo: 'web',
    })
    expect(notDid.status).toBe(400)
    expect(notDid.body.message).toMatch(/^did must be a valid did/)
  })

  it('refuses a requestCrew body the lexicon refuses with 400 and the validator’s message, writing nothing', async () => {
    const caller = 'did:plc:routewrongtype00000000000'
    await identity(caller)
    const headBefore = h.hold.ctx.storage.getRootSync()?.rev
    for (const body of [
      { role: 5 },
      { permissions: 'blob:read' },
      { permissions: ['blob:read', 'blob:write', 'blob:read'] },
    ]) {
      const res = await xrpc(
        h.url,
        REQUEST_CREW,
        {},
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(await tokenFor(h, caller, REQUEST_CREW)),
          },
          body: JSON.stringify(body),
        },
      )
      expect(res.status, JSON.stringify(body)).toBe(400)
      expect(res.body).toEqual({
        error: 'InvalidRequest',
        message: validatorMessage(() =>
          h.hold.ctx.lexicons.assertValidXrpcInput(ids.HoldRequestCrew, body),
        ),
      })
    }
    expect(
      (await xrpc(h.url, ids.HoldRequestCrew, {}, { method: 'POST' })).status,
    ).toBe(401)
    expect(h.hold.ctx.storage.getRootSync()?.rev).toBe(headBefore)
  })

  it('keeps the query-string rules on io.atcr routes: repeated parameters, control characters, 8 KiB', async () => {
    const cases: [string, RegExp][] = [
      [
        `did=${TEST_OWNER}&limit=1&limit=2`,
        /parameter limit is given more than once/,
      ],
      [`did=${TEST_OWNER}%01`, /parameter did contains control characters/],
      [
        `did=${TEST_OWNER}&x=${'a'.repeat(8200)}`,
        /query string is longer than 8192/,
      ],
      [`did=${TEST_OWNER}&limit=ten`, /limit must be an integer/],
      [`did=${TEST_OWNER}&limit=1e2`, /limit must be an integer/],
    ]
    for (const [query, message] of cases) {
      const res = await raw(h.url, {
        path: `${xrpcPath(ids.HoldListStats)}?${query}`,
      })
      expect(res.status, query).toBe(400)
      expect((res.body as { message: string }).message).toMatch(message)
    }
  })
})
