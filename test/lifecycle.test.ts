import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  atprotoKeyFromDidDoc,
  ownerAuth,
  getBytes,
  removeDir,
  sleep,
  spawnHold,
  tempDir,
  waitFor,
  xrpc,
  type SpawnedHold,
} from './_util.ts'
import { verifiedRepo } from './_repo.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

const spawned: SpawnedHold[] = []
const dirs: string[] = []

afterEach(async () => {
  for (const s of spawned.splice(0)) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill('SIGKILL')
      await s.exited
    }
  }
  await Promise.all(dirs.splice(0).map(removeDir))
})

const newDataDir = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return dir
}

const spawn = async (opts: Parameters<typeof spawnHold>[0]) => {
  const s = await spawnHold(opts)
  spawned.push(s)
  return s
}

const identity = async (s: SpawnedHold) => {
  const did = await (await fetch(`${s.url}/.well-known/atproto-did`)).text()
  const doc = (await (
    await fetch(`${s.url}/.well-known/did.json`)
  ).json()) as Parameters<typeof atprotoKeyFromDidDoc>[0]
  const head = await xrpc<{ cid: string; rev: string }>(
    s.url,
    ids.SyncGetLatestCommit,
    { did },
  )
  expect(head.status).toBe(200)
  return { did, key: atprotoKeyFromDidDoc(doc), head: head.body }
}

describe('process lifecycle', () => {
  it('lets an upload in flight finish after SIGTERM, refuses new connections, and exits 0 on its own', async () => {
    const dataDir = await newDataDir()
    const s = await spawn({ dataDir })
    const payload = randomBytes(256 * 1024)
    const hex = createHash('sha256').update(payload).digest('hex')
    const signed = await xrpc<{ url: string }>(
      s.url,
      ids.SyncGetBlob,
      { did: 'did:plc:x', cid: `sha256:${hex}`, method: 'PUT' },
      { headers: await ownerAuth(s.url) },
    )
    expect(signed.status).toBe(200)

    const chunks = Array.from({ length: 8 }, (_, i) =>
      payload.subarray(i * 32 * 1024, (i + 1) * 32 * 1024),
    )
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === chunks.length) {
          controller.close()
          return
        }
        if (sent > 0) await sleep(150)
        controller.enqueue(chunks[sent++])
      },
    })
    const upload = fetch(signed.body.url, {
      method: 'PUT',
      body,
      duplex: 'half',
    } as RequestInit)

    await waitFor(() => sent >= 2)
    s.proc.kill('SIGTERM')
    await waitFor(() => s.output().includes('"stopping"'))
    expect(sent).toBeLessThan(chunks.length)
    await expect(fetch(`${s.url}/xrpc/_health`)).rejects.toThrow()

    const res = await upload
    expect(res.status).toBe(201)
    expect(await res.json()).toEqual({
      digest: `sha256:${hex}`,
      size: payload.byteLength,
    })
    expect(sent).toBe(chunks.length)

    // On its own and promptly: the finished upload's keep-alive connection must not hold the
    // stop open until keepAliveTimeout.
    const exit = await Promise.race([
      s.exited,
      sleep(5000).then(() => 'still running 5 s after the last response'),
    ])
    expect(exit).toEqual({ code: 0, signal: null })
    expect(s.output()).toContain('hold stopped')
    expect(s.output()).not.toMatch(/"level":(50|60)/)
    // The database was closed, not abandoned: SQLite folds the WAL back in on the last close.
    expect(existsSync(join(dataDir, 'hold.sqlite-wal'))).toBe(false)

    const again = await spawn({ dataDir, port: s.port })
    const stored = await getBytes(again.url, ids.SyncGetBlob, {
      did: 'did:plc:x',
      cid: `sha256:${hex}`,
    })
    expect(stored.status).toBe(200)
    expect(Buffer.from(stored.bytes).equals(payload)).toBe(true)
    again.proc.kill('SIGTERM')
    expect((await again.exited).code).toBe(0)
  })

  it('exits 0 on SIGINT', async () => {
    const s = await spawn({ dataDir: await newDataDir() })
    expect((await xrpc(s.url, '_health')).status).toBe(200)
    s.proc.kill('SIGINT')
    expect(await s.exited).toEqual({ code: 0, signal: null })
    expect(s.output()).toContain('hold stopped')
  })

  it('keeps the DID, the signing key and the head across a stop and a restart on the same data dir', async () => {
    const dataDir = await newDataDir()
    const env = { HOLD_OWNER_DID: OWNER }
    const first = await spawn({ dataDir, env })
    const before = await identity(first)
    expect(before.did).toBe(first.did)
    first.proc.kill('SIGTERM')
    expect((await first.exited).code).toBe(0)

    const second = await spawn({ dataDir, env, port: first.port })
    const after = await identity(second)
    expect(after).toEqual(before)
    expect(second.output()).not.toContain('created repo')
    expect(second.output()).not.toContain('captain record')
    const verified = await verifiedRepo(second.url, after.did, {
      key: after.key,
    })
    expect(verified.commit.rev).toBe(before.head.rev)
    second.proc.kill('SIGTERM')
    expect((await second.exited).code).toBe(0)
  })
})
