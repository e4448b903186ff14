import { cp } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { verifyRepoCar } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { ExportLimits } from '../src/repo/car-export.ts'
import {
  removeDir,
  startHold,
  tempDir,
  waitFor,
  xrpc,
  type TestHold,
} from './_util.ts'

// Enough records for a CAR larger than the kernel's socket buffers take from a client that
// reads nothing.
const RECORDS = 20_000
const CLIENT_HEADER = 'x-test-client'
/** Client addresses, as the trusted proxy header gives them. */
const CLIENT = {
  reader: '192.0.2.1',
  greedy: '192.0.2.2',
  other: '192.0.2.3',
  a: '192.0.2.4',
  b: '192.0.2.5',
  c: '192.0.2.6',
  sleeper: '192.0.2.7',
  late: '192.0.2.8',
}
// Every hold here serves a copy of one seeded data dir, so they share its identity.
const PUBLIC_URL = 'http://exports.test'

type Stalled = {
  status: number
  socket: Socket
  closed: Promise<void>
  /** Reads on to the end of the connection: whether the whole body came. */
  readToEnd: () => Promise<{ complete: boolean }>
}

/** A getRepo request whose client reads the first bytes of the answer, then stops reading. */
const stalledExport = (h: TestHold, client: string): Promise<Stalled> =>
  new Promise((resolve, reject) => {
    const socket = connect(h.port, '127.0.0.1')
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.once('error', () => undefined)
    socket.write(
      `GET /xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)} HTTP/1.1\r\n` +
        `host: localhost\r\n${CLIENT_HEADER}: ${client}\r\n\r\n`,
    )
    socket.once('data', (chunk: Buffer) => {
      socket.pause()
      const head = chunk.toString('latin1')
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1])
      const length = /content-length: (\d+)/i.exec(head)?.[1]
      const parts = [chunk.subarray(head.indexOf('\r\n\r\n') + 4)]
      const readToEnd = async () => {
        socket.on('data', (more: Buffer) => parts.push(more))
        socket.resume()
        await closed
        const body = Buffer.concat(parts)
        return {
          complete:
            length !== undefined
              ? body.byteLength >= Number(length)
              : chunkedComplete(body),
        }
      }
      resolve({ status, socket, closed, readToEnd })
    })
    socket.once('close', () => reject(new Error('closed before answering')))
  })

/** Whether a chunked body reached its last (empty) chunk. */
const chunkedComplete = (body: Buffer): boolean => {
  let at = 0
  for (;;) {
    const eol = body.indexOf('\r\n', at)
    if (eol < 0) return false
    const size = parseInt(body.subarray(at, eol).toString('latin1'), 16)
    if (Number.isNaN(size)) return false
    if (size === 0) return true
    at = eol + 2 + size + 2
    if (at > body.byteLength) return false
  }
}

const xrpcAs = (h: TestHold, client: string) =>
  xrpc(
    h.url,
    ids.SyncGetRepo,
    { did: h.did },
    { headers: { [CLIENT_HEADER]: client } },
  )

describe('getRepo exports', () => {
  let seeded: string
  const holds: TestHold[] = []
  const dirs: string[] = []

  const hold = async (limits: Partial<ExportLimits> = {}) => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    await cp(seeded, dataDir, { recursive: true })
    const h = await startHold({
      dataDir,
      env: {
        HOLD_STATS_FLUSH_MS: '86400000',
        HOLD_PUBLIC_URL: PUBLIC_URL,
        HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
      },
      overrides: { exportLimits: limits },
    })
    holds.push(h)
    return h
  }

  beforeAll(async () => {
    seeded = await tempDir()
    const h = await startHold({
      dataDir: seeded,
      env: { HOLD_STATS_FLUSH_MS: '86400000', HOLD_PUBLIC_URL: PUBLIC_URL },
    })
    for (let i = 0; i < RECORDS; i++) {
      h.hold.ctx.stats.countPull(
        `did:plc:export${String(i).padStart(8, '0')}`,
        'app',
      )
    }
    await h.hold.ctx.stats.flush()
    await h.stop()
  })
  afterAll(async () => {
    for (const h of holds) await h.stop()
    for (const dir of [...dirs, seeded]) await removeDir(dir)
  })

  it('send a CAR larger than one write chunked, from its first write on, and whole', async () => {
    const h = await hold()
    const res = await fetch(
      `${h.url}/xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)}`,
      { headers: { [CLIENT_HEADER]: CLIENT.reader } },
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car')
    // Its size is not known when the first bytes go: the CAR is still being written.
    expect(res.headers.get('content-length')).toBeNull()
    const car = new Uint8Array(await res.arrayBuffer())
    expect(car.byteLength).toBeGreaterThan(1 << 20)
    const repo = await verifyRepoCar(car, h.did)
    const stats = repo.creates.filter((c) => c.collection === ids.HoldStats)
    expect(stats).toHaveLength(RECORDS)
  })

  it('send an HTTP/1.0 client the whole CAR with its length, never chunked', async () => {
    const h = await hold()
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const socket = connect(h.port, '127.0.0.1')
      const parts: Buffer[] = []
      socket.on('data', (chunk: Buffer) => parts.push(chunk))
      socket.once('error', reject)
      socket.once('close', () => resolve(Buffer.concat(parts)))
      socket.write(
        `GET /xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)} HTTP/1.0\r\n` +
          `host: localhost\r\n${CLIENT_HEADER}: ${CLIENT.reader}\r\n\r\n`,
      )
    })
    const end = raw.indexOf('\r\n\r\n')
    const head = raw.subarray(0, end).toString('latin1')
    const body = raw.subarray(end + 4)
    expect(head).toMatch(/^HTTP\/1\.1 200 /)
    expect(head).not.toMatch(/transfer-encoding/i)
    expect(Number(/content-length: (\d+)/i.exec(head)?.[1])).toBe(
      body.byteLength,
    )
    expect(body.byteLength).toBeGreaterThan(1 << 20)
    const repo = await verifyRepoCar(new Uint8Array(body), h.did)
    expect(
      repo.creates.filter((c) => c.collection === ids.HoldStats),
    ).toHaveLength(RECORDS)
  })

  it('do not keep a snapshot open for a client that stops reading', async () => {
    const h = await hold()
    const stalled = await stalledExport(h, CLIENT.reader)
    expect(stalled.status).toBe(200)
    // A commit after the export began: the WAL can be emptied only once no reader is on an
    // older snapshot.
    h.hold.ctx.stats.countPull('did:plc:afterexport', 'app')
    await h.hold.ctx.stats.flush()
    const db = new DatabaseSync(join(h.dataDir, 'hold.sqlite'))
    try {
      db.exec('PRAGMA busy_timeout = 0')
      const truncated = await waitFor(() => {
        const row = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as {
          busy: number
        }
        return row.busy === 0
      }, 10_000).catch(() => false)
      expect(truncated).toBe(true)
    } finally {
      db.close()
      stalled.socket.destroy()
    }
  })

  it('allow two at a time per client, refuse a third with 429 and give the slot back when a client leaves', async () => {
    const h = await hold()
    const first = await stalledExport(h, CLIENT.greedy)
    const second = await stalledExport(h, CLIENT.greedy)
    expect([first.status, second.status]).toEqual([200, 200])
    const third = await xrpcAs(h, CLIENT.greedy)
    expect(third.status).toBe(429)
    expect(third.body).toMatchObject({ error: 'RateLimitExceeded' })
    expect((third.body as { message: string }).message).toMatch(
      /2 getRepo exports/,
    )
    const other = await xrpcAs(h, CLIENT.other)
    expect(other.status).toBe(200)
    first.socket.destroy()
    await first.closed
    const again = await waitFor(
      async () => (await xrpcAs(h, CLIENT.greedy)).status === 200,
    )
    expect(again).toBe(true)
    second.socket.destroy()
  })

  it('refuse exports over the total with 503 NotEnoughResources', async () => {
    const h = await hold({ total: 2 })
    const a = await stalledExport(h, CLIENT.a)
    const b = await stalledExport(h, CLIENT.b)
    const c = await xrpcAs(h, CLIENT.c)
    expect(c.status).toBe(503)
    expect(c.body).toMatchObject({ error: 'NotEnoughResources' })
    a.socket.destroy()
    b.socket.destroy()
    await Promise.all([a.closed, b.closed])
    const served = await waitFor(
      async () => (await xrpcAs(h, CLIENT.c)).status === 200,
    )
    expect(served).toBe(true)
  })

  it('cut an export whose client reads nothing for stallSeconds, and free its slot', async () => {
    const h = await hold({ perClient: 1, stallSeconds: 1 })
    const stalled = await stalledExport(h, CLIENT.sleeper)
    expect(stalled.status).toBe(200)
    expect((await xrpcAs(h, CLIENT.sleeper)).status).toBe(429)
    const freed = await waitFor(async () => {
      const res = await xrpcAs(h, CLIENT.sleeper)
      return res.status === 200
    })
    expect(freed).toBe(true)
    expect(await stalled.readToEnd()).toEqual({ complete: false })
  })

  it('cut an export still unfinished after maxSeconds, and free its slot', async () => {
    // The stall limit is far off, so only the deadline can cut this export. The client reads
    // nothing after the first bytes: a client that reads, however slowly, makes the kernel grow
    // its receive buffer (up to tcp_rmem's maximum, 32 MiB on some machines), and a buffer that
    // takes the whole CAR would let the export finish before the deadline.
    const h = await hold({ perClient: 1, maxSeconds: 1, stallSeconds: 60 })
    const slow = await stalledExport(h, CLIENT.late)
    expect(slow.status).toBe(200)
    expect((await xrpcAs(h, CLIENT.late)).status).toBe(429)
    // waitFor gives up after 10 s, well before the stall limit could free the slot.
    const freed = await waitFor(async () => {
      const res = await xrpcAs(h, CLIENT.late)
      return res.status === 200
    })
    expect(freed).toBe(true)
    expect(await slow.readToEnd()).toEqual({ complete: false })
  })
})
