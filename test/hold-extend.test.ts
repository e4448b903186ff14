import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { App } from '../src/api/util.ts'
import type { AppContext } from '../src/context.ts'
import { pushBlob, startHold, xrpc, type TestHold } from './_util.ts'

// HoldServer.create's `extend`: the one seam through which a script (the benchmark's model of
// the seed design) adds behaviour around the hold's routes without the hold's types knowing.

describe('HoldServer.create with extend', () => {
  let h: TestHold
  const seen: { status: number; repo: string | undefined; pulls: number }[] = []
  let given: AppContext | undefined

  beforeAll(async () => {
    h = await startHold({
      overrides: {
        extend: (app: App, ctx: AppContext) => {
          given = ctx
          app.use(`/xrpc/${ids.SyncGetBlob}`, async (c, next) => {
            await next()
            seen.push({
              status: c.res.status,
              repo: c.req.query('repo'),
              pulls: ctx.stats.totals.pulls,
            })
          })
          app.get('/_extended', (c) => c.json({ did: ctx.cfg.did }))
        },
      },
    })
  })
  afterAll(() => h.stop())

  it('hands over the hold’s own context', () => {
    expect(given).toBe(h.hold.ctx)
  })

  it('runs its middleware around the hold’s route, after the route has counted', async () => {
    const { digest } = await pushBlob(h.url, randomBytes(64))
    seen.length = 0
    const pulls = h.hold.ctx.stats.totals.pulls
    const res = await xrpc(h.url, ids.SyncGetBlob, {
      did: 'did:plc:extendalice',
      cid: digest,
      method: 'GET',
      repo: 'app',
    })
    expect(res.status).toBe(200)
    const missing = await xrpc(h.url, ids.SyncGetBlob, {
      did: 'did:plc:extendalice',
      cid: `sha256:${'0'.repeat(64)}`,
      repo: 'app',
    })
    expect(missing.status).toBe(404)
    expect(seen.map(({ status, repo }) => ({ status, repo }))).toEqual([
      { status: 200, repo: 'app' },
      { status: 404, repo: 'app' },
    ])
    // The count was taken before the middleware's code after next() ran; a 404 takes none.
    expect(seen.map((s) => s.pulls)).toEqual([pulls + 1, pulls + 1])
    expect(
      (
        await xrpc<{ pullCount: number }>(h.url, ids.HoldGetStats, {
          did: 'did:plc:extendalice',
          repo: 'app',
        })
      ).body.pullCount,
    ).toBe(1)
  })

  it('serves a route it adds, and leaves unknown XRPC methods answered as before', async () => {
    const res = await fetch(`${h.url}/_extended`)
    expect(await res.json()).toEqual({ did: h.did })
    expect((await xrpc(h.url, 'io.example.unknownMethod')).status).toBe(501)
  })
})
