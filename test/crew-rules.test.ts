import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { isValidRecordKey } from '@atproto/syntax'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  crewRecord,
  crewRecordKey,
  defaultRole,
  JOIN_PERMISSIONS,
  JOIN_ROLES,
  memberProblem,
  PERMISSIONS,
  permissionsProblem,
  roleProblem,
} from '../src/auth/crew-rules.ts'
import { ids } from '../src/lexicons.ts'
import { CREATE_RECORD, CREW, snapshot, tokenFor } from './_access.ts'
import {
  ROOT,
  TEST_OWNER,
  removeDir,
  startHold,
  tempDir,
  xrpc,
  type TestHold,
} from './_util.ts'

const LONG_DID = `did:web:${'a'.repeat(600)}`
const PORT_DID = 'did:web:localhost%3A8080'

describe('the crew record key', () => {
  it('is the DID itself when the DID is a legal record key', () => {
    for (const did of [
      TEST_OWNER,
      'did:web:hold.example.com',
      'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme',
    ]) {
      expect(isValidRecordKey(did), did).toBe(true)
      expect(crewRecordKey(did)).toBe(did)
    }
  })

  it('is the base64url of the DID when the DID is not a legal record key, and is one', () => {
    expect(isValidRecordKey(PORT_DID)).toBe(false)
    const key = crewRecordKey(PORT_DID)
    expect(key).toBe(Buffer.from(PORT_DID).toString('base64url'))
    expect(isValidRecordKey(key)).toBe(true)
    expect(Buffer.from(key, 'base64url').toString()).toBe(PORT_DID)
    expect(memberProblem(PORT_DID)).toBeUndefined()
  })

  it('does not exist for a DID too long to key a record either way', () => {
    expect(isValidRecordKey(crewRecordKey(LONG_DID))).toBe(false)
    expect(memberProblem(LONG_DID)).toMatch(
      /too long for a crew member: the key of its crew record would exceed 512 characters/,
    )
    expect(memberProblem(`did:plc:${'a'.repeat(504)}`)).toBeUndefined()
    expect(memberProblem(`did:plc:${'a'.repeat(505)}`)).toBeDefined()
  })
})

describe('crew record validation', () => {
  it.each<[string, unknown, readonly string[] | undefined, RegExp | undefined]>(
    [
      ['all three', [...PERMISSIONS], undefined, undefined],
      ['one', ['blob:read'], undefined, undefined],
      ['empty', [], undefined, /non-empty list of blob:read/],
      ['not a list', 'blob:read', undefined, /non-empty list/],
      [
        'an unknown name',
        ['blob:read', 'root'],
        undefined,
        /unknown permission "root"/,
      ],
      ['a number', [7], undefined, /unknown permission 7/],
      ['the join set', ['blob:write'], JOIN_PERMISSIONS, undefined],
      [
        'crew:admin asked for by a joiner',
        ['blob:read', 'crew:admin'],
        JOIN_PERMISSIONS,
        /crew:admin cannot be asked for.*granted by the owner or a crew admin/,
      ],
    ],
  )('permissions: %s', (_name, value, allowed, problem) => {
    const got = permissionsProblem(
      value,
      allowed as typeof JOIN_PERMISSIONS | undefined,
    )
    if (problem) expect(got).toMatch(problem)
    else expect(got).toBeUndefined()
  })

  it.each<[unknown, readonly string[] | undefined, boolean]>([
    ['write', undefined, true],
    ['release-bot', undefined, true],
    ['Root Admin', undefined, false],
    ['x'.repeat(65), undefined, false],
    [7, undefined, false],
    ['member', JOIN_ROLES, true],
    ['owner', JOIN_ROLES, false],
    ['admin', JOIN_ROLES, false],
  ])('role %j (allowed %j) is valid: %s', (value, allowed, valid) => {
    const got = roleProblem(value, allowed)
    if (valid) expect(got).toBeUndefined()
    else expect(got).toMatch(/^role must be/)
  })

  it('names a role after the strongest permission', () => {
    expect(defaultRole(['blob:read', 'crew:admin'])).toBe('admin')
    expect(defaultRole(['blob:write'])).toBe('write')
    expect(defaultRole(['blob:read'])).toBe('read')
  })

  it('builds a record that names each permission once and passes the lexicon', async () => {
    const { loadLexicons } = await import('../src/lexicons.ts')
    const record = crewRecord({
      member: TEST_OWNER,
      role: 'write',
      permissions: ['blob:write', 'blob:read', 'blob:write'],
      addedAt: new Date().toISOString(),
    })
    expect(record.$type).toBe(ids.HoldCrew)
    expect(record.permissions).toEqual(['blob:write', 'blob:read'])
    loadLexicons().assertValidRecord(ids.HoldCrew, record)
  })
})

describe('the CLI and the crew rules', () => {
  it('loads the crew rules without any module that opens the data dir, serves HTTP or loads the lexicon validator', () => {
    const script = `
      import { registerHooks } from 'node:module'
      const loaded = []
      registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context) } })
      await import(${JSON.stringify(pathToFileURL(join(ROOT, 'src/cli/cli.ts')).href)})
      process.stdout.write(JSON.stringify(loaded))
    `
    const run = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', script],
      { cwd: ROOT, encoding: 'utf8' },
    )
    expect(run.status, run.stderr).toBe(0)
    const loaded = (JSON.parse(run.stdout) as string[]).map((url) =>
      url.startsWith('file:')
        ? url.slice(pathToFileURL(ROOT).href.length)
        : url,
    )
    expect(loaded).toContain('src/auth/crew-rules.ts')
    const server = loaded.filter(
      (path) =>
        /^src\/(db|context|server|app|config|lexicons)\.ts$/.test(path) ||
        /^src\/(api|repo)\//.test(path) ||
        path === 'src/auth/crew.ts' ||
        /node_modules\/@atproto\/(lexicon|repo)\//.test(path),
    )
    expect(server).toEqual([])
  })
})

describe('crew members whose record key cannot exist', () => {
  let h: TestHold
  const PASSWORD = 'a long and random admin password'
  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_STATS_FLUSH_MS: '3600000' },
    })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('stop the hold from starting when HOLD_OWNER_DID is one, naming the variable', async () => {
    const dataDir = await tempDir()
    try {
      await expect(
        startHold({ dataDir, env: { HOLD_OWNER_DID: LONG_DID } }),
      ).rejects.toThrow(
        /^HOLD_OWNER_DID: did:web:a+… is too long for a crew member/,
      )
    } finally {
      await removeDir(dataDir)
    }
  })

  it('are refused by the admin API and createRecord with 400, writing nothing', async () => {
    const before = await snapshot(h)
    const admin = await fetch(`${h.url}/admin/crew/add`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`,
      },
      body: JSON.stringify({ did: LONG_DID }),
    })
    expect(admin.status).toBe(400)
    expect(await admin.json()).toMatchObject({
      error: 'InvalidRequest',
      message: expect.stringMatching(/too long for a crew member/),
    })
    const api = await xrpc(
      h.url,
      CREATE_RECORD,
      {},
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(await tokenFor(h, TEST_OWNER, CREATE_RECORD)),
        },
        body: JSON.stringify({
          repo: h.did,
          collection: CREW,
          record: {
            member: LONG_DID,
            role: 'read',
            permissions: ['blob:read'],
            addedAt: new Date().toISOString(),
          },
        }),
      },
    )
    expect(api.status).toBe(400)
    expect(api.body).toMatchObject({
      error: 'InvalidRequest',
      message: expect.stringMatching(/too long for a crew member/),
    })
    expect(await snapshot(h)).toEqual(before)
  })
})
