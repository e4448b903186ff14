import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { latencyLoad, responseEnd } from '../scripts/latency-load.ts'

// The lean load generator bench:scale --pin times the stats routes with: every request is
// answered, counted once, and a good answer is told from a bad one, whatever the framing.
describe('the latency load generator', () => {
  let server: Server
  let base: string
  const seen: string[] = []
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.url ?? '')
      if (req.url === '/length') {
        res.setHeader('content-length', 4)
        res.end('four')
      } else if (req.url === '/chunked') {
        // Two chunks a tick apart, so they can arrive in separate reads.
        res.write('{"a":')
        setImmediate(() => res.end('1}'))
      } else if (req.url === '/fails') {
        res.statusCode = 500
        res.end('{"error":"InternalServerError"}')
      } else {
        // The connection closed with the request unanswered.
        req.socket.destroy()
      }
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('sends rate x duration requests round the paths and counts each answer once', async () => {
    seen.length = 0
    const run = await latencyLoad({
      base,
      paths: ['/length', '/chunked', '/fails', '/closes'],
      rate: 400,
      duration: 0.5,
      connections: 3,
    })
    expect(run.ok + run.errors).toBe(200)
    expect(run.ok).toBe(100)
    expect(run.errors).toBe(100)
    expect(seen.length).toBe(200)
    expect(seen.filter((url) => url === '/chunked').length).toBe(50)
    expect(run.p50).toBeGreaterThan(0)
    expect(run.p99).toBeGreaterThanOrEqual(run.p50)
    expect(run.max).toBeGreaterThanOrEqual(run.p999)
    // Its own longest stall, to tell a tail of its own from the server's: within the run.
    expect(run.generatorStall).toBeGreaterThan(0)
    expect(run.generatorStall).toBeLessThan(500)
  })

  it('finds where a response ends, or that it has not yet', () => {
    const length = Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfourHTTP',
    )
    expect(responseEnd(length)).toBe(length.length - 4)
    expect(responseEnd(length.subarray(0, length.length - 6))).toBe(-1)
    const chunked = Buffer.from(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n',
    )
    expect(responseEnd(chunked)).toBe(chunked.length)
    for (let cut = 0; cut < chunked.length; cut++) {
      expect(responseEnd(chunked.subarray(0, cut))).toBe(-1)
    }
    expect(() =>
      responseEnd(Buffer.from('HTTP/1.1 200 OK\r\nX: y\r\n\r\nbody')),
    ).toThrow('neither a length nor chunks')
  })
})
