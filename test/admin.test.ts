import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { removeDir, startHold, xrpc, type TestHold } from './_util.ts'

const PASSWORD = 'correct horse battery staple'
/** Stands for the client address, so many wrong passwords do not lock this process out. */
const CLIENT_HEADER = 'x-test-client'
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

type Answer = {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

const call = async (
  h: TestHold,
  method: 'GET' | 'POST',
  path: string,
  opts: { auth?: string; body?: unknown; raw?: string; client?: string } = {},
): Promise<Answer> => {
  const headers: Record<string, string> = {}
  if (opts.auth !== undefined) headers.authorization = opts.auth
  if (opts.client !== undefined) headers[CLIENT_HEADER] = opts.client
  if (opts.body !== undefined || opts.raw !== undefined) {
    headers['content-type'] = 'application/json'
  }
  const res = await fetch(new URL(path, h.url), {
    method,
    headers,
    body:
      opts.raw ??
      (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
  })
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as Record<string, unknown>,
  }
}

const ROUTES: ['GET' | 'POST', string][] = [
  ['GET', '/admin/status'],
  ['GET', '/admin/stats/top'],
  ['POST', '/admin/stats/import'],
  ['POST', '/admin/stats/reset'],
  ['POST', '/admin/crew/add'],
  ['POST', '/admin/crew/remove'],
  ['POST', '/admin/captain'],
]

describe('admin API', () => {
  let h: TestHold
  let off: TestHold
  const admin = () => basic('admin', PASSWORD)

  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_ADMIN_PASSWORD: PASSWORD,
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
      },
    })
    off = await startHold()
  })
  afterAll(async () => {
    for (const t of [h, off]) {
      await t.stop()
      await removeDir(t.dataDir)
    }
  })

  it('is off, with 403 AdminDisabled on every route, when the hold has no HOLD_ADMIN_PASSWORD', async () => {
    for (const [method, path] of ROUTES) {
      const res = await call(off, method, path, {
        auth: admin(),
        body: method === 'POST' ? {} : undefined,
      })
      expect(res.status, path).toBe(403)
      expect(res.body.error).toBe('AdminDisabled')
      expect(res.body.message).toContain('HOLD_ADMIN_PASSWORD')
    }
  })

  it('answers 401 with a Basic challenge to missing, malformed or wrong credentials, and never writes', async () => {
    const rev = async () =>
      (
        await xrpc<{ rev: string }>(h.url, ids.SyncGetLatestCommit, {
          did: h.did,
        })
      ).body.rev
    const before = await rev()
    const bad = [
      undefined,
      'Bearer abc',
      'Basic !!!',
      basic('admin', 'wrong'),
      basic('admin', `${PASSWORD} `),
      basic('root', PASSWORD),
      `Basic ${Buffer.from(PASSWORD).toString('base64')}`,
    ]
    for (const [i, auth] of bad.entries()) {
      for (const [method, path] of ROUTES) {
        const res = await call(h, method, path, {
          auth,
          client: `192.0.2.${i}`,
          body:
            method === 'POST' ? { did: 'did:plc:x', public: false } : undefined,
        })
        expect(res.status, `${auth} ${path}`).toBe(401)
        expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/)
        expect(['AuthRequired', 'InvalidCredentials']).toContain(res.body.error)
      }
    }
    expect(await rev()).toBe(before)
    const ok = await call(h, 'GET', '/admin/status', { auth: admin() })
    expect(ok.status).toBe(200)
    expect(ok.body).toMatchObject({ did: h.did, public: true })
  })

  it('is not exposed to browsers across origins (no CORS headers on /admin)', async () => {
    const res = await fetch(new URL('/admin/status', h.url), {
      headers: { origin: 'https://evil.example', authorization: admin() },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('applies an import call entirely or not at all: one bad row refuses the call', async () => {
    const rows = [
      {
        did: 'did:plc:adminok1',
        repository: 'app',
        pullCount: 5,
        pushCount: 1,
      },
      {
        did: 'did:plc:adminok1',
        repository: 'lib',
        pullCount: 7,
        pushCount: 0,
      },
      {
        did: 'did:plc:adminok1',
        repository: 'Bad Name',
        pullCount: 1,
        pushCount: 0,
      },
    ]
    const refused = await call(h, 'POST', '/admin/stats/import', {
      auth: admin(),
      body: { baselines: rows },
    })
    expect(refused.status).toBe(400)
    expect(refused.body.message).toMatch(
      /^baselines\[2\]: repository is not an OCI/,
    )
    for (const repo of ['app', 'lib']) {
      const s = await xrpc(h.url, ids.HoldGetStats, {
        did: 'did:plc:adminok1',
        repo,
      })
      expect(s.body).toMatchObject({ pullCount: 0, pushCount: 0 })
    }
    const dup = await call(h, 'POST', '/admin/stats/import', {
      auth: admin(),
      body: { baselines: [rows[0], rows[1], rows[0]] },
    })
    expect(dup.status).toBe(400)
    expect(dup.body.message).toContain(
      'baselines[2] names the same did and repository as baselines[0]',
    )

    const applied = await call(h, 'POST', '/admin/stats/import', {
      auth: admin(),
      body: { baselines: rows.slice(0, 2) },
    })
    expect(applied.status).toBe(200)
    expect(applied.body).toEqual({ received: 2, changed: 2, unchanged: 0 })
    const s = await xrpc(h.url, ids.HoldGetStats, {
      did: 'did:plc:adminok1',
      repo: 'lib',
    })
    expect(s.body).toMatchObject({ pullCount: 7, pushCount: 0 })
  })

  it('refuses malformed admin calls with 400 or 413, never 500', async () => {
    const cases: [string, { body?: unknown; raw?: string }, number, RegExp][] =
      [
        ['/admin/stats/import', { raw: '{not json' }, 400, /not valid JSON/],
        ['/admin/stats/import', { body: [1] }, 400, /JSON object/],
        [
          '/admin/stats/import',
          { body: { baselines: 'x' } },
          400,
          /must be an array/,
        ],
        [
          '/admin/stats/import',
          { body: { baselines: [7] } },
          400,
          /baselines\[0\] must be an object/,
        ],
        [
          '/admin/stats/import',
          {
            body: {
              baselines: Array(1001).fill({
                did: 'did:plc:a',
                repository: 'a',
              }),
            },
          },
          400,
          /at most 1000/,
        ],
        [
          '/admin/stats/import',
          { raw: `{"baselines":"${'x'.repeat(5 * 1024 * 1024)}"}` },
          413,
          /larger than/,
        ],
        [
          '/admin/stats/reset',
          { body: {} },
          400,
          /missing required field: did/,
        ],
        [
          '/admin/stats/reset',
          { body: { did: 'alice' } },
          400,
          /did must be a DID/,
        ],
        [
          '/admin/stats/reset',
          { body: { did: 'did:plc:a', repository: 'UP' } },
          400,
          /OCI repository/,
        ],
        [
          '/admin/crew/add',
          { body: { did: 'did:plc:a', permissions: ['root'] } },
          400,
          /unknown permission "root"/,
        ],
        [
          '/admin/crew/add',
          { body: { did: 'did:plc:a', permissions: [] } },
          400,
          /non-empty list/,
        ],
        [
          '/admin/crew/add',
          { body: { did: 'did:plc:a', role: 'Root Admin' } },
          400,
          /role must be/,
        ],
        [
          '/admin/crew/remove',
          { body: { did: 'did:plc:nobody' } },
          404,
          /is not in the crew/,
        ],
        ['/admin/captain', { body: {} }, 400, /nothing to change/],
        [
          '/admin/captain',
          { body: { public: 'yes' } },
          400,
          /public must be true or false/,
        ],
      ]
    for (const [path, opts, status, message] of cases) {
      const res = await call(h, 'POST', path, { auth: admin(), ...opts })
      expect(res.status, `${path} ${JSON.stringify(opts).slice(0, 80)}`).toBe(
        status,
      )
      expect(res.body.message).toMatch(message)
    }
    const top = await call(h, 'GET', '/admin/stats/top?limit=0', {
      auth: admin(),
    })
    expect(top.status).toBe(400)
  })
})
