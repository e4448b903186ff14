import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Logger } from '../logger.ts'
import type { SeqEvent, Sequencer } from '../repo/sequencer.ts'
import { RecentEvents } from './recent-events.ts'
import { CLOSE_GOING_AWAY, Subscriber, type EventSource } from './subscriber.ts'

export const SUBSCRIBE_REPOS_PATH = '/xrpc/com.atproto.sync.subscribeRepos'

export type SubscribeReposOptions = {
  /** Unsent bytes a subscriber's socket may hold before it is fed more. */
  highWaterBytes: number
  /** A subscriber whose full socket completes no send this long is cut (ConsumerTooSlow). */
  stallMs: number
  /** How often subscribers are pinged; one that has not answered the last ping is cut. */
  pingMs: number
  /** Bytes of the latest frames kept in memory for live subscribers. */
  recentBytes: number
  /** Events read from the log at a time for a subscriber that is behind. */
  pageSize: number
  /** Subscribers at once; more are refused with 503. */
  maxSubscribers: number
  /** How long close() waits for subscribers to finish the closing handshake. */
  closeGraceMs: number
}

// For a 512 MB machine: a subscriber holds at most its socket buffer (highWaterBytes and a
// frame, which is under 2 MB), live ones share the recent frames, and one replaying from the
// log reads a page at a time.
export const DEFAULT_SUBSCRIBE_REPOS_OPTIONS: SubscribeReposOptions = {
  highWaterBytes: 1024 * 1024,
  stallMs: 60_000,
  // Proxies (Fly's among them) drop a connection idle for about a minute.
  pingMs: 30_000,
  recentBytes: 8 * 1024 * 1024,
  pageSize: 8,
  maxSubscribers: 100,
  closeGraceMs: 1000,
}

/** Counters for metrics and the status page. */
export type SubscribeReposStats = {
  seq: number
  subscribers: number
  /** Bytes queued on subscribers' sockets, not yet handed to the kernel. */
  bufferedBytes: number
  framesSent: number
  /** Frames subscribers that were cut had still to receive. */
  framesDropped: number
  /** Subscribers cut, by reason (ConsumerTooSlow, NoPong). */
  cut: Record<string, number>
}

/**
 * `com.atproto.sync.subscribeRepos` over WebSocket, on the hold's own HTTP server: it takes
 * that server's upgrade requests for its path (`attach`) and serves each subscriber from the
 * sequencer's log (subscriber.ts). Upgraded sockets outlive `server.close()`: call `close()`
 * first when stopping.
 */
export class SubscribeRepos {
  private readonly sequencer: Sequencer
  private readonly log: Logger | undefined
  readonly options: SubscribeReposOptions
  private readonly wss = new WebSocketServer({
    noServer: true,
    // Subscribers send nothing but control frames.
    maxPayload: 1024,
    perMessageDeflate: false,
  })
  private readonly subscribers = new Map<WebSocket, Subscriber>()
  private readonly recent: RecentEvents
  private readonly source: EventSource
  private readonly timer: NodeJS.Timeout
  private readonly unsubscribe: () => void
  private readonly attached: {
    server: Server
    listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  }[] = []
  private head: number
  private closing: Promise<void> | undefined
  private framesSent = 0
  private framesDropped = 0
  private readonly cut: Record<string, number> = {}

  constructor(
    sequencer: Sequencer,
    opts: { log?: Logger; options?: Partial<SubscribeReposOptions> } = {},
  ) {
    this.sequencer = sequencer
    this.log = opts.log
    this.options = { ...DEFAULT_SUBSCRIBE_REPOS_OPTIONS, ...opts.options }
    this.recent = new RecentEvents(this.options.recentBytes)
    this.head = sequencer.current()
    const { highWaterBytes, stallMs, pageSize } = this.options
    this.source = {
      head: () => this.head,
      eventsAfter: (cursor) =>
        this.recent.after(cursor, pageSize) ??
        this.sequencer
          .after(cursor, pageSize)
          .filter((event) => event.seq <= this.head),
      highWaterBytes,
      stallMs,
      sent: () => {
        this.framesSent++
      },
      cut: (reason, behind) => {
        this.cut[reason] = (this.cut[reason] ?? 0) + 1
        this.framesDropped += behind
        this.log?.info({ reason, behind }, 'cut a subscribeRepos subscriber')
      },
    }
    this.unsubscribe = sequencer.onEvents((events) => this.publish(events))
    const tickMs = Math.min(1000, this.options.pingMs, stallMs)
    let sincePing = 0
    this.timer = setInterval(() => {
      sincePing += tickMs
      const ping = sincePing >= this.options.pingMs
      if (ping) sincePing = 0
      const now = Date.now()
      for (const subscriber of this.subscribers.values()) {
        subscriber.tick(now, ping)
      }
    }, tickMs)
    this.timer.unref()
  }

  /** Serves subscribeRepos on `server`'s upgrade requests; other upgrades get a 404. */
  attach(server: Server): void {
    const listener = (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.upgrade(req, socket, head)
    server.on('upgrade', listener)
    this.attached.push({ server, listener })
  }

  stats(): SubscribeReposStats {
    let bufferedBytes = 0
    for (const ws of this.subscribers.keys()) bufferedBytes += ws.bufferedAmount
    return {
      seq: this.head,
      subscribers: this.subscribers.size,
      bufferedBytes,
      framesSent: this.framesSent,
      framesDropped: this.framesDropped,
      cut: { ...this.cut },
    }
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy())
    const url = new URL(req.url ?? '/', 'http://hold')
    if (url.pathname !== SUBSCRIBE_REPOS_PATH) return refuse(socket, 404)
    if (this.closing || this.subscribers.size >= this.options.maxSubscribers) {
      return refuse(socket, 503)
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (this.closing) {
        ws.terminate()
        return
      }
      const subscriber = new Subscriber(this.source, ws)
      this.subscribers.set(ws, subscriber)
      ws.on('error', () => ws.terminate())
      ws.on('close', () => this.subscribers.delete(ws))
      const cursor = parseCursor(url.searchParams)
      if (cursor === 'invalid') {
        subscriber.fail(
          'InvalidRequest',
          'cursor must be one non-negative integer',
        )
        return
      }
      subscriber.start(cursor, {
        current: this.sequencer.current(),
        oldest: this.sequencer.oldest(),
      })
    })
  }

  /** The sequencer's committed events: into memory, and out to every subscriber. */
  private publish(events: SeqEvent[]): void {
    this.recent.push(events)
    this.head = events[events.length - 1].seq
    for (const subscriber of this.subscribers.values()) subscriber.pump()
  }

  /**
   * Stops taking subscribers and closes every one (1001, going away); resolves when their
   * sockets are gone, cutting those that have not finished closing after closeGraceMs.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer)
      this.unsubscribe()
      for (const { server, listener } of this.attached) {
        server.off('upgrade', listener)
      }
      const sockets = [...this.subscribers.keys()]
      const gone = sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === ws.CLOSED) resolve()
            else ws.once('close', () => resolve())
          }),
      )
      for (const subscriber of this.subscribers.values()) {
        subscriber.close(
          CLOSE_GOING_AWAY,
          'hold stopping',
          this.options.closeGraceMs,
        )
      }
      await Promise.all(gone)
      await new Promise<void>((resolve) => this.wss.close(() => resolve()))
    })()
    return this.closing
  }
}

/** The cursor parameter: absent, one non-negative integer, or not acceptable. */
const parseCursor = (
  params: URLSearchParams,
): number | undefined | 'invalid' => {
  const values = params.getAll('cursor')
  if (values.length === 0) return undefined
  if (values.length > 1 || !/^\d{1,15}$/.test(values[0])) return 'invalid'
  return Number(values[0])
}

const refuse = (socket: Duplex, status: 404 | 503): void => {
  const text = status === 404 ? 'Not Found' : 'Service Unavailable'
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
  )
}
