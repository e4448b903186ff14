import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { MessageFrame } from '@atproto/xrpc-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { SUBSCRIBE_REPOS_PATH } from '../src/firehose/subscribe-repos.ts'
import { pathsOf, statsPuts } from './_evented-repo.ts'
import { startFirehose, subscribe, type FirehoseHost } from './_firehose.ts'
import { sleep, waitFor } from './_util.ts'

// subscribeRepos over a real HTTP server and real WebSocket clients, fed by commits made
// through our own commit path: cursors, errors, backpressure, keepalive and shutdown.

const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i)

describe('subscribeRepos cursors', () => {
  let host: FirehoseHost

  beforeAll(async () => {
    // Small recent-frame memory and pages: replays cross from log pages into memory.
    host = await startFirehose({
      options: { recentBytes: 60_000, pageSize: 5 },
    })
    for (let i = 0; i < 20; i++) await host.repo.put(statsPuts(i * 10, 10))
  })
  afterAll(() => host.destroy())

  it('replays from 0 and from the middle, then goes live, with no gap and no duplicate', async () => {
    const head = host.repo.sequencer.current()
    const fromZero = await subscribe(host.url, '?cursor=0')
    const fromMiddle = await subscribe(host.url, '?cursor=9')
    const live = await subscribe(host.url)
    for (let i = 0; i < 30; i++) {
      await host.repo.put(statsPuts(5000 + i * 3, 3))
      if (i % 10 === 0) await host.repo.delete(pathsOf(statsPuts(i, 2)))
    }
    const end = host.repo.sequencer.current()
    expect(end).toBe(head + 33)
    await Promise.all([fromZero, fromMiddle, live].map((s) => s.untilSeq(end)))
    expect(fromZero.seqs()).toEqual(range(1, end))
    expect(fromMiddle.seqs()).toEqual(range(10, end))
    // Live from whenever it joined, then every event.
    expect(live.seqs()).toEqual(range(live.seqs()[0], end))
    expect(live.seqs()[0]).toBeGreaterThan(head)
    // The frames are the log's, byte for byte.
    const stored = host.repo.sequencer.after(0, 1000)
    expect(fromZero.frames.map((f) => (f.body as { seq: number }).seq)).toEqual(
      stored.map((e) => e.seq),
    )
    for (const s of [fromZero, fromMiddle, live]) s.ws.close()
  })

  it('answers a cursor in the future with FutureCursor and closes (1008)', async () => {
    const sub = await subscribe(
      host.url,
      `?cursor=${host.repo.sequencer.current() + 1}`,
    )
    expect(await sub.closed).toEqual({ code: 1008, reason: 'FutureCursor' })
    expect(sub.errorFrame()?.body).toEqual({
      error: 'FutureCursor',
      message: 'Cursor in the future.',
    })
  })

  it.each(['?cursor=abc', '?cursor=-1', '?cursor=1.5', '?cursor=1&cursor=2'])(
    'refuses %s with InvalidRequest and closes (1008)',
    async (query) => {
      const sub = await subscribe(host.url, query)
      expect((await sub.closed).code).toBe(1008)
      expect(sub.errorFrame()?.code).toBe('InvalidRequest')
      expect(sub.seqs()).toEqual([])
    },
  )

  it('refuses other paths (404) and subscribers past the limit (503)', async () => {
    const other = new WebSocket(`${host.url.replace('http', 'ws')}/xrpc/other`)
    other.on('error', () => {})
    const status = await new Promise<number>((resolve) =>
      other.once('unexpected-response', (_req, res) =>
        resolve(res.statusCode ?? 0),
      ),
    )
    expect(status).toBe(404)
    other.terminate()
    const small = await startFirehose({ options: { maxSubscribers: 1 } })
    try {
      const first = await subscribe(small.url)
      const second = new WebSocket(
        `${small.url.replace('http', 'ws')}${SUBSCRIBE_REPOS_PATH}`,
      )
      second.on('error', () => {})
      const refused = await new Promise<number>((resolve) =>
        second.once('unexpected-response', (_req, res) =>
          resolve(res.statusCode ?? 0),
        ),
      )
      expect(refused).toBe(503)
      second.terminate()
      first.ws.close()
    } finally {
      await small.destroy()
    }
  })

  it('sends #info OutdatedCursor, then replays from the oldest event kept, once old ones are pruned', async () => {
    const before = host.repo.sequencer.current()
    await host.repo.sequencer.prune(new Date(Date.now() + 60_000))
    expect(host.repo.sequencer.oldest()).toBeNull()
    // Nothing kept: the info, then live.
    const empty = await subscribe(host.url, '?cursor=3')
    await host.repo.put(statsPuts(9000, 2))
    await empty.untilSeq(before + 1)
    const info = empty.frames[0] as MessageFrame
    expect(info.type).toBe('#info')
    expect((info.body as { name: string }).name).toBe('OutdatedCursor')
    expect(empty.seqs()).toEqual([before + 1])
    await host.repo.put(statsPuts(9100, 2))
    const kept = await subscribe(host.url, '?cursor=3')
    await kept.untilSeq(before + 2)
    expect((kept.frames[0] as MessageFrame).type).toBe('#info')
    expect(kept.seqs()).toEqual([before + 1, before + 2])
    // A cursor right before the oldest kept misses nothing: no info.
    const exact = await subscribe(host.url, `?cursor=${before}`)
    await exact.untilSeq(before + 2)
    expect(
      exact.frames.every((f) => (f as MessageFrame).type !== '#info'),
    ).toBe(true)
    for (const s of [empty, kept, exact]) s.ws.close()
  })
})

describe('subscribeRepos backpressure and keepalive', () => {
  it('cuts a subscriber that stops reading with ConsumerTooSlow, holding no more than its socket buffer', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const highWaterBytes = 128 * 1024
    const host = await startFirehose({
      options: { highWaterBytes, recentBytes: 512 * 1024, stallMs: 6000 },
    })
    try {
      const sub = await subscribe(host.url)
      // Stop reading: the kernel's buffers fill, then the hold's.
      ;(sub.ws as unknown as { _socket: { pause(): void } })._socket.pause()
      // Large records make large events: ~0.8 MB each.
      const big = (i: number, round: number) =>
        statsPuts(i * 100, 100, round).map((p) => ({
          ...p,
          record: { ...p.record, note: `${round}:${'x'.repeat(8000)}` },
        }))
      gc()
      const base = process.memoryUsage().arrayBuffers
      // Held memory after each commit; a sample can catch a transient buffer (a frame on its
      // way out), so the test holds the median of all samples and the median of the last ten,
      // which grow with what is sequenced when the hold keeps frames for a subscriber that
      // does not read them.
      const memory: number[] = []
      let peakBuffered = 0
      let logged = 0
      for (let round = 1; host.firehose.stats().subscribers > 0; round++) {
        if (round > 200) throw new Error('the subscriber was never cut')
        const [event] = await host.repo.put(big(round % 3, round))
        logged += event.frame.byteLength
        peakBuffered = Math.max(
          peakBuffered,
          host.firehose.stats().bufferedBytes,
        )
        gc()
        memory.push(process.memoryUsage().arrayBuffers - base)
        await sleep(20)
      }
      const stats = host.firehose.stats()
      expect(stats.cut).toEqual({ ConsumerTooSlow: 1 })
      expect(stats.framesDropped).toBeGreaterThan(0)
      // What was sequenced while it stalled is far more than what the hold held for it.
      expect(logged).toBeGreaterThan(8 * 1024 * 1024)
      expect(peakBuffered).toBeLessThan(highWaterBytes + 2_000_000)
      const middle = (xs: number[]) =>
        [...xs].sort((a, b) => a - b)[xs.length >> 1]
      const median = middle(memory)
      expect(median).toBeLessThan(4 * 1024 * 1024)
      expect(memory.length).toBeGreaterThan(10)
      expect(middle(memory.slice(-10))).toBeLessThan(4 * 1024 * 1024)
      console.log(
        `stalled subscriber: ${(logged / 2 ** 20).toFixed(1)} MiB sequenced, peak socket buffer ${(peakBuffered / 2 ** 20).toFixed(2)} MiB, arrayBuffers median +${(median / 2 ** 20).toFixed(1)} MiB, last ten's median +${(middle(memory.slice(-10)) / 2 ** 20).toFixed(1)} MiB, last +${(memory.at(-1)! / 2 ** 20).toFixed(1)} MiB`,
      )
      sub.ws.terminate()
    } finally {
      await host.destroy()
    }
  })

  it('pings subscribers and cuts one that does not answer', async () => {
    const host = await startFirehose({ options: { pingMs: 200 } })
    try {
      const silent = await subscribe(host.url, '', { autoPong: false })
      const polite = await subscribe(host.url)
      let pings = 0
      polite.ws.on('ping', () => pings++)
      expect((await silent.closed).code).toBe(1006)
      expect(host.firehose.stats().cut).toEqual({ NoPong: 1 })
      await waitFor(() => pings >= 3)
      expect(polite.ws.readyState).toBe(WebSocket.OPEN)
      polite.ws.close()
    } finally {
      await host.destroy()
    }
  })

  it('closes every subscriber on close() (1001), so the server can stop', async () => {
    const host = await startFirehose()
    const subs = await Promise.all([1, 2, 3].map(() => subscribe(host.url)))
    await host.firehose.close()
    for (const sub of subs) {
      expect(await sub.closed).toEqual({ code: 1001, reason: 'hold stopping' })
    }
    expect(host.firehose.stats().subscribers).toBe(0)
    // Nothing upgraded is left open: the server stops.
    await new Promise((resolve) => host.server.close(resolve))
    await host.repo.close()
  })
})
