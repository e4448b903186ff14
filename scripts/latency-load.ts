/**
 * An open-loop load for latency tails, for a load generator with a core of its own
 * (`bench:scale --pin`): requests due at a fixed rate, each timed from the moment it was due to
 * the last byte of its response, as `openLoad` (scripts/lib.ts) times them, but sent by a
 * generator whose own delays stay below the hold's.
 *
 * `openLoad` drives node:http's client, which makes a request, a response and their parsers and
 * streams for every call and wakes on timers (1 ms apart at the least). At 2,000 req/s on this
 * machine that generator alone, against the bare Hono route, measured p99 22-58 ms and p50
 * 1.1-1.3 ms; this one 0.8-1.8 ms and 0.15 ms in the same runs. Both queue a request that is due
 * while every connection is busy and count the wait in its time. This one:
 * - writes each request as prepared bytes on a raw keep-alive socket (one in flight per
 *   connection) and reads the response's length from its head (Content-Length, or chunked);
 * - sends when a request is due by polling the clock through setImmediate, so it keeps its core
 *   busy: give it one (taskset), or its polling takes the hold's CPU.
 */
import net from 'node:net'
import {
  Worker,
  isMainThread,
  parentPort,
  workerData,
} from 'node:worker_threads'
import type { OpenRun } from './lib.ts'

export type LatencyLoadOptions = {
  base: string
  paths: string[]
  /** Requests a second */
  rate: number
  /** Seconds */
  duration: number
  /** Keep-alive connections, one request in flight on each (default 8) */
  connections?: number
}

/** Runs the load in a worker thread of its own, so the bench's own work cannot delay it. */
export const latencyLoad = (opts: LatencyLoadOptions): Promise<OpenRun> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { latencyLoad: opts },
    })
    worker.once('message', (run: OpenRun) => {
      resolve(run)
      void worker.terminate()
    })
    worker.once('error', reject)
  })

/**
 * Where one response ends in `buf` (its head and body), or -1 while it is incomplete.
 * Chunked bodies are read chunk by chunk (no trailers: the hold sends none).
 */
export const responseEnd = (buf: Buffer): number => {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd < 0) return -1
  const head = buf.toString('latin1', 0, headEnd)
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
  if (length) {
    const end = headEnd + 4 + Number(length[1])
    return buf.length >= end ? end : -1
  }
  if (!/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    throw new Error(`a response with neither a length nor chunks: ${head}`)
  }
  let at = headEnd + 4
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at)
    if (lineEnd < 0) return -1
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16)
    if (Number.isNaN(size)) throw new Error('a malformed chunk size')
    const next = lineEnd + 2 + size + 2
    if (buf.length < next) return -1
    if (size === 0) return next
    at = next
  }
}

const run = (opts: LatencyLoadOptions): Promise<OpenRun> =>
  new Promise((resolve) => {
    const url = new URL(opts.base)
    const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname
    const port = Number(url.port)
    const total = Math.round(opts.rate * opts.duration)
    const interval = 1000 / opts.rate
    const latency = new Float64Array(total)
    const requests = opts.paths.map((path) =>
      Buffer.from(
        `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`,
        'latin1',
      ),
    )
    // Due but not yet sent (every connection busy), oldest first.
    const waiting: number[] = []
    let waitingFrom = 0
    let sent = 0
    let done = 0
    let ok = 0
    let errors = 0
    const t0 = performance.now() + 50

    type Connection = { socket: net.Socket; inFlight: number; buf: Buffer }
    const connections: Connection[] = []
    const settle = (i: number, good: boolean) => {
      latency[i] = performance.now() - (t0 + i * interval)
      if (good) ok++
      else errors++
      if (++done < total) return
      const elapsed = performance.now() - t0
      const sorted = Array.from(latency).sort((a, b) => a - b)
      const at = (q: number) =>
        +sorted[Math.min(total - 1, Math.floor(q * total))].toFixed(2)
      for (const c of connections) c.socket.destroy()
      resolve({
        rps: ok / (elapsed / 1000),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: +sorted[total - 1].toFixed(2),
        ok,
        errors,
        generatorStall: +stall.toFixed(2),
      })
    }
    const dispatch = (c: Connection) => {
      if (c.inFlight !== -1 || waitingFrom === waiting.length) return
      const i = waiting[waitingFrom++]
      c.inFlight = i
      c.socket.write(requests[i % requests.length])
    }
    const connect = (c: Connection) => {
      const socket = net.connect({ host, port })
      socket.setNoDelay(true)
      c.socket = socket
      c.buf = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        c.buf = c.buf.length ? Buffer.concat([c.buf, chunk]) : chunk
        for (;;) {
          const end = responseEnd(c.buf)
          if (end < 0) return
          const status = Number(c.buf.toString('latin1', 9, 12))
          c.buf = c.buf.subarray(end)
          const i = c.inFlight
          c.inFlight = -1
          dispatch(c)
          settle(i, status >= 200 && status < 300)
        }
      })
      socket.on('error', () => {})
      // A connection the hold closes: the request on it failed; the next goes on a new one.
      socket.on('close', () => {
        if (done === total) return
        const i = c.inFlight
        c.inFlight = -1
        connect(c)
        if (i !== -1) settle(i, false)
      })
    }
    for (let k = 0; k < (opts.connections ?? 8); k++) {
      const c = { inFlight: -1, buf: Buffer.alloc(0) } as Connection
      connections.push(c)
      connect(c)
    }
    // The longest gap between two ticks while requests were still to be sent.
    let lastTick = t0
    let stall = 0
    const tick = () => {
      const now = performance.now()
      if (now > t0) {
        stall = Math.max(stall, now - Math.max(lastTick, t0))
        lastTick = now
      }
      while (sent < total && t0 + sent * interval <= now) waiting.push(sent++)
      for (const c of connections) dispatch(c)
      if (sent < total) setImmediate(tick)
    }
    setImmediate(tick)
  })

if (!isMainThread && workerData?.latencyLoad) {
  parentPort?.postMessage(
    await run((workerData as { latencyLoad: LatencyLoadOptions }).latencyLoad),
  )
}
