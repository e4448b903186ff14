import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { ErrorFrame, Frame, MessageFrame } from '@atproto/xrpc-server'
import WebSocket from 'ws'
import {
  SubscribeRepos,
  SUBSCRIBE_REPOS_PATH,
  type SubscribeReposOptions,
} from '../src/firehose/subscribe-repos.ts'
import type { ServerConfig } from '../src/config.ts'
import { didDocument } from '../src/identity.ts'
import { EventedRepo } from './_evented-repo.ts'
import { removeDir, tempDir } from './_util.ts'

/**
 * subscribeRepos on a real HTTP server, fed by an evented repo (our commit path), with the
 * repo's did:web document served from the same port, so a consumer that verifies commits
 * (@atproto/sync's Firehose) resolves the key the commits are signed with.
 */
export type FirehoseHost = {
  url: string
  port: number
  did: string
  dir: string
  server: Server
  repo: EventedRepo
  firehose: SubscribeRepos
  /** Stops the firehose, the server and the repo; keeps the data dir. */
  stop: () => Promise<void>
  /** Stops, then starts again on the same port and data dir (with `keypair`, if given). */
  restart: (keypair?: Keypair) => Promise<FirehoseHost>
  /** Stops and removes the data dir. */
  destroy: () => Promise<void>
}

export const startFirehose = async (
  opts: {
    options?: Partial<SubscribeReposOptions>
    keypair?: Keypair
    dir?: string
    port?: number
    /** The key did.json publishes, when it should not be the signing key's. */
    publishKey?: string
  } = {},
): Promise<FirehoseHost> => {
  const dir = opts.dir ?? (await tempDir())
  const keypair = opts.keypair ?? (await Secp256k1Keypair.create())
  const didDoc: { doc?: unknown } = {}
  const server = createServer((req, res) => {
    if (req.url === '/.well-known/did.json' && didDoc.doc) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(didDoc.doc))
    } else {
      res.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) =>
    server.listen(opts.port ?? 0, '127.0.0.1', resolve),
  )
  const port = (server.address() as AddressInfo).port
  const url = `http://localhost:${port}`
  const did = `did:web:localhost%3A${port}`
  const published = opts.publishKey ?? keypair.did()
  didDoc.doc = didDocument(
    { did, handle: 'localhost', publicUrl: url } as ServerConfig,
    { did: () => published } as Secp256k1Keypair,
  )
  const repo = await EventedRepo.open({
    dir,
    did,
    keypair,
    handle: 'localhost',
  })
  const firehose = new SubscribeRepos(repo.sequencer, { options: opts.options })
  firehose.attach(server)
  const stop = async () => {
    await firehose.close()
    await new Promise((resolve) => server.close(resolve))
    await repo.close()
  }
  return {
    url,
    port,
    did,
    dir,
    server,
    repo,
    firehose,
    stop,
    restart: async (next) => {
      await stop()
      return startFirehose({
        ...opts,
        dir,
        port,
        keypair: next ?? keypair,
      })
    },
    destroy: async () => {
      await stop()
      await removeDir(dir)
    },
  }
}

export type Subscription = {
  ws: WebSocket
  frames: Frame[]
  /** Seqs of the message frames received, in order. */
  seqs: () => number[]
  /** Resolves once a frame with seq >= n arrived. */
  untilSeq: (n: number, timeoutMs?: number) => Promise<void>
  errorFrame: () => ErrorFrame | undefined
  closed: Promise<{ code: number; reason: string }>
}

/** A plain WebSocket subscriber that keeps every frame. */
export const subscribe = (
  url: string,
  query = '',
  wsOptions: WebSocket.ClientOptions = {},
): Promise<Subscription> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(
      `${url.replace(/^http/, 'ws')}${SUBSCRIBE_REPOS_PATH}${query}`,
      wsOptions,
    )
    const frames: Frame[] = []
    const seqs = () =>
      frames.flatMap((f) => {
        const seq = (f.body as { seq?: unknown }).seq
        return f instanceof MessageFrame && typeof seq === 'number' ? [seq] : []
      })
    let wake = () => {}
    ws.on('message', (data: Buffer) => {
      frames.push(Frame.fromBytes(new Uint8Array(data)))
      wake()
    })
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      ws.on('close', (code, reason) => {
        done({ code, reason: reason.toString() })
        wake()
      }),
    )
    ws.once('error', reject)
    ws.once('open', () =>
      resolve({
        ws,
        frames,
        seqs,
        errorFrame: () =>
          frames.find((f): f is ErrorFrame => f instanceof ErrorFrame),
        closed,
        untilSeq: async (n, timeoutMs = 20_000) => {
          const until = Date.now() + timeoutMs
          while ((seqs().at(-1) ?? -1) < n) {
            if (Date.now() > until) {
              throw new Error(`no seq ${n}; last ${seqs().at(-1)}`)
            }
            await new Promise<void>((done) => {
              wake = done
              setTimeout(done, 50)
            })
          }
        },
      }),
    )
  })
