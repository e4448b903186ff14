import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import {
  atprotoKeyFromDidDoc,
  freePort,
  removeDir,
  runHoldToExit,
  spawnHold,
  startHold,
  tempDir,
  xrpc,
} from './_util.ts'
import { verifiedRepo } from './_repo.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const OTHER_OWNER = 'did:plc:z72i7hdynmk6r22z27h6tvur'
const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew
/** A fixed public URL keeps the DID stable while each start listens on a fresh port. */
const PUBLIC_URL = 'https://hold.bootstrap.test'
const DID = 'did:web:hold.bootstrap.test'

type LogLine = { msg: string; level: number; [k: string]: unknown }
type RecordView = { uri: string; cid: string; value: Record<string, unknown> }
type DidDoc = Parameters<typeof atprotoKeyFromDidDoc>[0]

type Started = {
  hold: HoldServer
  url: string
  logs: LogLine[]
  /** The commits this start made, from the single writer's log. */
  commits: () => LogLine[]
}

const running: HoldServer[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.destroy()))
  await Promise.all(dirs.splice(0).map(removeDir))
})

const newDataDir = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return dir
}

/** Starts the real hold in process with a logger whose lines the test can read. */
const start = async (
  dataDir: string,
  env: Record<string, string> = {},
): Promise<Started> => {
  const port = await freePort()
  const raw = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: String(port),
    HOLD_PUBLIC_URL: PUBLIC_URL,
    HOLD_DATA_DIR: dataDir,
    ...env,
  })
  const logs: LogLine[] = []
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line)) },
  )
  const hold = await HoldServer.create(
    envToCfg(raw, 'test'),
    envToSecrets(raw),
    { logger },
  )
  running.push(hold)
  await hold.start()
  return {
    hold,
    url: `http://127.0.0.1:${port}`,
    logs,
    commits: () => logs.filter((l) => l.msg === 'committed'),
  }
}

const stop = async (s: Started) => {
  await s.hold.destroy()
  running.splice(running.indexOf(s.hold), 1)
}

const captainOf = async (url: string, did = DID) => {
  const res = await xrpc<RecordView>(url, ids.RepoGetRecord, {
    repo: did,
    collection: CAPTAIN,
    rkey: 'self',
  })
  expect(res.status).toBe(200)
  return res.body
}

const crewOf = async (url: string, did = DID) => {
  const res = await xrpc<{ records: RecordView[] }>(url, ids.RepoListRecords, {
    repo: did,
    collection: CREW,
    limit: 100,
  })
  expect(res.status).toBe(200)
  return res.body.records
}

const headOf = async (url: string, did = DID) => {
  const res = await xrpc<{ cid: string; rev: string }>(
    url,
    ids.SyncGetLatestCommit,
    { did },
  )
  expect(res.status).toBe(200)
  return res.body
}

const didDocOf = async (url: string) =>
  (await (await fetch(`${url}/.well-known/did.json`)).json()) as DidDoc

describe('bootstrap', () => {
  it("creates the captain record and the owner's crew record in one commit on first start", async () => {
    const s = await start(await newDataDir(), { HOLD_OWNER_DID: OWNER })
    expect(s.logs.filter((l) => l.msg === 'created repo')).toHaveLength(1)
    expect(s.commits()).toHaveLength(1)
    expect(s.commits()[0].ops).toBe(2)
    expect((await headOf(s.url)).rev).toBe(s.commits()[0].rev)

    const captain = await captainOf(s.url)
    expect(captain.value).toEqual({
      $type: CAPTAIN,
      owner: OWNER,
      public: true,
      allowAllCrew: false,
      enableBlueskyPosts: false,
      deployedAt: expect.any(String),
    })
    const crew = await crewOf(s.url)
    expect(crew).toHaveLength(1)
    expect(crew[0].uri).toBe(`at://${DID}/${CREW}/${OWNER}`)
    expect(crew[0].value).toEqual({
      $type: CREW,
      member: OWNER,
      role: 'owner',
      permissions: ['blob:read', 'blob:write', 'crew:admin'],
      addedAt: expect.any(String),
    })
    const repo = await verifiedRepo(s.url, DID)
    expect(repo.creates.map((c) => `${c.collection}/${c.rkey}`).sort()).toEqual(
      [`${CAPTAIN}/self`, `${CREW}/${OWNER}`],
    )
  })

  it('makes no commit when restarted with the same configuration, or with HOLD_PUBLIC set to what the captain already says', async () => {
    const dataDir = await newDataDir()
    const first = await start(dataDir, { HOLD_OWNER_DID: OWNER })
    const head = await headOf(first.url)
    const captain = await captainOf(first.url)
    await stop(first)

    const envs: Record<string, string>[] = [
      { HOLD_OWNER_DID: OWNER },
      { HOLD_OWNER_DID: OWNER, HOLD_PUBLIC: 'true', HOLD_ALLOW_ALL_CREW: '0' },
    ]
    for (const env of envs) {
      const again = await start(dataDir, env)
      expect(again.commits()).toEqual([])
      expect(again.logs.some((l) => l.msg === 'created repo')).toBe(false)
      expect(await headOf(again.url)).toEqual(head)
      expect(await captainOf(again.url)).toEqual(captain)
      await stop(again)
    }
  })

  it.each([
    ['HOLD_PUBLIC', 'false', { public: false, allowAllCrew: false }],
    ['HOLD_ALLOW_ALL_CREW', 'true', { public: true, allowAllCrew: true }],
  ])(
    'applies %s=%s to the captain in exactly one commit, and a later start without it keeps the change',
    async (name, value, flags) => {
      const dataDir = await newDataDir()
      const first = await start(dataDir, { HOLD_OWNER_DID: OWNER })
      const before = await captainOf(first.url)
      const crewBefore = await crewOf(first.url)
      const headBefore = await headOf(first.url)
      await stop(first)

      const changed = await start(dataDir, {
        HOLD_OWNER_DID: OWNER,
        [name]: value,
      })
      expect(changed.commits()).toHaveLength(1)
      expect(changed.commits()[0].ops).toBe(1)
      const after = await captainOf(changed.url)
      expect(after.value).toEqual({ ...before.value, ...flags })
      expect(after.cid).not.toBe(before.cid)
      expect(await crewOf(changed.url)).toEqual(crewBefore)
      const headChanged = await headOf(changed.url)
      expect(headChanged.rev > headBefore.rev).toBe(true)
      expect(headChanged.rev).toBe(changed.commits()[0].rev)
      await verifiedRepo(changed.url, DID)
      await stop(changed)

      const unset = await start(dataDir, { HOLD_OWNER_DID: OWNER })
      expect(unset.commits()).toEqual([])
      expect(await captainOf(unset.url)).toEqual(after)
      expect(await headOf(unset.url)).toEqual(headChanged)
    },
  )

  it('names the hold itself as owner, writes no crew record and warns, without HOLD_OWNER_DID', async () => {
    const dataDir = await newDataDir()
    const spawned = await spawnHold({ dataDir, env: { HOLD_OWNER_DID: '' } })
    try {
      expect(spawned.output()).toContain('HOLD_OWNER_DID is not set')
      const captain = await captainOf(spawned.url, spawned.did)
      expect(captain.value.owner).toBe(spawned.did)
      expect(await crewOf(spawned.url, spawned.did)).toEqual([])
      const repo = await verifiedRepo(spawned.url, spawned.did)
      expect(repo.creates.map((c) => c.collection)).toEqual([CAPTAIN])
    } finally {
      spawned.proc.kill('SIGTERM')
      expect((await spawned.exited).code).toBe(0)
    }
  })

  it("hands the captain to a newly configured owner and adds the owner's crew record in one commit", async () => {
    const dataDir = await newDataDir()
    const first = await start(dataDir)
    expect((await captainOf(first.url)).value.owner).toBe(DID)
    await stop(first)

    const owned = await start(dataDir, { HOLD_OWNER_DID: OTHER_OWNER })
    expect(owned.commits()).toHaveLength(1)
    expect(owned.commits()[0].ops).toBe(2)
    expect((await captainOf(owned.url)).value.owner).toBe(OTHER_OWNER)
    const crew = await crewOf(owned.url)
    expect(crew.map((r) => r.value.member)).toEqual([OTHER_OWNER])
    expect(crew[0].value.role).toBe('owner')
  })

  it('keeps the DID, the signing key and the head across a restart, with the key file at mode 0600', async () => {
    const dataDir = await newDataDir()
    const first = await start(dataDir, { HOLD_OWNER_DID: OWNER })
    const doc = await didDocOf(first.url)
    const head = await headOf(first.url)
    const handle = await (
      await fetch(`${first.url}/.well-known/atproto-did`)
    ).text()
    await stop(first)

    const keyFile = join(dataDir, 'signing-key.hex')
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600)
    expect(
      (await stat(join(dataDir, 'blob-url-secret.hex'))).mode & 0o777,
    ).toBe(0o600)
    const stored = (await readFile(keyFile, 'utf8')).trim()
    expect(stored).toMatch(/^[0-9a-f]{64}$/)
    expect(atprotoKeyFromDidDoc(doc)).toBe(
      (await Secp256k1Keypair.import(stored)).did(),
    )

    const again = await start(dataDir, { HOLD_OWNER_DID: OWNER })
    expect(await didDocOf(again.url)).toEqual(doc)
    expect(
      await (await fetch(`${again.url}/.well-known/atproto-did`)).text(),
    ).toBe(handle)
    expect(handle).toBe(DID)
    expect(await headOf(again.url)).toEqual(head)
    expect((await readFile(keyFile, 'utf8')).trim()).toBe(stored)
    await verifiedRepo(again.url, DID)
  })

  it('publishes and signs with HOLD_SIGNING_KEY when it is given, and keeps no copy of it in the data dir', async () => {
    const dataDir = await newDataDir()
    const key = await Secp256k1Keypair.create({ exportable: true })
    const hex = Buffer.from(await key.export()).toString('hex')
    const s = await start(dataDir, { HOLD_SIGNING_KEY: hex })
    const expected = (await Secp256k1Keypair.import(hex)).did()
    expect(atprotoKeyFromDidDoc(await didDocOf(s.url))).toBe(expected)
    await expect(
      verifiedRepo(s.url, DID, { key: expected }),
    ).resolves.toBeTruthy()
    await expect(stat(join(dataDir, 'signing-key.hex'))).rejects.toMatchObject({
      code: 'ENOENT',
    })
  })

  it('re-signs the head when the data dir is reopened with a different signing key, so the repo verifies against did.json', async () => {
    const dataDir = await newDataDir()
    const first = await start(dataDir, { HOLD_OWNER_DID: OWNER })
    const oldKey = atprotoKeyFromDidDoc(await didDocOf(first.url))
    const oldHead = await headOf(first.url)
    await stop(first)

    const key = await Secp256k1Keypair.create({ exportable: true })
    const hex = Buffer.from(await key.export()).toString('hex')
    const again = await start(dataDir, {
      HOLD_OWNER_DID: OWNER,
      HOLD_SIGNING_KEY: hex,
    })
    const newKey = atprotoKeyFromDidDoc(await didDocOf(again.url))
    expect(newKey).toBe(key.did())
    expect(newKey).not.toBe(oldKey)
    const repo = await verifiedRepo(again.url, DID)
    expect(repo.creates).toHaveLength(2)
    const head = await headOf(again.url)
    expect(head.rev > oldHead.rev).toBe(true)
    await stop(again)

    const third = await start(dataDir, {
      HOLD_OWNER_DID: OWNER,
      HOLD_SIGNING_KEY: hex,
    })
    expect(await headOf(third.url)).toEqual(head)
    await verifiedRepo(third.url, DID)
  })

  it.each([
    ['HOLD_PORT', (port: number) => ({ HOLD_PORT: String(port + 1) })],
    [
      'HOLD_PUBLIC_URL',
      () => ({ HOLD_PUBLIC_URL: 'https://elsewhere.example.com' }),
    ],
  ])(
    'refuses to start, in one line, on a data dir whose repo belongs to another DID (changed %s)',
    async (_name, changed) => {
      const first = await startHold({ env: { HOLD_OWNER_DID: OWNER } })
      dirs.push(first.dataDir)
      const head = await headOf(first.url, first.did)
      await first.stop()

      const { code, output } = await runHoldToExit({
        HOLD_HOST: '127.0.0.1',
        HOLD_PORT: String(first.port),
        HOLD_DATA_DIR: first.dataDir,
        HOLD_OWNER_DID: OWNER,
        LOG_LEVEL: 'info',
        ...changed(first.port),
      })
      expect(code).toBe(1)
      const lines = output.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain(first.did)
      expect(lines[0]).toContain('HOLD_PUBLIC_URL')
      expect(output).not.toMatch(/^\s+at /m)

      const again = await startHold({
        dataDir: first.dataDir,
        port: first.port,
        env: { HOLD_OWNER_DID: OWNER },
      })
      try {
        expect(again.did).toBe(first.did)
        expect(await headOf(again.url, again.did)).toEqual(head)
      } finally {
        await again.stop()
      }
    },
  )
})
