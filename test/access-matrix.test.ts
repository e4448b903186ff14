import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CREATE_RECORD,
  CREW,
  DELETE_RECORD,
  GET_BLOB,
  REQUEST_CREW,
  addCrew,
  awayFromMinuteBoundary,
  expectXrpcError,
  expectZeroStats,
  getStats,
  latestRev,
  raw,
  removeCrew,
  sha256Hex,
  snapshot,
  tokenFor,
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
const ADMIN = 'did:plc:matrixadmin000000000000000'

type BlobUrl = { url: string; method: string; expiresAt: string }
type Body = BlobUrl & { error?: string; message?: string }

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

const jsonPost = async (
  h: TestHold,
  nsid: string,
  body: unknown,
  headers: Record<string, string>,
) =>
  xrpc<Record<string, unknown> & { error?: string; message?: string }>(
    h.url,
    nsid,
    {},
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    },
  )

const crewRecord = async (h: TestHold, member: string) =>
  xrpc<{ value: { member: string; role: string; permissions: string[] } }>(
    h.url,
    'com.atproto.repo.getRecord',
    { repo: h.did, collection: CREW, rkey: member },
  )

const listCrew = async (h: TestHold) =>
  (
    await xrpc<{ records: { value: { member: string } }[] }>(
      h.url,
      'com.atproto.repo.listRecords',
      { repo: h.did, collection: CREW, limit: 100 },
    )
  ).body.records.map((r) => r.value.member)

/** Asks for a PUT URL as `headers` and uploads `bytes` through it. */
const push = async (
  h: TestHold,
  bytes: Uint8Array,
  headers: Record<string, string>,
  repo?: string,
) => {
  const signed = await xrpc<Body>(
    h.url,
    GET_BLOB,
    {
      did: TEST_OWNER,
      cid: `sha256:${sha256Hex(bytes)}`,
      method: 'PUT',
      repo,
    },
    { headers },
  )
  if (signed.status !== 200) return { signed, upload: undefined }
  const upload = await fetch(signed.body.url, { method: 'PUT', body: bytes })
  await upload.arrayBuffer()
  return { signed, upload }
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

describe('crew: requestCrew, createRecord and deleteRecord', () => {
  let open: TestHold
  let closed: TestHold

  beforeAll(async () => {
    ;[open, closed] = await Promise.all([
      startHold({
        env: {
          HOLD_ALLOW_ALL_CREW: 'true',
          HOLD_PUBLIC: 'false',
          HOLD_STATS_FLUSH_MS: '3600000',
        },
      }),
      startHold({
        env: { HOLD_PUBLIC: 'false', HOLD_STATS_FLUSH_MS: '3600000' },
      }),
    ])
    const res = await addCrew(open, ADMIN, ['crew:admin', 'blob:read'], {
      as: TEST_OWNER,
      role: 'admin',
    })
    expect(res.status).toBe(200)
  })
  afterAll(async () => {
    await Promise.all([open.stop(), closed.stop()])
    await Promise.all([removeDir(open.dataDir), removeDir(closed.dataDir)])
  })

  const requestCrew = async (
    h: TestHold,
    did: string | undefined,
    body?: unknown,
  ) =>
    xrpc<{ status?: string; uri?: string; error?: string; message?: string }>(
      h.url,
      REQUEST_CREW,
      {},
      {
        method: 'POST',
        headers: {
          ...(did ? await tokenFor(h, did, REQUEST_CREW) : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      },
    )

  const canPush = async (h: TestHold, did: string) => {
    const { signed, upload } = await push(
      h,
      randomBytes(64),
      await tokenFor(h, did, GET_BLOB),
    )
    return signed.status === 200 && upload?.status === 201
  }

  it('requestCrew on an allowAllCrew hold creates a crew record with blob:read and blob:write, then answers already_member', async () => {
    const did = 'did:plc:crewnewbie00000000000000000'
    await identity(did)
    expect(await canPush(open, did)).toBe(false)
    const first = await requestCrew(open, did)
    expect(first.status).toBe(200)
    expect(first.body.status).toBe('created')
    expect(first.body.uri).toBe(`at://${open.did}/${CREW}/${did}`)
    const record = await crewRecord(open, did)
    expect(record.status).toBe(200)
    expect(record.body.value.member).toBe(did)
    expect(record.body.value.permissions.sort()).toEqual([
      'blob:read',
      'blob:write',
    ])
    expect(await canPush(open, did)).toBe(true)
    const rev = await latestRev(open)
    const again = await requestCrew(open, did)
    expect(again.status).toBe(200)
    expect(again.body.status).toBe('already_member')
    expect(await latestRev(open)).toBe(rev)
  })

  it('requestCrew called many times at once by one DID creates exactly one record', async () => {
    const did = 'did:plc:crewconcurrent0000000000000'
    await identity(did)
    const revBefore = await latestRev(open)
    const results = await Promise.all(
      Array.from({ length: 8 }, () => requestCrew(open, did)),
    )
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200))
    expect(results.map((r) => r.body.status).sort()).toEqual([
      ...Array(7).fill('already_member'),
      'created',
    ])
    expect((await listCrew(open)).filter((m) => m === did)).toEqual([did])
    expect((await latestRev(open)) > revBefore).toBe(true)
  })

  it('requestCrew may ask for blob:read alone, and then cannot push', async () => {
    const did = 'did:plc:crewreadonly0000000000000000'
    await identity(did)
    const res = await requestCrew(open, did, {
      role: 'read',
      permissions: ['blob:read'],
    })
    expect(res.body.status).toBe('created')
    expect((await crewRecord(open, did)).body.value.permissions).toEqual([
      'blob:read',
    ])
    expect(await canPush(open, did)).toBe(false)
  })

  it('requestCrew reads a chunked body too: blob:read asked for without content-length grants blob:read alone', async () => {
    const did = 'did:plc:crewchunked00000000000000000'
    await identity(did)
    const res = await raw(open.url, {
      method: 'POST',
      path: `/xrpc/${REQUEST_CREW}`,
      headers: {
        'content-type': 'application/json',
        ...(await tokenFor(open, did, REQUEST_CREW)),
      },
      body: JSON.stringify({ role: 'read', permissions: ['blob:read'] }),
      chunked: true,
    })
    expect(res.status, res.text).toBe(200)
    const record = await crewRecord(open, did)
    expect(record.body.value.permissions).toEqual(['blob:read'])
    expect(record.body.value.role).toBe('read')
    expect(await canPush(open, did)).toBe(false)
  })

  it('requestCrew refuses crew:admin (400), no token (401) and a closed hold (403 RegistrationDisabled), writing nothing', async () => {
    const did = 'did:plc:crewrefused00000000000000000'
    await identity(did)
    for (const [h, caller, body, status, error] of [
      [open, did, { permissions: ['crew:admin'] }, 400, 'InvalidRequest'],
      [
        open,
        did,
        { permissions: ['blob:read', 'crew:admin'] },
        400,
        'InvalidRequest',
      ],
      [open, did, { role: 'owner' }, 400, 'InvalidRequest'],
      [open, did, { permissions: [] }, 400, 'InvalidRequest'],
      [open, undefined, undefined, 401, 'AuthRequired'],
      [closed, did, undefined, 403, 'RegistrationDisabled'],
    ] as const) {
      const before = await snapshot(h)
      const res = await requestCrew(h, caller, body)
      expectXrpcError(res, status, error)
      expect(await snapshot(h)).toEqual(before)
      expect(await listCrew(h)).not.toContain(did)
    }
  })

  it('the owner answers already_member to requestCrew, even on a closed hold', async () => {
    const res = await requestCrew(closed, TEST_OWNER)
    expect(res.status).toBe(200)
    expect(res.body.status).toBe('already_member')
  })

  it('the owner and a crew:admin member add and remove crew; removal takes write access away at once', async () => {
    const viaAdmin = 'did:plc:crewbyadmin0000000000000000'
    const added = await addCrew(open, viaAdmin, ['blob:read', 'blob:write'], {
      as: ADMIN,
    })
    expect(added.status, JSON.stringify(added.body)).toBe(200)
    expect(added.body.uri).toBe(`at://${open.did}/${CREW}/${viaAdmin}`)
    expect(await canPush(open, viaAdmin)).toBe(true)
    const removed = await removeCrew(open, viaAdmin, { as: ADMIN })
    expect(removed.status).toBe(200)
    expect(await canPush(open, viaAdmin)).toBe(false)
    expect((await crewRecord(open, viaAdmin)).status).toBe(404)

    const viaOwner = 'did:plc:crewbyowner0000000000000000'
    expect(
      (await addCrew(open, viaOwner, ['blob:write'], { as: TEST_OWNER }))
        .status,
    ).toBe(200)
    expect(await canPush(open, viaOwner)).toBe(true)
    expect((await removeCrew(open, viaOwner, { as: TEST_OWNER })).status).toBe(
      200,
    )
    const denied = await push(
      open,
      randomBytes(10),
      await tokenFor(open, viaOwner, GET_BLOB),
    )
    expectXrpcError(denied.signed, 403, 'Forbidden')
    expect(denied.signed.body.message).toBe(
      'access denied for blob:write: not a crew member',
    )
  })

  it('a change of permissions applies at once: write taken away by rewriting the record', async () => {
    const did = 'did:plc:crewdowngraded000000000000'
    await addCrew(open, did, ['blob:read', 'blob:write'], { as: TEST_OWNER })
    expect(await canPush(open, did)).toBe(true)
    await addCrew(open, did, ['blob:read'], { as: TEST_OWNER, role: 'read' })
    expect(await canPush(open, did)).toBe(false)
  })

  it('a plain crew member, a stranger and an anonymous caller may not add or remove crew', async () => {
    const member = 'did:plc:crewplain00000000000000000'
    await addCrew(open, member, ['blob:read', 'blob:write'], { as: TEST_OWNER })
    const target = 'did:plc:crewtarget0000000000000000'
    await identity(target)
    const callers: [string | undefined, number, string][] = [
      [
        member,
        403,
        'access denied for crew:admin: crew member without crew:admin',
      ],
      [STRANGER, 403, 'access denied for crew:admin: not a crew member'],
      [undefined, 401, 'access denied for crew:admin'],
    ]
    await identity(STRANGER)
    for (const [caller, status, message] of callers) {
      const before = await snapshot(open)
      const headers = (nsid: string) =>
        caller ? tokenFor(open, caller, nsid) : Promise.resolve({})
      const create = await jsonPost(
        open,
        CREATE_RECORD,
        {
          repo: open.did,
          collection: CREW,
          record: {
            member: target,
            role: 'write',
            permissions: ['blob:write'],
            addedAt: new Date().toISOString(),
          },
        },
        await headers(CREATE_RECORD),
      )
      expectXrpcError(create, status)
      expect(create.body.message).toContain(message)
      const del = await jsonPost(
        open,
        DELETE_RECORD,
        { repo: open.did, collection: CREW, rkey: member },
        await headers(DELETE_RECORD),
      )
      expectXrpcError(del, status)
      expect(await snapshot(open)).toEqual(before)
    }
    expect(await listCrew(open)).not.toContain(target)
    expect(await listCrew(open)).toContain(member)
  })

  it.each(['io.atcr.hold.captain', 'io.atcr.hold.stats', 'app.bsky.feed.post'])(
    'nobody, not even the owner, writes %s through createRecord or deleteRecord (403)',
    async (collection) => {
      const before = await snapshot(open)
      const create = await jsonPost(
        open,
        CREATE_RECORD,
        {
          repo: open.did,
          collection,
          rkey: 'self',
          record: {
            $type: collection,
            owner: TEST_OWNER,
            public: true,
            allowAllCrew: true,
            enableBlueskyPosts: false,
            deployedAt: new Date().toISOString(),
            text: 'hello',
            createdAt: new Date().toISOString(),
          },
        },
        await tokenFor(open, TEST_OWNER, CREATE_RECORD),
      )
      expectXrpcError(create, 403, 'Forbidden')
      const del = await jsonPost(
        open,
        DELETE_RECORD,
        { repo: open.did, collection, rkey: 'self' },
        await tokenFor(open, TEST_OWNER, DELETE_RECORD),
      )
      expectXrpcError(del, 403, 'Forbidden')
      expect(await snapshot(open)).toEqual(before)
    },
  )

  it('refuses crew records that fail the io.atcr.hold.crew lexicon, or keyed by anything but the member DID (400)', async () => {
    const now = new Date().toISOString()
    const member = 'did:plc:crewinvalid0000000000000000'
    const good = {
      member,
      role: 'write',
      permissions: ['blob:write'],
      addedAt: now,
    }
    const cases: [string, Record<string, unknown>][] = [
      ['no permissions', { record: { ...good, permissions: undefined } }],
      [
        'permissions a string',
        { record: { ...good, permissions: 'blob:write' } },
      ],
      ['member not a DID', { record: { ...good, member: 'alice' } }],
      ['no member', { record: { ...good, member: undefined } }],
      ['addedAt not a datetime', { record: { ...good, addedAt: 'yesterday' } }],
      ['role a number', { record: { ...good, role: 7 } }],
      ['record an array', { record: [good] }],
      ['record missing', {}],
      [
        'rkey another DID',
        { record: good, rkey: 'did:plc:someoneelse0000000000' },
      ],
      ['rkey not a record key', { record: good, rkey: '../etc' }],
    ]
    for (const [name, input] of cases) {
      const before = await snapshot(open)
      const res = await jsonPost(
        open,
        CREATE_RECORD,
        { repo: open.did, collection: CREW, ...input },
        await tokenFor(open, TEST_OWNER, CREATE_RECORD),
      )
      expectXrpcError(res, 400, 'InvalidRequest')
      expect(await snapshot(open), name).toEqual(before)
    }
    expect(await listCrew(open)).not.toContain(member)
  })

  it('answers RepoNotFound for another repo and 400 for one that is not a DID', async () => {
    const record = {
      member: 'did:plc:crewotherrepo000000000000',
      role: 'write',
      permissions: ['blob:write'],
      addedAt: new Date().toISOString(),
    }
    const auth = await tokenFor(open, TEST_OWNER, CREATE_RECORD)
    const other = await jsonPost(
      open,
      CREATE_RECORD,
      { repo: TEST_OWNER, collection: CREW, record },
      auth,
    )
    expectXrpcError(other, 404, 'RepoNotFound')
    const bad = await jsonPost(
      open,
      CREATE_RECORD,
      { repo: 'not a repo', collection: CREW, record },
      auth,
    )
    expectXrpcError(bad, 400, 'InvalidRequest')
  })

  it('a crew:admin member may not change or remove the owner’s crew record', async () => {
    const before = await snapshot(open)
    const change = await addCrew(open, TEST_OWNER, ['blob:read'], {
      as: ADMIN,
      role: 'read',
    })
    expectXrpcError(change, 403, 'Forbidden')
    const del = await removeCrew(open, TEST_OWNER, { as: ADMIN })
    expectXrpcError(del, 403, 'Forbidden')
    expect(await snapshot(open)).toEqual(before)
    expect(await listCrew(open)).toContain(TEST_OWNER)
  })

  it('deleting a crew member that does not exist succeeds and writes nothing', async () => {
    const before = await snapshot(open)
    const res = await removeCrew(open, 'did:plc:crewnobody00000000000000000', {
      as: TEST_OWNER,
    })
    expect(res.status).toBe(200)
    expect(await snapshot(open)).toEqual(before)
  })
})

describe('count limit: HOLD_STATS_MAX_PER_MINUTE=5', () => {
  const env = { HOLD_STATS_MAX_PER_MINUTE: '5', HOLD_STATS_FLUSH_MS: '3600000' }
  let plain: TestHold
  let proxied: TestHold
  let unproxied: TestHold
  const blob = randomBytes(256)
  const cid = `sha256:${sha256Hex(blob)}`

  beforeAll(async () => {
    ;[plain, proxied, unproxied] = await Promise.all([
      startHold({ env }),
      startHold({
        env: { ...env, HOLD_TRUSTED_PROXY_HEADER: 'fly-client-ip' },
      }),
      startHold({ env }),
    ])
    for (const h of [plain, proxied, unproxied]) {
      expect((await pushBlob(h.url, blob, { did: TEST_OWNER })).status).toBe(
        201,
      )
    }
  })
  afterAll(async () => {
    await Promise.all([plain.stop(), proxied.stop(), unproxied.stop()])
    await Promise.all(
      [plain, proxied, unproxied].map((h) => removeDir(h.dataDir)),
    )
  })

  const pull = (h: TestHold, repo: string, headers: Record<string, string>) =>
    xrpc(h.url, GET_BLOB, { did: TEST_OWNER, cid, repo }, { headers })

  it('counts 5 of 8 pulls from one anonymous client, serves all 8 and reports 3 dropped', async () => {
    await awayFromMinuteBoundary()
    const dropped = plain.hold.ctx.limiter.dropped
    const results = []
    for (let i = 0; i < 8; i++) results.push(await pull(plain, 'lim/anon', {}))
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200))
    expect((await getStats(plain, TEST_OWNER, 'lim/anon')).pullCount).toBe(5)
    expect(plain.hold.ctx.limiter.dropped - dropped).toBe(3)
  })

  it('gives each authenticated caller its own 5', async () => {
    await awayFromMinuteBoundary()
    const a = 'did:plc:limitcallera000000000000'
    const b = 'did:plc:limitcallerb000000000000'
    const dropped = plain.hold.ctx.limiter.dropped
    for (let i = 0; i < 8; i++) {
      for (const did of [a, b]) {
        const res = await pull(
          plain,
          'lim/authed',
          await tokenFor(plain, did, GET_BLOB),
        )
        expect(res.status).toBe(200)
      }
    }
    expect((await getStats(plain, TEST_OWNER, 'lim/authed')).pullCount).toBe(10)
    expect(plain.hold.ctx.limiter.dropped - dropped).toBe(6)
  })

  it('limits pushes too: over the limit the blob is stored but the push is not counted', async () => {
    await awayFromMinuteBoundary()
    const auth = await tokenFor(plain, TEST_OWNER, GET_BLOB)
    for (let i = 0; i < 7; i++) {
      const { upload } = await push(plain, randomBytes(32), auth, 'lim/push')
      expect(upload?.status).toBe(201)
    }
    expect((await getStats(plain, TEST_OWNER, 'lim/push')).pushCount).toBe(5)
  })

  it('with HOLD_TRUSTED_PROXY_HEADER=fly-client-ip, two header values are two clients', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      for (const ip of ['203.0.113.1', '203.0.113.2']) {
        expect(
          (await pull(proxied, 'lim/proxy', { 'fly-client-ip': ip })).status,
        ).toBe(200)
      }
    }
    expect((await getStats(proxied, TEST_OWNER, 'lim/proxy')).pullCount).toBe(
      10,
    )
    expect(proxied.hold.ctx.limiter.dropped).toBe(6)
  })

  it('without HOLD_TRUSTED_PROXY_HEADER the header is ignored: one socket address is one client', async () => {
    await awayFromMinuteBoundary()
    for (let i = 0; i < 8; i++) {
      const res = await pull(unproxied, 'lim/noproxy', {
        'fly-client-ip': `203.0.113.${i + 1}`,
      })
      expect(res.status).toBe(200)
    }
    expect(
      (await getStats(unproxied, TEST_OWNER, 'lim/noproxy')).pullCount,
    ).toBe(5)
    expect(unproxied.hold.ctx.limiter.dropped).toBe(3)
  })
})
