/**
 * subscribeRepos clients for scripts/bench-firehose.ts, in a process of their own: `n` live
 * subscribers of `url`. One decodes every frame and times commit events from their `time`
 * (set as the hold starts the commit's transaction) to arrival; the others only count bytes, so
 * the clients' own cost stays small. Sends {ready} once all are connected; on 'stop' sends
 * what it measured and exits.
 */
import { Frame, MessageFrame } from '@atproto/xrpc-server'
import WebSocket from 'ws'

const [url, count] = [process.argv[2], Number(process.argv[3])]
const send = (msg: unknown) => process.send!(msg)
const latency: number[] = []
let frames = 0
let bytes = 0
let closed = 0
const sockets: WebSocket[] = []
await Promise.all(
  Array.from(
    { length: count },
    (_, i) =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(
          `${url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`,
        )
        sockets.push(ws)
        ws.on('message', (data: Buffer) => {
          frames++
          bytes += data.byteLength
          if (i !== 0) return
          const frame = Frame.fromBytes(new Uint8Array(data))
          if (frame instanceof MessageFrame && frame.type === '#commit') {
            const { time } = frame.body as { time: string }
            latency.push(Date.now() - Date.parse(time))
          }
        })
        ws.on('close', () => closed++)
        ws.once('open', () => resolve())
        ws.once('error', reject)
      }),
  ),
)
send({ ready: true })
process.on('message', (msg) => {
  if (msg !== 'stop') return
  for (const ws of sockets) ws.terminate()
  send({ latency, frames, bytes, closed })
  process.disconnect?.()
})
