import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  CREATE_RECORD,
  CREW,
  DELETE_RECORD,
  GET_BLOB,
  REQUEST_CREW,
  addCrew,
  expectXrpcError,
  latestRev,
  push,
  raw,
  removeCrew,
  snapshot,
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

const STRANGER = 'did:plc:matrixstranger0000000000000'
const ADMIN = 'did:plc:matrixadmin000000000000000'

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
    ids.RepoGetRecord,
    { repo: h.did, collection: CREW, rkey: member },
  )

const listCrew = async (h: TestHold) =>
  (
    await xrpc<{ records: { value: { member: string } }[] }>(
      h.url,
      ids.RepoListRecords,
      { repo: h.did, collection: CREW, limit: 100 },
    )
  ).body.records.map((r) => r.value.member)

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

  it.each([ids.HoldCaptain, ids.HoldStats, 'app.bsky.feed.post'])(
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
