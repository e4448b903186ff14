import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { GET_BLOB, b64url } from './_access.ts'
import { NOW, STRANGER } from './_hostile.ts'
import { serviceToken } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  type TestHold,
} from './_util.ts'

describe('property: getBlob, getStats and listStats never answer 5xx', () => {
  let p: TestHold
  let storedOnP: string
  let ownerToken: string

  beforeAll(async () => {
    p = await startHold({
      env: { HOLD_PUBLIC: 'false', HOLD_STATS_FLUSH_MS: '3600000' },
    })
    storedOnP = (await pushBlob(p.url, randomBytes(100))).digest
    // A real owner token (no lxm, valid for the whole run), so valid inputs get past access.
    ownerToken = `Bearer ${await serviceToken({ iss: TEST_OWNER, aud: p.did, lxm: null, exp: NOW() + 3000 })}`
  })
  afterAll(async () => {
    await p.stop()
    await removeDir(p.dataDir)
  })

  const junk = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({
      unit: fc.constantFrom(
        '\u0000',
        '\n',
        '%',
        '/',
        '.',
        ':',
        '#',
        '?',
        '&',
        '=',
        ' ',
      ),
      maxLength: 12,
    }),
    fc.string({ maxLength: 3000 }),
  )
  const hex = fc.string({
    unit: fc.constantFrom(...'0123456789abcdefABCDEF'),
    minLength: 60,
    maxLength: 68,
  })
  const did = fc.oneof(
    fc.constantFrom(TEST_OWNER, 'did:web:localhost', 'did:plc:', 'did:'),
    fc
      .string({
        unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0234567:%._-'),
        maxLength: 40,
      })
      .map((s) => `did:plc:${s}`),
    fc.string({ maxLength: 30 }).map((s) => `did:web:${s}`),
    junk,
  )
  const cid = fc.oneof(
    fc.constant('__stored__'),
    hex.map((x) => `sha256:${x}`),
    fc.constantFrom(
      'sha512:',
      'sha256:',
      'bafkrei',
      'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG',
    ),
    junk,
  )
  const repo = fc.oneof(
    fc.constantFrom('app', 'target/app', 'a/b/c', 'UPPER', '..', '/', ''),
    fc.string({ unit: fc.constantFrom(...'abc019._-/'), maxLength: 300 }),
    junk,
  )
  const ascii = fc.string({
    unit: fc.constantFrom(...'abcXYZ019-_.=+/ !$'),
    maxLength: 60,
  })
  const authorization = fc.option(
    fc.oneof(
      fc.constant('__owner__'),
      ascii,
      ascii.map((s) => `Bearer ${s}`),
      fc
        .tuple(ascii, ascii, ascii)
        .map(([a, b, c]) => `Bearer ${b64url(a)}.${b64url(b)}.${c}`),
      fc
        .record({
          alg: fc.constantFrom('ES256K', 'ES256', 'none', 'HS256', 7),
          iss: fc.constantFrom(
            TEST_OWNER,
            STRANGER,
            'did:plc:unknownissuer000000000',
            'did:web:localhost%3A1',
            'x',
            '',
          ),
          aud: fc.constantFrom('__hold__', 'did:web:other', 5),
          exp: fc.constantFrom(NOW() + 60, NOW() - 60, NOW() + 99999, 'soon'),
          lxm: fc.constantFrom(undefined, GET_BLOB, ids.HoldGetStats, 5),
          sig: ascii,
        })
        .map(
          (t) =>
            `Bearer ${b64url({ alg: t.alg })}.${b64url({ iss: t.iss, aud: t.aud === '__hold__' ? p.did : t.aud, exp: t.exp, lxm: t.lxm })}.${b64url(t.sig)}`,
        ),
    ),
  )

  const range = fc.option(
    fc.oneof(
      fc.constantFrom(
        'bytes=0-0',
        'bytes=5-',
        'bytes=-3',
        'bytes=999-',
        'bytes=1-2,3-4',
        'bytes=-0',
      ),
      ascii,
    ),
    { nil: undefined },
  )

  /** Sends the query; never a 5xx, every 4xx is {error, message} and counted nothing. */
  const check = async (
    nsid: string,
    params: Record<string, string | undefined>,
    authz: string | null,
    rangeHeader?: string,
  ) => {
    const url = new URL(`/xrpc/${nsid}`, p.url)
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined)
        url.searchParams.set(k, v === '__stored__' ? storedOnP : v)
    }
    const headers: Record<string, string> = {}
    if (authz)
      headers.authorization = authz === '__owner__' ? ownerToken : authz
    if (rangeHeader) headers.range = rangeHeader
    const { pulls, pushes } = p.hold.ctx.stats.totals
    const res = await fetch(url, { headers })
    const text = await res.text()
    expect(res.status, `${url} ${text}`).toBeLessThan(500)
    if (res.status >= 400) {
      const body = JSON.parse(text) as { error: unknown; message: unknown }
      expect(typeof body.error, text).toBe('string')
      expect(typeof body.message, text).toBe('string')
      expect(p.hold.ctx.stats.totals).toMatchObject({ pulls, pushes })
    }
  }

  it('getBlob', async () => {
    await fc.assert(
      fc.asyncProperty(
        did,
        cid,
        fc.option(repo, { nil: undefined }),
        fc.option(fc.oneof(fc.constantFrom('GET', 'HEAD', 'PUT', ''), junk), {
          nil: undefined,
        }),
        authorization,
        range,
        async (d, c, r, m, a, rg) =>
          check(GET_BLOB, { did: d, cid: c, repo: r, method: m }, a, rg),
      ),
      { numRuns: 70 },
    )
  })

  it('getStats', async () => {
    await fc.assert(
      fc.asyncProperty(
        did,
        fc.option(repo, { nil: undefined }),
        authorization,
        async (d, r, a) => check(ids.HoldGetStats, { did: d, repo: r }, a),
      ),
      { numRuns: 40 },
    )
  })

  it('listStats', async () => {
    await fc.assert(
      fc.asyncProperty(
        did,
        fc.option(
          fc.oneof(fc.integer({ min: -5, max: 200 }).map(String), junk),
          { nil: undefined },
        ),
        fc.option(
          fc.oneof(
            repo.map((s) => b64url(s)),
            junk,
          ),
          { nil: undefined },
        ),
        authorization,
        async (d, l, c, a) =>
          check(ids.HoldListStats, { did: d, limit: l, cursor: c }, a),
      ),
      { numRuns: 40 },
    )
  })
})
