import { ids } from '../src/ids.ts'
import { threadId } from 'node:worker_threads'
import { readCarWithRoot } from '@atproto/repo'
import { CarSpooler } from '../src/repo/car-export.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { removeDir, startHold, tempDir, xrpc, type TestHold } from './_util.ts'

const RECORDS = 2_000
const CLIENT_HEADER = 'x-test-client'
const EXPORTS = 8

const getRepo = async (h: TestHold, client: string) => {
  const res = await fetch(
    `${h.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(h.did)}`,
    { headers: { [CLIENT_HEADER]: client } },
  )
  const bytes = new Uint8Array(await res.arrayBuffer())
  return {
    status: res.status,
    length: Number(res.headers.get('content-length')),
    bytes,
  }
}

describe('getRepo exports are spooled off the event loop', () => {
  let h: TestHold
  let dataDir: string

  beforeAll(async () => {
    dataDir = await tempDir()
    h = await startHold({
      dataDir,
      env: {
        HOLD_STATS_FLUSH_MS: '86400000',
        HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
      },
    })
    for (let i = 0; i < RECORDS; i++) {
      h.hold.ctx.stats.countPull(
        `did:plc:spool${String(i).padStart(8, '0')}`,
        'app',
      )
    }
    await h.hold.ctx.stats.flush()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(dataDir)
  })

  it('writes the CAR in a worker thread, not the one serving requests', async () => {
    const car = await h.hold.ctx.carSpooler.spool(undefined)
    try {
      expect(await car.whole).toBeGreaterThan(RECORDS * 100)
      expect(car.thread).not.toBe(threadId)
      expect(car.written).toBe(car.size)
    } finally {
      await car.close()
    }
  })

  it('answers _health while the most exports at once are spooled, and every export is whole', async () => {
    const head = await xrpc<{ rev: string; cid: string }>(
      h.url,
      ids.SyncGetLatestCommit,
      { did: h.did },
    )
    const exports = Array.from({ length: EXPORTS }, (_, i) =>
      getRepo(h, `192.0.2.${i + 1}`),
    )
    const health = await Promise.all(
      Array.from({ length: 5 }, () => fetch(`${h.url}/xrpc/_health`)),
    )
    for (const res of health) expect(res.status).toBe(200)
    const done = await Promise.all(exports)
    for (const e of done) {
      expect(e.status).toBe(200)
      expect(e.bytes.byteLength).toBe(e.length)
      expect(Buffer.from(e.bytes).equals(Buffer.from(done[0].bytes))).toBe(true)
    }
    const { root, blocks } = await readCarWithRoot(done[0].bytes)
    expect(root.toString()).toBe(head.body.cid)
    expect(blocks.size).toBeGreaterThan(RECORDS)
  })

  it('stops a spool whose client has gone, and the next one still works', async () => {
    const gone = new AbortController()
    gone.abort()
    await expect(
      h.hold.ctx.carSpooler.spool(undefined, gone.signal),
    ).rejects.toThrow()
    const car = await h.hold.ctx.carSpooler.spool(undefined)
    expect(await car.whole).toBeGreaterThan(0)
    await car.close()
  })

  it('gives up a spool whose client leaves while its file is made, and starts no worker', async () => {
    const spooler = new CarSpooler(h.hold.ctx.db.path)
    try {
      const gone = new AbortController()
      const spooled = spooler.spool(undefined, gone.signal)
      gone.abort()
      await expect(spooled).rejects.toThrow(/abort/i)
      expect(spooler.running).toBe(false)
    } finally {
      await spooler.close()
    }
  })

  it('refuses a spool when the hold stops while its file is made, and starts no worker', async () => {
    const spooler = new CarSpooler(h.hold.ctx.db.path)
    const spooled = spooler.spool(undefined)
    await spooler.close()
    await expect(spooled).rejects.toThrow(/shutting down/)
    expect(spooler.running).toBe(false)
  })

  it('lets the worker go when no export has run for a while, and starts another for the next', async () => {
    const spooler = new CarSpooler(h.hold.ctx.db.path, { idleMs: 50 })
    try {
      const first = await spooler.spool(undefined)
      await first.whole
      await first.close()
      expect(spooler.running).toBe(true)
      await waitFor(() => !spooler.running, 5000)
      const second = await spooler.spool(undefined)
      expect(await second.whole).toBe(first.size)
      await second.close()
      expect(second.thread).not.toBe(first.thread)
    } finally {
      await spooler.close()
    }
  })
})

const waitFor = async (done: () => boolean, ms: number) => {
  const until = Date.now() + ms
  while (!done()) {
    if (Date.now() > until) throw new Error(`not done within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
