/**
 * A server in front of a live hold, with its own did:web identity whose #atcr_hold endpoint
 * is itself: it forwards requests to the hold, or answers as a broken hold would (a status,
 * garbage, or late), as the test says per request. It logs every /xrpc request it gets.
 */
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'

export type FrontAnswer =
  | 'forward'
  | { status: number; body: string; contentType?: string }
  | { delayMs: number }

export type Front = {
  did: string
  url: string
  /** The /xrpc paths asked, in order, without query strings. */
  seen: string[]
  /** Decides each /xrpc request; default forward. */
  answer: (nsid: string, n: number) => FrontAnswer
  close: () => Promise<void>
}

export const startFront = async (target: string): Promise<Front> => {
  const front = {
    seen: [] as string[],
    answer: (() => 'forward') as Front['answer'],
  } as Front
  const server: Server = createServer((req, res) => {
    // A client that goes away mid-request (a timeout, or close() below) rejects the body
    // read or the forward: nobody is left to answer, and the rejection must not outlive us.
    handle(req, res).catch(() => res.destroy())
  })
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (path === '/.well-known/did.json') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({
          '@context': ['https://www.w3.org/ns/did/v1'],
          id: front.did,
          service: [
            {
              id: '#atcr_hold',
              type: 'AtcrHold',
              serviceEndpoint: front.url,
            },
          ],
        }),
      )
      return
    }
    const nsid = path.replace(/^\/xrpc\//, '')
    front.seen.push(nsid)
    const n = front.seen.filter((s) => s === nsid).length
    let answer = front.answer(nsid, n)
    if (typeof answer === 'object' && 'delayMs' in answer) {
      const { delayMs } = answer
      await new Promise((r) => setTimeout(r, delayMs))
      answer = 'forward'
    }
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    if (answer !== 'forward') {
      res.writeHead(answer.status, {
        'content-type': answer.contentType ?? 'application/json',
      })
      res.end(answer.body)
      return
    }
    const headers = new Headers()
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && k !== 'host') headers.set(k, v)
    }
    const body = chunks.length ? Buffer.concat(chunks) : undefined
    const upstream = await fetch(new URL(req.url!, target), {
      method: req.method,
      headers,
      body,
    })
    const out = Buffer.from(await upstream.arrayBuffer())
    const resHeaders: Record<string, string> = {}
    upstream.headers.forEach((v, k) => {
      if (k !== 'content-encoding' && k !== 'transfer-encoding') {
        resHeaders[k] = v
      }
    })
    resHeaders['content-length'] = String(out.length)
    res.writeHead(upstream.status, resHeaders)
    res.end(out)
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  front.url = `http://localhost:${port}`
  front.did = `did:web:localhost%3A${port}`
  front.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  return front
}
