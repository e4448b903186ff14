import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { HoldServer } from '../src/server.ts'
import { identity } from './_identity.ts'
import { startLogged } from './_logged.ts'
import { ownerAuth, removeDir, tempDir, xrpc } from './_util.ts'

const OWNER = 'did:plc:ownerkept000000000000000'
const PUBLIC_URL = 'https://hold.owner-kept.test'
const DID = 'did:web:hold.owner-kept.test'
const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew

const running: HoldServer[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.destroy()))
  await Promise.all(dirs.splice(0).map(removeDir))
})

/** The real hold with the given HOLD_OWNER_DID ('' = unset) and a fixed DID. */
const start = async (dataDir: string, ownerDid: string) => {
  await identity(OWNER)
  const h = await startLogged(
    dataDir,
    { HOLD_PUBLIC_URL: PUBLIC_URL, HOLD_OWNER_DID: ownerDid },
    { running },
  )
  return {
    ...h,
    warnedSelfOwned: () =>
      h.warnings().some((m) => m.includes('names the hold itself as owner')),
  }
}

const captain = async (url: string) =>
  (
    await xrpc<{ cid: string; value: { owner: string } }>(
      url,
      ids.RepoGetRecord,
      { repo: DID, collection: CAPTAIN, rkey: 'self' },
    )
  ).body

const head = async (url: string) =>
  (
    await xrpc<{ rev: string }>(url, ids.SyncGetLatestCommit, {
      did: DID,
    })
  ).body.rev

describe('HOLD_OWNER_DID left unset on a restart', () => {
  it('keeps the owner the captain record names: no commit, no warning, and the owner can still push', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const first = await start(dataDir, OWNER)
    expect((await captain(first.url)).value.owner).toBe(OWNER)
    const before = await captain(first.url)
    const rev = await head(first.url)
    await first.stop()

    const again = await start(dataDir, '')
    expect(await captain(again.url)).toEqual(before)
    expect(again.commits()).toEqual([])
    expect(await head(again.url)).toBe(rev)
    expect(again.warnedSelfOwned()).toBe(false)
    expect(
      again.logs.find((l) => l.msg.includes('keeping the owner')),
    ).toMatchObject({ owner: OWNER })
    const crew = await xrpc<{ records: { value: { member: string } }[] }>(
      again.url,
      ids.RepoListRecords,
      { repo: DID, collection: CREW },
    )
    expect(crew.body.records.map((r) => r.value.member)).toEqual([OWNER])
    // The owner's real service token still authorizes an upload.
    const bytes = randomBytes(64)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const signed = await xrpc<{ url: string }>(
      again.url,
      ids.SyncGetBlob,
      { did: OWNER, cid: digest, method: 'PUT', repo: 'app' },
      { headers: await ownerAuth(again.url) },
    )
    expect(signed.status).toBe(200)
    const put = new URL(signed.body.url)
    const stored = await fetch(`${again.url}${put.pathname}${put.search}`, {
      method: 'PUT',
      body: bytes,
    })
    expect(stored.status).toBe(201)
  })

  it('still names the hold itself, with the warning, when no start ever had an owner', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const first = await start(dataDir, '')
    expect((await captain(first.url)).value.owner).toBe(DID)
    expect(first.warnedSelfOwned()).toBe(true)
    await first.stop()

    const again = await start(dataDir, '')
    expect((await captain(again.url)).value.owner).toBe(DID)
    expect(again.warnedSelfOwned()).toBe(true)
    expect(again.commits()).toEqual([])
  })
})
