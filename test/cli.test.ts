import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { COMMANDS } from '../src/cli/cli.ts'
import type { CommitEvent } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { callCli, cliFor, lines, runCli, type CliResult } from './_cli.ts'
import { bearer, identity } from './_identity.ts'
import {
  atprotoKeyFromDidDoc,
  freePort,
  pushBlob,
  removeDir,
  startHold,
  tempDir,
  xrpc,
  type TestHold,
} from './_util.ts'
import { verifiedRepo } from './_repo.ts'

const PASSWORD = 'op-secret-7f3a'
const OWNER = 'did:plc:clicaptain00000000000000'
const ALICE = 'did:plc:clialice0000000000000000'
const BOB = 'did:plc:clibob000000000000000000'
const CREW = ids.HoldCrew
const STATS = ids.HoldStats

/** Exit code 0, nothing on stderr; the output's lines. */
const ok = (r: CliResult): string[] => {
  expect(r.stderr, r.stdout).toBe('')
  expect(r.code).toBe(0)
  return lines(r.stdout)
}

/** A non-zero exit with exactly one line on stderr and nothing on stdout; that line. */
const fails = (r: CliResult, code = 1): string => {
  expect(r.stdout).toBe('')
  expect(r.code).toBe(code)
  const err = lines(r.stderr)
  expect(err).toHaveLength(1)
  expect(err[0]).toMatch(/^atcr-hold: /)
  return err[0]
}

describe('operator CLI against a running hold', () => {
  let h: TestHold
  let cli: ReturnType<typeof cliFor>
  let dir: string
  const commits: CommitEvent[] = []

  const getRecord = (collection: string, rkey: string) =>
    xrpc<{ value: Record<string, unknown>; error?: string }>(
      h.url,
      ids.RepoGetRecord,
      { repo: h.did, collection, rkey },
    )
  const head = async () =>
    (
      await xrpc<{ rev: string; cid: string }>(h.url, ids.SyncGetLatestCommit, {
        did: h.did,
      })
    ).body

  beforeAll(async () => {
    h = await startHold({
      env: {
        HOLD_ADMIN_PASSWORD: PASSWORD,
        HOLD_OWNER_DID: OWNER,
        HOLD_STATS_FLUSH_MS: '3600000',
      },
    })
    h.hold.ctx.writer.onCommit((evt) => commits.push(evt))
    cli = cliFor(h.url, PASSWORD)
    dir = await tempDir()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
    await removeDir(dir)
  })

  it('prints usage with --help for the program, each command group and every command, exit code 0', async () => {
    const topics = [
      [],
      ['stats'],
      ['crew'],
      ['captain'],
      ...COMMANDS.map((c) => c.name.split(' ')),
    ]
    const texts = new Map<string, string>()
    for (const words of topics) {
      const name = words.join(' ')
      const out = ok(await callCli([...words, '--help'])).join('\n')
      expect(out, name).toMatch(new RegExp(`^Usage: atcr-hold ${name}`))
      if (COMMANDS.some((c) => c.name === name)) {
        expect(out, name).toContain('-h, --help')
        expect(out, name).toContain('HOLD_ADMIN_PASSWORD')
      }
      texts.set(name, out)
    }
    for (const c of COMMANDS) expect(texts.get('')).toContain(`  ${c.name}`)
    // `help <command>` is the same as `<command> --help`.
    expect(ok(await callCli(['help', 'stats', 'reset'])).join('\n')).toBe(
      texts.get('stats reset'),
    )
    // The binary prints the same, with exit code 0.
    const [program, command] = await Promise.all([
      runCli(['--help']),
      runCli(['import-stats', '-h']),
    ])
    expect(ok(program).join('\n')).toBe(texts.get(''))
    expect(ok(command).join('\n')).toBe(texts.get('import-stats'))
  })

  it('status shows the DID, owner, visibility, head commit, record counts and pending counts', async () => {
    const { rev, cid } = await head()
    const text = ok(await cli(['status'])).join('\n')
    expect(text).toContain(`hold            ${h.did}`)
    expect(text).toContain(`owner           ${OWNER}`)
    expect(text).toContain('public          yes')
    expect(text).toContain('allow all crew  no')
    expect(text).toContain(`head            rev ${rev}, cid ${cid}`)
    expect(text).toMatch(
      /records .*io\.atcr\.hold\.captain 1, io\.atcr\.hold\.crew 1/,
    )
    expect(text).toMatch(
      /pending +0 pairs counted in memory, 0 counters not yet in the repo/,
    )

    h.hold.ctx.stats.countPull('did:plc:statuspending0000000000', 'app')
    const status = JSON.parse((await cli(['status', '--json'])).stdout)
    expect(status).toMatchObject({
      did: h.did,
      owner: OWNER,
      public: true,
      allowAllCrew: false,
      head: { rev, cid },
      records: { 'io.atcr.hold.captain': 1, 'io.atcr.hold.crew': 1 },
      stats: { baselines: 0 },
    })
    // In memory, or already in the table (it is persisted every 25 ms) but not in the repo.
    expect(status.stats.pendingPairs + status.stats.dirtyCounters).toBe(1)
    await h.hold.ctx.stats.reset('did:plc:statuspending0000000000')
  })

  it('stats get, list, top and reset show and clear the counts real getBlob calls made', async () => {
    const { digest } = await pushBlob(h.url, randomBytes(512))
    const pull = async (did: string, repo: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const res = await fetch(
          `${h.url}/xrpc/${ids.SyncGetBlob}?did=${did}&cid=${digest}&repo=${repo}`,
        )
        expect(res.status).toBe(200)
        await res.arrayBuffer()
      }
    }
    await pull(ALICE, 'web', 5)
    await pull(ALICE, 'tools/cli', 2)
    await pull(BOB, 'db', 3)
    await h.hold.ctx.stats.flush()

    // Reads run side by side; none changes anything.
    const [getText, getJson, listText, listNone, topJson, topText, noYes] =
      await Promise.all([
        cli(['stats', 'get', ALICE, 'web']),
        cli(['stats', 'get', ALICE, 'web', '--json']),
        cli(['stats', 'list', ALICE]),
        cli(['stats', 'list', 'did:plc:nobody']),
        cli(['stats', 'top', '--limit', '2', '--json']),
        cli(['stats', 'top']),
        cli(['stats', 'reset', ALICE, 'web']),
      ])
    const get = ok(getText)
    expect(get[0]).toMatch(
      /^did +repository +pulls +pushes +last pull +last push$/,
    )
    expect(get[1]).toMatch(
      new RegExp(`^${ALICE} +web +5 +0 +\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +-$`),
    )
    const asJson = JSON.parse(getJson.stdout)
    expect(asJson).toEqual(
      (await xrpc(h.url, ids.HoldGetStats, { did: ALICE, repo: 'web' })).body,
    )

    const list = ok(listText)
    expect(list.map((l) => l.split(/ +/).slice(0, 2).join(' '))).toEqual([
      'repository pulls',
      'tools/cli 2',
      'web 5',
      '2 repositories,',
    ])
    expect(list[3]).toBe('2 repositories, 7 pulls, 0 pushes')
    expect(ok(listNone).join('\n')).toBe('no stats for did:plc:nobody')

    const top = JSON.parse(topJson.stdout)
    expect(top.stats.map((s: { repository: string }) => s.repository)).toEqual([
      'web',
      'db',
    ])
    expect(ok(topText)).toHaveLength(4)

    // Without a terminal, reset wants --yes and changes nothing.
    const refused = fails(noYes, 2)
    expect(refused).toContain('add --yes to confirm')
    expect((await getRecord(STATS, statsRecordKey(ALICE, 'web'))).status).toBe(
      200,
    )

    const one = ok(await cli(['stats', 'reset', ALICE, 'web', '--yes']))
    expect(one).toEqual([
      `reset ${ALICE} web: 1 counters removed, 1 records deleted in 1 commits`,
    ])
    expect((await getRecord(STATS, statsRecordKey(ALICE, 'web'))).status).toBe(
      404,
    )
    expect(
      (await getRecord(STATS, statsRecordKey(ALICE, 'tools/cli'))).status,
    ).toBe(200)
    expect(
      (await xrpc(h.url, ids.HoldGetStats, { did: ALICE, repo: 'web' })).body,
    ).toEqual({
      did: ALICE,
      repository: 'web',
      pullCount: 0,
      pushCount: 0,
      countSource: 'blob',
    })

    const all = JSON.parse(
      (await cli(['stats', 'reset', ALICE, '-y', '--json'])).stdout,
    )
    expect(all).toMatchObject({ did: ALICE, pairs: 1, records: 1, commits: 1 })
    expect(
      (
        await xrpc<{ stats: unknown[] }>(h.url, ids.HoldListStats, {
          did: ALICE,
        })
      ).body.stats,
    ).toEqual([])
    // Counting goes on from zero, and the next flush writes nothing back for the reset pairs.
    await pull(ALICE, 'web', 1)
    await h.hold.ctx.stats.flush()
    expect(
      (await getRecord(STATS, statsRecordKey(ALICE, 'web'))).body.value,
    ).toMatchObject({
      pullCount: 1,
    })
    expect(
      (await getRecord(STATS, statsRecordKey(ALICE, 'tools/cli'))).status,
    ).toBe(404)
    expect(
      (await getRecord(STATS, statsRecordKey(BOB, 'db'))).body.value,
    ).toMatchObject({
      pullCount: 3,
    })
  })

  it('crew add, list and remove write io.atcr.hold.crew records and grant and revoke reads on a private hold', async () => {
    const { digest } = await pushBlob(h.url, randomBytes(256))
    const blobUrl = `${h.url}/xrpc/${ids.SyncGetBlob}?did=${ALICE}&cid=${digest}`
    await identity(ALICE)
    const asAlice = async () =>
      (
        await fetch(blobUrl, {
          headers: await bearer({ iss: ALICE, aud: h.did }),
        })
      ).status

    ok(await cli(['captain', 'set', '--private']))
    expect((await fetch(blobUrl)).status).toBe(401)
    expect(await asAlice()).toBe(403)

    expect(
      ok(await cli(['crew', 'add', ALICE, '--permissions', 'blob:read'])),
    ).toEqual([`added ${ALICE}: role read, permissions blob:read`])
    const rec = await getRecord(CREW, ALICE)
    expect(rec.status).toBe(200)
    expect(rec.body.value).toMatchObject({
      $type: CREW,
      member: ALICE,
      role: 'read',
      permissions: ['blob:read'],
    })
    h.hold.ctx.lexicons.assertValidRecord(CREW, rec.body.value)
    expect(await asAlice()).toBe(200)

    // Changing the role keeps the permissions and the date the member was added.
    const updated = JSON.parse(
      (await cli(['crew', 'add', ALICE, '--role', 'admin', '--json'])).stdout,
    )
    expect(updated).toMatchObject({
      status: 'updated',
      member: {
        role: 'admin',
        permissions: ['blob:read'],
        addedAt: rec.body.value.addedAt,
      },
    })
    expect(
      JSON.parse((await cli(['crew', 'add', ALICE, '--json'])).stdout).status,
    ).toBe('unchanged')

    const list = ok(await cli(['crew', 'list']))
    expect(list[0]).toMatch(/^member +role +permissions +added$/)
    expect(
      list
        .slice(1)
        .map((l) => l.split(/ +/).slice(0, 3).join(' '))
        .sort(),
    ).toEqual(
      [
        `${ALICE} admin blob:read`,
        `${OWNER} owner blob:read,blob:write,crew:admin`,
      ].sort(),
    )

    expect(ok(await cli(['crew', 'remove', ALICE]))).toEqual([
      `removed ${ALICE} from the crew`,
    ])
    expect((await getRecord(CREW, ALICE)).status).toBe(404)
    expect(await asAlice()).toBe(403)
    expect(fails(await cli(['crew', 'remove', ALICE]))).toBe(
      `atcr-hold: ${ALICE} is not in the crew (404 RecordNotFound)`,
    )
    expect(fails(await cli(['crew', 'remove', OWNER]))).toContain(
      'owns this hold',
    )

    ok(await cli(['captain', 'set', '--public']))
    expect((await fetch(blobUrl)).status).toBe(200)
  })

  it('export writes the repo as a CAR file that verifies against the key in did.json', async () => {
    const file = join(dir, 'hold.car')
    const out = ok(await cli(['export', file]))
    expect(out[0]).toMatch(
      new RegExp(
        `^exported the repo of ${h.did.replace(/%/g, '%')} to .*hold\\.car \\(`,
      ),
    )
    const verified = await verifiedRepo(h.url, h.did, {
      car: new Uint8Array(await readFile(file)),
    })
    expect(verified.commit.rev).toBe((await head()).rev)
    const collections = verified.creates.map((c) => c.collection)
    expect(collections).toContain('io.atcr.hold.captain')
    expect(collections).toContain(CREW)
    expect(collections).toContain(STATS)
    // A failed export leaves no file behind.
    const missing = join(dir, 'no-such-dir', 'x.car')
    expect(fails(await cli(['export', missing]))).toContain(
      `export to ${missing} failed`,
    )
    await expect(readFile(missing)).rejects.toThrow()
  })

  it('keygen prints a signing key the hold accepts and the did:key its did.json then publishes', async () => {
    const out = ok(await runCli(['keygen']))
    expect(out).toHaveLength(2)
    const hex = /^HOLD_SIGNING_KEY=([0-9a-f]{64})$/.exec(out[0])![1]
    const didKey = /^# publishes (did:key:z\w+)$/.exec(out[1])![1]
    expect((await Secp256k1Keypair.import(hex)).did()).toBe(didKey)
    const other = JSON.parse((await runCli(['keygen', '--json'])).stdout)
    expect(other.signingKey).not.toBe(hex)

    const keyed = await startHold({ env: { HOLD_SIGNING_KEY: hex } })
    try {
      const doc = (await (
        await fetch(`${keyed.url}/.well-known/did.json`)
      ).json()) as Parameters<typeof atprotoKeyFromDidDoc>[0]
      expect(atprotoKeyFromDidDoc(doc)).toBe(didKey)
    } finally {
      await keyed.stop()
      await removeDir(keyed.dataDir)
    }
  })

  it('fails with one line and a non-zero exit for a wrong password, an unreachable hold, an invalid DID and an unknown command', async () => {
    const port = await freePort()
    const down = `http://127.0.0.1:${port}`
    const [wrong, noPassword, unreachable, listDown, byPort, badDid, unknown] =
      await Promise.all([
        cli(['status'], { HOLD_ADMIN_PASSWORD: 'wrong' }),
        cli(['stats', 'top'], { HOLD_ADMIN_PASSWORD: undefined }),
        cli(['status'], { HOLD_URL: down }),
        cli(['stats', 'list', ALICE], { HOLD_URL: down }),
        runCli(['status'], {
          HOLD_PORT: String(port),
          HOLD_ADMIN_PASSWORD: 'x',
        }),
        cli(['stats', 'get', 'alice', 'web']),
        cli(['frobnicate']),
      ])
    expect(fails(wrong)).toBe(
      `atcr-hold: the hold at ${h.url} refused the admin password (401 InvalidCredentials): check HOLD_ADMIN_PASSWORD`,
    )
    expect(fails(noPassword, 2)).toContain('HOLD_ADMIN_PASSWORD is not set')
    for (const r of [unreachable, listDown]) {
      expect(fails(r)).toMatch(
        new RegExp(
          `^atcr-hold: cannot reach the hold at ${down}: .*ECONNREFUSED`,
        ),
      )
    }
    // HOLD_PORT makes the default HOLD_URL.
    expect(fails(byPort)).toContain(
      `cannot reach the hold at http://localhost:${port}:`,
    )
    expect(fails(badDid, 2)).toBe(
      'atcr-hold: invalid DID "alice" (see `atcr-hold stats get --help`)',
    )
    expect(fails(unknown, 2)).toBe(
      'atcr-hold: unknown command "frobnicate" (see `atcr-hold --help`)',
    )
  })

  it('refuses bad arguments with one line and exit code 2 before calling the hold', async () => {
    const cases: [string[], string][] = [
      [['crew', 'add', 'did:nope'], 'invalid DID "did:nope"'],
      [['crew', 'remove', 'bob'], 'invalid DID "bob"'],
      [['stats', 'reset', 'x', '--yes'], 'invalid DID "x"'],
      [['stats', 'get', ALICE, 'Web'], 'invalid repository "Web"'],
      [['stats', 'top', '--limit', 'lots'], '--limit must be a whole number'],
      [['stats', 'top', '--limit', '0'], '--limit must be a whole number'],
      [['stats', 'get', ALICE], 'stats get takes <did> <repo>, got'],
      [['status', 'extra'], 'status takes no arguments, got "extra"'],
      [['status', '--verbose'], "status: unknown option '--verbose'"],
      [['captain', 'set'], 'nothing to set'],
      [['captain', 'set', '--public', '--private'], 'not both'],
      [['captain', 'set', '--no-public'], "unknown option '--no-public'"],
      [
        ['crew', 'add', ALICE, '--permissions', 'blob:read,root'],
        'unknown: root',
      ],
      [['import-stats', 'x.db', '--format', 'xml'], '--format must be one of'],
      [
        ['import-stats', 'x.db', '--batch-size', '5000'],
        '--batch-size must be',
      ],
      [['stats', 'frob'], 'unknown command "stats frob"'],
      [['status'], 'HOLD_URL must be an http(s) URL'],
    ]
    for (const [args, message] of cases) {
      const r = await callCli(args, {
        HOLD_URL: args[0] === 'status' && args.length === 1 ? 'ftp://x' : h.url,
        HOLD_ADMIN_PASSWORD: PASSWORD,
      })
      expect(fails(r, 2), args.join(' ')).toContain(message)
    }
    const usage = await callCli([])
    expect(usage.code).toBe(2)
    expect(usage.stdout).toMatch(/^Usage: atcr-hold <command>/)
  })
})

describe('operator CLI and the hold’s configuration', () => {
  it('says the admin API is off when the hold has no HOLD_ADMIN_PASSWORD', async () => {
    const h = await startHold()
    try {
      expect(
        fails(
          await runCli(['status'], {
            HOLD_URL: h.url,
            HOLD_ADMIN_PASSWORD: 'x',
          }),
        ),
      ).toBe(
        `atcr-hold: the admin API is off on the hold at ${h.url}: start the hold with HOLD_ADMIN_PASSWORD set`,
      )
    } finally {
      await h.stop()
      await removeDir(h.dataDir)
    }
  })

  it('captain set updates public and allowAllCrew in one commit, the change survives a restart, and a set HOLD_PUBLIC is warned about', async () => {
    const env = { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_OWNER_DID: OWNER }
    let h = await startHold({ env })
    const { dataDir, port } = h
    try {
      const commits: CommitEvent[] = []
      h.hold.ctx.writer.onCommit((evt) => commits.push(evt))
      const cli = cliFor(h.url, PASSWORD)
      expect(
        ok(await cli(['captain', 'set', '--private', '--allow-all-crew'])),
      ).toEqual([
        expect.stringMatching(
          /^captain updated \(rev \w+\): public no, allow all crew yes$/,
        ),
      ])
      expect(commits).toHaveLength(1)
      expect(commits[0].ops.map((o) => `${o.action} ${o.collection}`)).toEqual([
        'update io.atcr.hold.captain',
      ])
      expect(ok(await cli(['captain', 'set', '--private']))).toEqual([
        'captain unchanged: public no, allow all crew yes',
      ])
      expect(commits).toHaveLength(1)

      await h.stop()
      h = await startHold({ env, dataDir, port })
      const captain = await xrpc<{ value: Record<string, unknown> }>(
        h.url,
        ids.RepoGetRecord,
        { repo: h.did, collection: ids.HoldCaptain, rkey: 'self' },
      )
      expect(captain.body.value).toMatchObject({
        owner: OWNER,
        public: false,
        allowAllCrew: true,
      })
      expect(h.hold.ctx.crew.captain.public).toBe(false)

      await h.stop()
      h = await startHold({
        env: { ...env, HOLD_PUBLIC: 'false' },
        dataDir,
        port,
      })
      const warned = await cli([
        'captain',
        'set',
        '--public',
        '--no-allow-all-crew',
      ])
      expect(warned.code).toBe(0)
      expect(lines(warned.stderr)).toEqual([
        'warning: HOLD_PUBLIC is set on the hold (false): its next start applies that again',
      ])
      expect(lines(warned.stdout)[0]).toMatch(/public yes, allow all crew no$/)
    } finally {
      await h.stop()
      await removeDir(dataDir)
    }
  })
})
