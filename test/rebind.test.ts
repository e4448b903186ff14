import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { DidDocument } from '../src/identity.ts'
import { RepoIdentityError } from '../src/repo/writer.ts'
import type { HoldServer } from '../src/server.ts'
import { addCrew } from './_access.ts'
import { startLogged, type LoggedHold } from './_logged.ts'
import {
  atprotoKeyFromDidDoc,
  pushBlob,
  removeDir,
  runHoldToExit,
  tempDir,
  TEST_OWNER,
  xrpc,
} from './_util.ts'
import { verifiedRepo } from './_repo.ts'

const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew
const STATS = ids.HoldStats
const NEW_URL = 'https://hold.rebind.test'
const NEW_DID = 'did:web:hold.rebind.test'
const MEMBER = 'did:plc:rebindmember00000000000'

type RecordView = { uri: string; cid: string; value: Record<string, unknown> }

const running: HoldServer[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.destroy()))
  await Promise.all(dirs.splice(0).map(removeDir))
})

/** The real hold on `dataDir`, once its start-up flush (what a crash or a rebuild left) is done. */
const start = async (
  dataDir: string,
  env: Record<string, string> = {},
  port?: number,
): Promise<LoggedHold> => {
  const h = await startLogged(
    dataDir,
    { HOLD_STATS_FLUSH_MS: '3600000', ...env },
    { port, running },
  )
  await h.hold.ctx.stats.flush()
  return h
}

const newDataDir = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return dir
}

const listAll = async (h: LoggedHold, collection: string) => {
  const out: RecordView[] = []
  let cursor: string | undefined
  do {
    const page = await xrpc<{ records: RecordView[]; cursor?: string }>(
      h.url,
      ids.RepoListRecords,
      { repo: h.did, collection, limit: 100, cursor },
    )
    expect(page.status).toBe(200)
    out.push(...page.body.records)
    cursor = page.body.cursor
  } while (cursor)
  return out
}

const captainOf = async (h: LoggedHold) =>
  (
    await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
      repo: h.did,
      collection: CAPTAIN,
      rkey: 'self',
    })
  ).body.value

const headOf = async (h: LoggedHold) =>
  (
    await xrpc<{ cid: string; rev: string }>(h.url, ids.SyncGetLatestCommit, {
      did: h.did,
    })
  ).body

/** The repo as a CAR, verified against the DID and the key its did.json publishes. */
const verified = async (h: LoggedHold) => {
  const doc = (await (
    await fetch(`${h.url}/.well-known/did.json`)
  ).json()) as DidDocument
  expect(doc.id).toBe(h.did)
  return verifiedRepo(h.url, h.did, { key: atprotoKeyFromDidDoc(doc) })
}

/** Stats records by their key, values only. */
const statsRecords = async (h: LoggedHold) =>
  new Map(
    (await listAll(h, STATS)).map((r) => [r.uri.split('/').pop()!, r.value]),
  )

/** A hold that has counted, imported and added a crew member under a localhost DID. */
const usedLocalHold = async () => {
  const dataDir = await newDataDir()
  const h = await start(dataDir)
  expect(h.did).toMatch(/^did:web:localhost%3A\d+$/)
  const owner = 'did:plc:rebindimageowner000000'
  const { digest } = await pushBlob(h.url, randomBytes(2000), {
    did: owner,
    repo: 'web',
  })
  await pushBlob(h.url, randomBytes(500), { did: owner, repo: 'tools/cli' })
  for (let i = 0; i < 3; i++) {
    const res = await fetch(
      `${h.url}/xrpc/${ids.SyncGetBlob}?did=${owner}&cid=${digest}&repo=web`,
    )
    expect(res.status).toBe(200)
    await res.arrayBuffer()
  }
  h.hold.ctx.stats.importBaselines([
    {
      did: owner,
      repository: 'web',
      pullCount: 1542,
      pushCount: 7,
      lastPull: '2025-01-15T10:00:00.000Z',
    },
    // A pair the hold never counted itself: its record exists only through the baseline.
    {
      did: 'did:plc:rebindbaselineonly0000',
      repository: 'old',
      pullCount: 9,
      pushCount: 1,
    },
  ])
  expect(
    (await addCrew(h, MEMBER, ['blob:read', 'blob:write'], { as: TEST_OWNER }))
      .status,
  ).toBe(200)
  await h.hold.ctx.stats.flush()
  return { h, dataDir, owner, digest }
}

describe('HOLD_REBIND_FROM: moving a hold to a new DID', () => {
  it('rebuilds the repo under the new DID from what the hold keeps: captain, crew, stats records equal to getStats, blobs, a CAR that verifies', async () => {
    const { h: old, dataDir, owner, digest } = await usedLocalHold()
    const oldDid = old.did
    const oldCaptain = await captainOf(old)
    const oldCrew = (await listAll(old, CREW)).map((r) => r.value)
    const oldStats = await statsRecords(old)
    expect(oldStats.size).toBe(3)
    await old.stop()

    const moved = await start(dataDir, {
      HOLD_PUBLIC_URL: NEW_URL,
      HOLD_REBIND_FROM: oldDid,
    })
    expect(moved.did).toBe(NEW_DID)
    const rebuilt = moved.logs.find((l) => l.msg.startsWith('rebuilt the repo'))
    expect(rebuilt).toMatchObject({
      from: oldDid,
      did: NEW_DID,
      copied: { [CAPTAIN]: 1, [CREW]: 2 },
      rewrite: 3,
    })

    expect(await captainOf(moved)).toEqual(oldCaptain)
    expect((await listAll(moved, CREW)).map((r) => r.value)).toEqual(oldCrew)
    expect(oldCrew.map((c) => c.member).sort()).toEqual(
      [MEMBER, TEST_OWNER].sort(),
    )
    // Stats records come back from the counter table, the same as before and as getStats says.
    const stats = await statsRecords(moved)
    expect(stats).toEqual(oldStats)
    for (const value of stats.values()) {
      const view = await xrpc(moved.url, ids.HoldGetStats, {
        did: value.did as string,
        repo: value.repository as string,
      })
      const { $type, ownerDid, createdAt, updatedAt, ...counts } = value
      expect({ $type, ownerDid }).toEqual({ $type: STATS, ownerDid: value.did })
      expect(Date.parse(createdAt as string)).toBeLessThanOrEqual(
        Date.parse(updatedAt as string),
      )
      expect(view.body).toEqual({ ...counts, countSource: 'blob' })
    }
    expect(
      (
        await xrpc(moved.url, ids.HoldGetStats, {
          did: owner,
          repo: 'web',
        })
      ).body,
    ).toMatchObject({ pullCount: 1545, pushCount: 8 })

    const repo = await verified(moved)
    expect(repo.creates.map((c) => `${c.collection}/${c.rkey}`).sort()).toEqual(
      [
        `${CAPTAIN}/self`,
        ...(await listAll(moved, CREW)).map(
          (r) => `${CREW}/${r.uri.split('/').pop()}`,
        ),
        ...[...stats.keys()].map((k) => `${STATS}/${k}`),
      ].sort(),
    )
    // The old DID is gone; the blobs stay.
    const gone = await xrpc(moved.url, ids.RepoDescribeRepo, {
      repo: oldDid,
    })
    expect(gone.status).toBe(404)
    const blob = await fetch(
      `${moved.url}/xrpc/${ids.SyncGetBlob}?did=${owner}&cid=${digest}`,
    )
    expect(blob.status).toBe(200)
    expect((await blob.arrayBuffer()).byteLength).toBe(2000)
    const head = await headOf(moved)
    await moved.stop()

    // A later start with the variable still set only warns, and changes nothing.
    const again = await start(dataDir, {
      HOLD_PUBLIC_URL: NEW_URL,
      HOLD_REBIND_FROM: oldDid,
    })
    expect(again.commits()).toEqual([])
    expect(await headOf(again)).toEqual(head)
    expect(again.logs.some((l) => l.msg.startsWith('rebuilt'))).toBe(false)
    expect(
      again.logs.find((l) => l.msg.includes('nothing to rebuild')),
    ).toMatchObject({ level: 40 })
    expect(await statsRecords(again)).toEqual(oldStats)
    await verified(again)
  })

  it('refuses, in one line naming HOLD_REBIND_FROM, a new public URL without it or with another DID, and leaves the data dir as it was', async () => {
    const { h: old, dataDir } = await usedLocalHold()
    const oldDid = old.did
    const head = await headOf(old)
    const port = old.port
    await old.stop()

    const { code, output } = await runHoldToExit({
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: '0',
      HOLD_DATA_DIR: dataDir,
      HOLD_PUBLIC_URL: NEW_URL,
      LOG_LEVEL: 'info',
    })
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(`holds the repo of ${oldDid}`)
    expect(lines[0]).toContain(`set HOLD_REBIND_FROM=${oldDid}`)

    await expect(
      start(dataDir, {
        HOLD_PUBLIC_URL: NEW_URL,
        HOLD_REBIND_FROM: 'did:web:somewhere.else',
      }),
    ).rejects.toThrow(
      new RepoIdentityError(
        `the data dir holds the repo of ${oldDid}, but HOLD_PUBLIC_URL makes this hold ${NEW_DID}; HOLD_REBIND_FROM names did:web:somewhere.else, not that DID; restore the old HOLD_PUBLIC_URL, or set HOLD_REBIND_FROM=${oldDid} to rebuild the repo under the new DID, or use a new HOLD_DATA_DIR`,
      ),
    )

    // Still the old hold, untouched.
    const back = await start(dataDir, {}, port)
    expect(back.did).toBe(oldDid)
    expect(await headOf(back)).toEqual(head)
  })

  it('moves a self-owned hold of a first Fly deploy (localhost) to did:web:<app>.fly.dev, owner included', async () => {
    const dataDir = await newDataDir()
    const old = await start(dataDir, { HOLD_OWNER_DID: '' })
    expect((await captainOf(old)).owner).toBe(old.did)
    const oldDid = old.did
    await old.stop()

    // On Fly the public URL now defaults from FLY_APP_NAME; the secret names the old DID.
    const moved = await start(dataDir, {
      HOLD_OWNER_DID: '',
      FLY_APP_NAME: 'rebind-app',
      HOLD_REBIND_FROM: oldDid,
    })
    expect(moved.did).toBe('did:web:rebind-app.fly.dev')
    expect((await captainOf(moved)).owner).toBe(moved.did)
    const repo = await verified(moved)
    expect(repo.creates.map((c) => c.collection)).toEqual([CAPTAIN])
  })

  it('only warns when HOLD_REBIND_FROM is set on a data dir with no repo yet', async () => {
    const h = await start(await newDataDir(), {
      HOLD_REBIND_FROM: 'did:web:localhost%3A8080',
    })
    expect(h.warnings()).toEqual([
      'HOLD_REBIND_FROM is set, but the data dir holds no repo yet: nothing to rebuild; unset HOLD_REBIND_FROM',
    ])
    expect(h.logs.some((l) => l.msg === 'created repo')).toBe(true)
    await verified(h)
  })
})
