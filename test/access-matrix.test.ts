import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  GET_BLOB,
  addCrew,
  expectXrpcError,
  expectZeroStats,
  getStats,
  push,
  sha256Hex,
  snapshot,
  tokenFor,
  type SignedUrlBody as Body,
} from './_access.ts'
import { identity } from './_identity.ts'
import {
  TEST_OWNER,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const STRANGER = 'did:plc:matrixstranger0000000000000'
const READER = 'did:plc:matrixreader00000000000000'
const WRITER = 'did:plc:matrixwriter00000000000000'

const ROLES = [
  'anonymous',
  'stranger',
  'crew(read)',
  'crew(write)',
  'owner',
] as const
type Role = (typeof ROLES)[number]
const DID_OF: Record<Role, string | undefined> = {
  anonymous: undefined,
  stranger: STRANGER,
  'crew(read)': READER,
  'crew(write)': WRITER,
  owner: TEST_OWNER,
}
const slug = (role: Role) => role.replace(/[()]/g, '-').replace(/-$/, '')

const authHeaders = async (
  h: TestHold,
  role: Role,
  lxm = GET_BLOB,
): Promise<Record<string, string>> => {
  const did = DID_OF[role]
  return did ? tokenFor(h, did, lxm) : {}
}

const fetchBytes = async (url: string, init: RequestInit = {}) => {
  const res = await fetch(url, init)
  return { res, bytes: Buffer.from(await res.arrayBuffer()) }
}

describe.each([
  ['public', 'true'],
  ['private', 'false'],
])('access matrix on a %s hold', (visibility, HOLD_PUBLIC) => {
  let h: TestHold
  const stored = randomBytes(4096)
  const storedCid = `sha256:${sha256Hex(stored)}`

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_PUBLIC, HOLD_STATS_FLUSH_MS: '3600000' },
    })
    expect((await pushBlob(h.url, stored, { did: TEST_OWNER })).status).toBe(
      201,
    )
    for (const [did, permissions, role] of [
      [READER, ['blob:read'], 'read'],
      [WRITER, ['blob:read', 'blob:write'], 'write'],
    ] as const) {
      const res = await addCrew(h, did, [...permissions], {
        as: TEST_OWNER,
        role,
      })
      expect(res.status, JSON.stringify(res.body)).toBe(200)
    }
    await identity(STRANGER)
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  const readDenial = (role: Role): [number, string] | undefined => {
    if (visibility === 'public') return undefined
    if (role === 'anonymous') return [401, 'AuthRequired']
    if (role === 'stranger') return [403, 'not a crew member']
    return undefined
  }
  const writeDenial = (role: Role): [number, string] | undefined => {
    if (role === 'anonymous') return [401, 'AuthRequired']
    if (role === 'stranger') return [403, 'not a crew member']
    if (role === 'crew(read)') return [403, 'crew member without blob:write']
    return undefined
  }

  it.each(ROLES)('read as %s: bytes and method=GET', async (role) => {
    const repo = `read/${slug(role)}`
    const headers = await authHeaders(h, role)
    const before = await snapshot(h)
    const plain = await fetch(
      `${h.url}/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=${storedCid}&repo=${repo}`,
      { headers },
    )
    const signed = await xrpc<Body>(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: storedCid, method: 'GET', repo },
      { headers },
    )
    const denial = readDenial(role)
    if (denial) {
      const [status, why] = denial
      const body = { status: plain.status, body: await plain.json() }
      for (const res of [body, signed]) {
        expectXrpcError(
          res,
          status,
          status === 401 ? 'AuthRequired' : 'Forbidden',
        )
        const { message } = res.body as { message: string }
        expect(message).toContain('access denied for blob:read')
        if (status === 403) {
          expect(message).toBe(`access denied for blob:read: ${why}`)
        }
      }
      expect(await snapshot(h)).toEqual(before)
      await expectZeroStats(h, TEST_OWNER, repo)
      return
    }
    expect(plain.status).toBe(200)
    expect(Buffer.compare(Buffer.from(await plain.arrayBuffer()), stored)).toBe(
      0,
    )
    expect(signed.status).toBe(200)
    expect(signed.body.method).toBe('GET')
    const viaUrl = await fetchBytes(signed.body.url)
    expect(viaUrl.res.status).toBe(200)
    expect(Buffer.compare(viaUrl.bytes, stored)).toBe(0)
    const stats = await getStats(h, TEST_OWNER, repo)
    expect([stats.pullCount, stats.pushCount]).toEqual([2, 0])
  })

  it.each(ROLES)('write as %s: method=PUT, then the upload', async (role) => {
    const repo = `write/${slug(role)}`
    const bytes = randomBytes(1000)
    const headers = await authHeaders(h, role)
    const before = await snapshot(h)
    const { signed, upload } = await push(h, bytes, headers, repo)
    const denial = writeDenial(role)
    if (denial) {
      const [status, why] = denial
      expectXrpcError(
        signed,
        status,
        status === 401 ? 'AuthRequired' : 'Forbidden',
      )
      expect(signed.body.message).toContain('access denied for blob:write')
      if (status === 403) {
        expect(signed.body.message).toBe(`access denied for blob:write: ${why}`)
      }
      expect(upload).toBeUndefined()
      expect(await snapshot(h)).toEqual(before)
      await expectZeroStats(h, TEST_OWNER, repo)
      const missing = await xrpc(
        h.url,
        GET_BLOB,
        { did: TEST_OWNER, cid: `sha256:${sha256Hex(bytes)}` },
        { headers: await tokenFor(h, TEST_OWNER, GET_BLOB) },
      )
      expect(missing.status).toBe(404)
      return
    }
    expect(signed.status).toBe(200)
    expect(signed.body.method).toBe('PUT')
    expect(signed.body.url.startsWith(`${h.url}/blobs/sha256/`)).toBe(true)
    expect(upload!.status).toBe(201)
    const back = await xrpc(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: `sha256:${sha256Hex(bytes)}` },
      { headers: await tokenFor(h, TEST_OWNER, GET_BLOB) },
    )
    expect(back.status).toBe(200)
    const stats = await getStats(h, TEST_OWNER, repo)
    expect([stats.pullCount, stats.pushCount]).toEqual([0, 1])
  })

  it('HEAD follows the read rules: method=HEAD and an HTTP HEAD of getBlob', async () => {
    for (const role of ROLES) {
      const headers = await authHeaders(h, role)
      const signed = await xrpc<Body>(
        h.url,
        GET_BLOB,
        { did: TEST_OWNER, cid: storedCid, method: 'HEAD' },
        { headers },
      )
      const head = await fetch(
        `${h.url}/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=${storedCid}`,
        { method: 'HEAD', headers },
      )
      const expected = readDenial(role)?.[0] ?? 200
      expect([signed.status, head.status], role).toEqual([expected, expected])
    }
  })

  it('a URL signed for GET grants no upload: not as issued, not with method changed to PUT', async () => {
    const role: Role = 'crew(read)'
    const signed = await xrpc<Body>(
      h.url,
      GET_BLOB,
      { did: TEST_OWNER, cid: storedCid, method: 'GET', repo: 'url/get' },
      { headers: await authHeaders(h, role) },
    )
    expect(signed.status).toBe(200)
    const before = await snapshot(h)
    const asIs = await fetch(signed.body.url, { method: 'PUT', body: stored })
    expectXrpcError(
      { status: asIs.status, body: await asIs.json() },
      403,
      'Forbidden',
    )
    // Rewritten to PUT a blob this reader could not push.
    const other = randomBytes(700)
    const tampered = new URL(signed.body.url)
    tampered.searchParams.set('method', 'PUT')
    const asPut = await fetch(tampered, { method: 'PUT', body: stored })
    expect(asPut.status).toBe(403)
    await asPut.arrayBuffer()
    tampered.pathname = tampered.pathname.replace(
      /[0-9a-f]{64}$/,
      sha256Hex(other),
    )
    const elsewhere = await fetch(tampered, { method: 'PUT', body: other })
    expect(elsewhere.status).toBe(403)
    await elsewhere.arrayBuffer()
    expect(await snapshot(h)).toEqual(before)
  })

  it('a URL signed for PUT cannot be re-pointed at another repository, caller or blob', async () => {
    const bytes = randomBytes(900)
    const signed = await xrpc<Body>(
      h.url,
      GET_BLOB,
      {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(bytes)}`,
        method: 'PUT',
        repo: 'url/mine',
      },
      { headers: await authHeaders(h, 'crew(write)') },
    )
    expect(signed.status).toBe(200)
    const before = await snapshot(h)
    const edits: [string, (u: URL) => void][] = [
      ['repo', (u) => u.searchParams.set('repo', 'url/theirs')],
      ['no repo', (u) => u.searchParams.delete('repo')],
      ['caller', (u) => u.searchParams.set('caller', TEST_OWNER)],
      ['no caller', (u) => u.searchParams.delete('caller')],
      ['did', (u) => u.searchParams.set('did', STRANGER)],
    ]
    for (const [name, edit] of edits) {
      const u = new URL(signed.body.url)
      edit(u)
      const res = await fetch(u, { method: 'PUT', body: bytes })
      expect(res.status, name).toBe(403)
      await res.arrayBuffer()
    }
    expect(await snapshot(h)).toEqual(before)
    await expectZeroStats(h, TEST_OWNER, 'url/theirs')
    // The URL as issued still works.
    const ok = await fetch(signed.body.url, { method: 'PUT', body: bytes })
    expect(ok.status).toBe(201)
    expect((await getStats(h, TEST_OWNER, 'url/mine')).pushCount).toBe(1)
  })
})
