import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createCid } from '@atproto/lex-data'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CREATE_RECORD,
  CREW,
  DELETE_RECORD,
  GET_BLOB,
  REQUEST_CREW,
  b64url,
  claims,
  expectXrpcError,
  expectZeroStats,
  filesUnder,
  handJwt,
  raw,
  sha256Hex,
  snapshot,
  type RawResult,
} from './_access.ts'
import { bearer, forget, identity, serviceToken } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STRANGER = 'did:plc:hostilestranger000000000000'
const REPO = 'target/app'
const NOW = () => Math.floor(Date.now() / 1000)

let h: TestHold
const stored = randomBytes(2048)
const storedHex = sha256Hex(stored)
const storedCid = `sha256:${storedHex}`
const fresh = randomBytes(512)
const freshHex = sha256Hex(fresh)
let getUrl: URL

/** A query string encoded the way a client would (values percent-encoded). */
const q = (params: Record<string, string> | [string, string][]) =>
  new URLSearchParams(params).toString()

/** getBlob of the stored blob for the target pair, with some parameters replaced or removed. */
const getBlob = (over: Record<string, string | undefined> = {}) => {
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

const send = (
  path: string,
  init: {
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    chunked?: boolean
  } = {},
) => raw(h.url, { path, ...init })

const auth = async (
  iss: string,
  lxm: string,
  more: { exp?: number; aud?: string } = {},
) => bearer({ iss, aud: more.aud ?? h.did, lxm, exp: more.exp })

const jsonTo = async (
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

const crewInput = (record: Record<string, unknown>) =>
  JSON.stringify({ repo: h.did, collection: CREW, record })

const validCrew = (member = 'did:plc:hostilenewmember00000000') => ({
  member,
  role: 'write',
  permissions: ['blob:write'],
  addedAt: new Date().toISOString(),
})

const withAuth = async (
  path: string,
  authorization: string | Promise<string>,
) => send(path, { headers: { authorization: await authorization } })

const token = async (t: string | Promise<string>) => `Bearer ${await t}`

type Row = [string, number, () => Promise<RawResult>]

const big = 'a'.repeat(70 * 1024)

const rows: Row[] = [
  // Malformed DIDs
  ['did "did:"', 400, () => send(getBlob({ did: 'did:' }))],
  [
    'did with an upper-case method',
    400,
    () => send(getBlob({ did: 'did:PLC:x' })),
  ],
  ['did with a space', 400, () => send(getBlob({ did: 'did:plc:x y' }))],
  [
    'did with a control character',
    400,
    () => send(getBlob({ did: 'did:plc:ab\u0007c' })),
  ],
  [
    'did with a NUL byte',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?did=did%3Aplc%3Aab%00c&cid=${storedCid}&repo=${REPO}`,
      ),
  ],
  [
    'did of 3000 characters',
    400,
    () => send(getBlob({ did: `did:plc:${'a'.repeat(3000)}` })),
  ],
  [
    'did with full-width letters',
    400,
    () => send(getBlob({ did: 'did:plc:ａｂｃ' })),
  ],
  ['did missing', 400, () => send(getBlob({ did: undefined }))],
  ['did empty', 400, () => send(getBlob({ did: '' }))],
  // Malformed digests and CIDs
  [
    'digest in upper-case hex',
    400,
    () => send(getBlob({ cid: `sha256:${storedHex.toUpperCase()}` })),
  ],
  [
    'sha512 digest',
    400,
    () => send(getBlob({ cid: `sha512:${'ab'.repeat(64)}` })),
  ],
  [
    'digest naming a path',
    400,
    () => send(getBlob({ cid: 'sha256:../../etc/passwd' })),
  ],
  [
    'percent-encoded ../ as the cid',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=%2e%2e%2f%2e%2e%2fetc%2fpasswd&repo=${REPO}`,
      ),
  ],
  [
    'double-encoded ../ in a digest',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=sha256%3A%252e%252e%252fetc&repo=${REPO}`,
      ),
  ],
  [
    'digest with a NUL byte',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=sha256%3A${storedHex.slice(0, 63)}%00&repo=${REPO}`,
      ),
  ],
  [
    'digest with a Cyrillic lookalike letter',
    400,
    () => send(getBlob({ cid: `sha256:${storedHex.replace(/[a-f]/, 'а')}` })),
  ],
  [
    'digest with full-width digits',
    400,
    () =>
      send(
        getBlob({
          cid: `sha256:${storedHex.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)))}`,
        }),
      ),
  ],
  [
    'digest of 63 hex characters',
    400,
    () => send(getBlob({ cid: `sha256:${storedHex.slice(1)}` })),
  ],
  [
    'digest of 65 hex characters',
    400,
    () => send(getBlob({ cid: `sha256:${storedHex}0` })),
  ],
  [
    'CIDv0',
    400,
    () =>
      send(getBlob({ cid: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' })),
  ],
  [
    'CIDv1 with a blake2b-256 multihash',
    400,
    () =>
      send(
        getBlob({
          cid: createCid(
            0x55,
            0xb220,
            Buffer.from(storedHex, 'hex'),
          ).toString(),
        }),
      ),
  ],
  [
    'CIDv1 with a truncated sha256',
    400,
    () =>
      send(
        getBlob({
          cid: createCid(
            0x55,
            0x12,
            Buffer.from(storedHex.slice(0, 32), 'hex'),
          ).toString(),
        }),
      ),
  ],
  ['cid that is not a CID', 400, () => send(getBlob({ cid: 'bafynotacid' }))],
  [
    'cid of 5000 characters',
    400,
    () => send(getBlob({ cid: 'b'.repeat(5000) })),
  ],
  // Repositories
  ['repo in upper case', 400, () => send(getBlob({ repo: 'Target/App' }))],
  ['repo ".."', 400, () => send(getBlob({ repo: '..' }))],
  ['repo "/"', 400, () => send(getBlob({ repo: '/' }))],
  [
    'repo with a .. component',
    400,
    () => send(getBlob({ repo: 'target/../app' })),
  ],
  [
    'repo of 257 characters',
    400,
    () => send(getBlob({ repo: 'a'.repeat(257) })),
  ],
  [
    'repo of 5000 characters',
    400,
    () => send(getBlob({ repo: 'a'.repeat(5000) })),
  ],
  ['repo that is an emoji', 400, () => send(getBlob({ repo: '🐳' }))],
  ['repo with a newline', 400, () => send(getBlob({ repo: 'target/app\n' }))],
  // Repeated and oversized parameters
  [
    'did given twice',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['did', STRANGER],
          ['cid', storedCid],
          ['repo', REPO],
        ])}`,
      ),
  ],
  [
    'cid given twice',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['cid', storedCid],
          ['repo', REPO],
        ])}`,
      ),
  ],
  [
    'repo given twice',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['repo', REPO],
          ['repo', 'other/app'],
        ])}`,
      ),
  ],
  [
    'method given twice',
    400,
    () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['repo', REPO],
          ['method', 'GET'],
          ['method', 'PUT'],
        ])}`,
      ),
  ],
  [
    'a query string over 8 KiB',
    400,
    () => send(`${getBlob()}&pad=${'x'.repeat(9000)}`),
  ],
  // Method values
  ['method "get"', 400, () => send(getBlob({ method: 'get' }))],
  ['method "DELETE"', 400, () => send(getBlob({ method: 'DELETE' }))],
  ['method "PUTT"', 400, () => send(getBlob({ method: 'PUTT' }))],
  // Nothing to serve
  [
    'an unsatisfiable Range',
    416,
    () => send(getBlob(), { headers: { range: 'bytes=999999-' } }),
  ],
  [
    'a blob the hold does not have',
    404,
    () => send(getBlob({ cid: `sha256:${freshHex}` })),
  ],
  [
    'method=GET for a blob the hold does not have',
    404,
    () => send(getBlob({ cid: `sha256:${freshHex}`, method: 'GET' })),
  ],
  // Wrong HTTP methods
  [
    'POST to getBlob',
    400,
    () => send(getBlob(), { method: 'POST', body: '{}' }),
  ],
  [
    'PUT to getBlob',
    400,
    () => send(getBlob({ method: 'PUT' }), { method: 'PUT', body: fresh }),
  ],
  ['DELETE to getBlob', 400, () => send(getBlob(), { method: 'DELETE' })],
  ['GET to requestCrew', 400, () => send(`/xrpc/${REQUEST_CREW}`)],
  [
    'GET to createRecord',
    400,
    () =>
      send(
        `/xrpc/${CREATE_RECORD}?${q({ repo: TEST_OWNER, collection: CREW })}`,
      ),
  ],
  ['GET to deleteRecord', 400, () => send(`/xrpc/${DELETE_RECORD}`)],
  [
    'POST to getStats',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.getStats?${q({ did: TEST_OWNER, repo: REPO })}`,
        { method: 'POST' },
      ),
  ],
  // Procedure bodies
  [
    'createRecord with a body that is not JSON',
    400,
    () => jsonTo(CREATE_RECORD, '{"repo":', { as: TEST_OWNER }),
  ],
  [
    'createRecord with a JSON array',
    400,
    () =>
      jsonTo(CREATE_RECORD, `[${crewInput(validCrew())}]`, { as: TEST_OWNER }),
  ],
  [
    'createRecord with a body over 64 KiB',
    413,
    () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), pad: big }), {
        as: TEST_OWNER,
      }),
  ],
  [
    'createRecord with a chunked body over 64 KiB',
    413,
    () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), pad: big }), {
        as: TEST_OWNER,
        chunked: true,
      }),
  ],
  [
    'createRecord as text/plain',
    400,
    () =>
      jsonTo(CREATE_RECORD, crewInput(validCrew()), {
        as: TEST_OWNER,
        type: 'text/plain',
      }),
  ],
  [
    'createRecord with no body',
    400,
    () => jsonTo(CREATE_RECORD, '', { as: TEST_OWNER }),
  ],
  [
    'createRecord with a float in the record',
    400,
    () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), weight: 1.5 }), {
        as: TEST_OWNER,
      }),
  ],
  [
    'createRecord with an integer beyond 2^53',
    400,
    () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), weight: 2 ** 60 }), {
        as: TEST_OWNER,
      }),
  ],
  [
    'createRecord naming another account’s repo',
    404,
    () =>
      jsonTo(
        CREATE_RECORD,
        JSON.stringify({
          repo: STRANGER,
          collection: CREW,
          record: validCrew(),
        }),
        { as: TEST_OWNER },
      ),
  ],
  [
    'requestCrew with a body that is not JSON',
    400,
    () => jsonTo(REQUEST_CREW, 'role=member', { as: STRANGER }),
  ],
  [
    'requestCrew with a chunked body that is not JSON',
    400,
    () => jsonTo(REQUEST_CREW, 'role=member', { as: STRANGER, chunked: true }),
  ],
  [
    'requestCrew asking for crew:admin in a chunked body',
    400,
    () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: ['crew:admin'] }), {
        as: STRANGER,
        chunked: true,
      }),
  ],
  [
    'requestCrew with a JSON array',
    400,
    () => jsonTo(REQUEST_CREW, '[]', { as: STRANGER }),
  ],
  [
    'requestCrew with a body over 64 KiB',
    413,
    () => jsonTo(REQUEST_CREW, JSON.stringify({ role: big }), { as: STRANGER }),
  ],
  [
    'requestCrew asking for crew:admin',
    400,
    () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: ['crew:admin'] }), {
        as: STRANGER,
      }),
  ],
  [
    'requestCrew with permissions that are not an array',
    400,
    () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: 'blob:write' }), {
        as: STRANGER,
      }),
  ],
  [
    'deleteRecord with a body that is not JSON',
    400,
    () => jsonTo(DELETE_RECORD, 'nope', { as: TEST_OWNER }),
  ],
  [
    'deleteRecord with an rkey that is not a record key',
    400,
    () =>
      jsonTo(
        DELETE_RECORD,
        JSON.stringify({ repo: h.did, collection: CREW, rkey: '../..' }),
        { as: TEST_OWNER },
      ),
  ],
  // Blob URL paths
  [
    'a blob URL climbing out with ../',
    404,
    () => send('/blobs/sha256/../../etc/passwd'),
  ],
  [
    'a blob URL with an encoded ../',
    400,
    () => send('/blobs/sha256/..%2F..%2Fetc%2Fpasswd'),
  ],
  [
    'a blob URL in upper-case hex',
    400,
    () => send(`/blobs/sha256/${storedHex.toUpperCase()}${getUrl.search}`),
  ],
  [
    'a blob URL of 63 hex characters',
    400,
    () => send(`/blobs/sha256/${storedHex.slice(1)}${getUrl.search}`),
  ],
  [
    'a blob URL with a NUL byte',
    400,
    () => send(`/blobs/sha256/${storedHex.slice(1)}%00${getUrl.search}`),
  ],
  [
    'a blob URL without a signature',
    403,
    () =>
      send(
        `/blobs/sha256/${storedHex}?method=GET&did=${TEST_OWNER}&exp=${NOW() + 600}`,
      ),
  ],
  [
    'a blob URL with a bad signature',
    403,
    () =>
      send(
        `/blobs/sha256/${storedHex}?method=GET&did=${TEST_OWNER}&exp=${NOW() + 600}&sig=AAAA`,
      ),
  ],
  [
    'an upload to a blob URL without a query',
    403,
    () => send(`/blobs/sha256/${freshHex}`, { method: 'PUT', body: fresh }),
  ],
  [
    'an upload to a GET URL re-pointed at another blob',
    403,
    () =>
      send(
        `/blobs/sha256/${freshHex}${getUrl.search.replace('method=GET', 'method=PUT')}`,
        { method: 'PUT', body: fresh },
      ),
  ],
  // Tokens (a PUT URL and a counted pull would follow from any of them)
  [
    'a PUT without credentials',
    401,
    () => send(getBlob({ cid: `sha256:${freshHex}`, method: 'PUT' })),
  ],
  [
    'a Basic credential',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        'Basic b3duZXI6b3duZXI=',
      ),
  ],
  [
    'a garbage bearer token',
    401,
    () => withAuth(getBlob(), 'Bearer not-a-jwt'),
  ],
  [
    'an expired token',
    401,
    () =>
      withAuth(
        getBlob(),
        token(serviceToken({ iss: TEST_OWNER, aud: h.did, exp: NOW() - 10 })),
      ),
  ],
  [
    'a token for another hold',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(serviceToken({ iss: TEST_OWNER, aud: 'did:web:hold.example' })),
      ),
  ],
  [
    'a token for another method',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(serviceToken({ iss: TEST_OWNER, aud: h.did, lxm: REQUEST_CREW })),
      ),
  ],
  [
    'a token valid for two hours',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(serviceToken({ iss: TEST_OWNER, aud: h.did, exp: NOW() + 7200 })),
      ),
  ],
  [
    'a forged owner token',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        (async () =>
          token(
            serviceToken({
              iss: TEST_OWNER,
              aud: h.did,
              keypair: await Secp256k1Keypair.create(),
            }),
          ))(),
      ),
  ],
  [
    'an alg none owner token',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        `Bearer ${b64url({ alg: 'none' })}.${b64url(claims({ iss: TEST_OWNER, aud: h.did }))}.`,
      ),
  ],
  [
    'an HS256 owner token',
    401,
    () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(
          handJwt({ alg: 'HS256' }, claims({ iss: TEST_OWNER, aud: h.did }), {
            hmac: h.did,
          }),
        ),
      ),
  ],
  [
    'a token from an issuer the directory does not know',
    401,
    async () => {
      const gone = 'did:plc:hostilegone000000000000000'
      const t = await serviceToken({ iss: gone, aud: h.did })
      forget(gone)
      return withAuth(getBlob(), token(t))
    },
  ],
  [
    'a token whose iss is not a DID',
    401,
    () =>
      withAuth(
        getBlob(),
        (async () =>
          token(
            handJwt({ alg: 'ES256K' }, claims({ iss: 'owner', aud: h.did }), {
              keypair: await identity(TEST_OWNER),
            }),
          ))(),
      ),
  ],
  [
    'createRecord with a getBlob token',
    401,
    async () =>
      send(`/xrpc/${CREATE_RECORD}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(await auth(TEST_OWNER, GET_BLOB)),
        },
        body: crewInput(validCrew()),
      }),
  ],
  [
    'createRecord with an expired owner token',
    401,
    async () =>
      send(`/xrpc/${CREATE_RECORD}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(await auth(TEST_OWNER, CREATE_RECORD, { exp: NOW() - 5 })),
        },
        body: crewInput(validCrew()),
      }),
  ],
  [
    'requestCrew without a token',
    401,
    () => send(`/xrpc/${REQUEST_CREW}`, { method: 'POST' }),
  ],
  // Stats queries
  [
    'getStats with a bad did',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.getStats?${q({ did: 'did:plc:x y', repo: REPO })}`,
      ),
  ],
  [
    'getStats without repo',
    400,
    () => send(`/xrpc/io.atcr.hold.getStats?${q({ did: TEST_OWNER })}`),
  ],
  [
    'getStats with an upper-case repo',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.getStats?${q({ did: TEST_OWNER, repo: 'Target/App' })}`,
      ),
  ],
  [
    'listStats with limit 0',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.listStats?${q({ did: TEST_OWNER, limit: '0' })}`,
      ),
  ],
  [
    'listStats with limit 101',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.listStats?${q({ did: TEST_OWNER, limit: '101' })}`,
      ),
  ],
  [
    'listStats with limit 1e2',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.listStats?${q({ did: TEST_OWNER, limit: '1e2' })}`,
      ),
  ],
  [
    'listStats with a cursor it never issued',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.listStats?${q({ did: TEST_OWNER, cursor: '!!!' })}`,
      ),
  ],
  [
    'listStats with a cursor naming ../',
    400,
    () =>
      send(
        `/xrpc/io.atcr.hold.listStats?${q({ did: TEST_OWNER, cursor: b64url('../x') })}`,
      ),
  ],
]

describe('hostile requests: each gets a 4xx JSON error and counts and writes nothing', () => {
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
    await h.stop()
    await removeDir(h.dataDir)
  })

  it.each(rows)('%s → %i', async (_name, status, request) => {
    const before = await snapshot(h)
    const res = await request()
    expectXrpcError(res, status)
    expect(await snapshot(h)).toEqual(before)
    await expectZeroStats(h, TEST_OWNER, REPO)
    expect(await filesUnder(join(h.dataDir, 'blobs', 'tmp'))).toEqual([])
  })

  it('served the target pair normally all along (the rows were refused for their defect alone)', async () => {
    const res = await send(getBlob())
    expect(res.status).toBe(200)
    const stats = await xrpc<{ pullCount: number }>(
      h.url,
      'io.atcr.hold.getStats',
      {
        did: TEST_OWNER,
        repo: REPO,
      },
    )
    expect(stats.body.pullCount).toBe(1)
  })
})

describe('limits and headers', () => {
  let small: TestHold
  const body = randomBytes(3000)

  beforeAll(async () => {
    small = await startHold({
      env: { HOLD_MAX_BLOB_BYTES: '1000', HOLD_STATS_FLUSH_MS: '3600000' },
    })
    expect((await pushBlob(small.url, body.subarray(0, 1000))).status).toBe(201)
  })
  afterAll(async () => {
    await small.stop()
    await removeDir(small.dataDir)
  })

  const headersOf = (res: { headers: Headers }) => ({
    nosniff: res.headers.get('x-content-type-options'),
    disposition: res.headers.get('content-disposition'),
    csp: res.headers.get('content-security-policy'),
  })

  it('sends blobs with nosniff, content-disposition: attachment and a sandbox CSP, however they are fetched', async () => {
    const cid = `sha256:${sha256Hex(body.subarray(0, 1000))}`
    const base = `${small.url}/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=${cid}`
    const signed = await xrpc<{ url: string }>(small.url, GET_BLOB, {
      did: TEST_OWNER,
      cid,
      method: 'GET',
    })
    const responses = [
      await fetch(base),
      await fetch(base, { method: 'HEAD' }),
      await fetch(base, { headers: { range: 'bytes=10-20' } }),
      await fetch(signed.body.url),
      await fetch(signed.body.url, { headers: { range: 'bytes=0-0' } }),
    ]
    for (const res of responses) {
      await res.arrayBuffer()
      expect(res.status).toBeLessThan(300)
      const h = headersOf(res)
      expect(h.nosniff).toBe('nosniff')
      expect(h.disposition).toMatch(/^attachment/)
      expect(h.csp).toMatch(/sandbox/)
      expect(h.csp).toMatch(/default-src 'none'/)
    }
  })

  const uploadUrl = async (bytes: Uint8Array, repo = 'limits/app') => {
    const signed = await xrpc<{ url: string }>(
      small.url,
      GET_BLOB,
      {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(bytes)}`,
        method: 'PUT',
        repo,
      },
      {
        headers: await bearer({
          iss: TEST_OWNER,
          aud: small.did,
          lxm: GET_BLOB,
        }),
      },
    )
    expect(signed.status).toBe(200)
    return new URL(signed.body.url)
  }

  it.each([
    ['with content-length', false],
    ['chunked, without content-length', true],
  ])(
    'refuses an upload over HOLD_MAX_BLOB_BYTES %s with 413 and stores nothing',
    async (_name, chunked) => {
      const bytes = body.subarray(0, 1001 + (chunked ? 1500 : 0))
      const url = await uploadUrl(bytes)
      const before = await snapshot(small)
      const res = await raw(small.url, {
        method: 'PUT',
        path: url.pathname + url.search,
        body: Buffer.from(bytes),
        chunked,
      })
      expectXrpcError(res, 413, 'PayloadTooLarge')
      expect(await snapshot(small)).toEqual(before)
      expect(await filesUnder(join(small.dataDir, 'blobs', 'tmp'))).toEqual([])
      await expectZeroStats(small, TEST_OWNER, 'limits/app')
      const missing = await xrpc(small.url, GET_BLOB, {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(bytes)}`,
      })
      expect(missing.status).toBe(404)
    },
  )

  it('takes an upload of exactly HOLD_MAX_BLOB_BYTES, chunked', async () => {
    const bytes = randomBytes(1000)
    const url = await uploadUrl(bytes, 'limits/exact')
    const res = await raw(small.url, {
      method: 'PUT',
      path: url.pathname + url.search,
      body: bytes,
      chunked: true,
    })
    expect(res.status).toBe(201)
    expect(
      (
        await xrpc<{ pushCount: number }>(small.url, 'io.atcr.hold.getStats', {
          did: TEST_OWNER,
          repo: 'limits/exact',
        })
      ).body.pushCount,
    ).toBe(1)
  })

  it('answers a CORS preflight and a cross-origin GET of getStats with access-control-allow-origin: *', async () => {
    const path = `${small.url}/xrpc/io.atcr.hold.getStats?did=${TEST_OWNER}&repo=limits/app`
    const preflight = await fetch(path, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://atcr.example',
        'access-control-request-method': 'GET',
      },
    })
    expect(preflight.status).toBeLessThan(300)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*')
    expect(preflight.headers.get('access-control-allow-methods')).toContain(
      'GET',
    )
    const get = await fetch(path, {
      headers: { origin: 'https://atcr.example' },
    })
    expect(get.status).toBe(200)
    expect(get.headers.get('access-control-allow-origin')).toBe('*')
    const error = await fetch(`${small.url}/xrpc/io.atcr.hold.getStats?did=x`, {
      headers: { origin: 'https://atcr.example' },
    })
    expect(error.status).toBe(400)
    expect(error.headers.get('access-control-allow-origin')).toBe('*')
  })
})

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
          lxm: fc.constantFrom(undefined, GET_BLOB, 'io.atcr.hold.getStats', 5),
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
        async (d, r, a) =>
          check('io.atcr.hold.getStats', { did: d, repo: r }, a),
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
          check('io.atcr.hold.listStats', { did: d, limit: l, cursor: c }, a),
      ),
      { numRuns: 40 },
    )
  })
})
