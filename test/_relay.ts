import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Relay = {
  url: string
  /** The hostname of each requestCrawl received. */
  requests: string[]
  server: Server
}

/** A relay stand-in that answers requestCrawl with `answer(n)` (n: requests so far). */
export const startRelay = async (
  answer: (n: number) => { status: number; body?: unknown } = () => ({
    status: 200,
  }),
): Promise<Relay> => {
  const requests: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (
        req.method !== 'POST' ||
        req.url !== '/xrpc/com.atproto.sync.requestCrawl'
      ) {
        res.writeHead(404).end()
        return
      }
      requests.push((JSON.parse(body) as { hostname: string }).hostname)
      const { status, body: out } = answer(requests.length)
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(out ?? {}))
    })
  })
  await new Promise<void>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve()),
  )
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, requests, server }
}
