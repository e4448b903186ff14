import { ErrorFrame, MessageFrame } from '@atproto/xrpc-server'
import type { WebSocket } from 'ws'
import type { SeqEvent } from '../repo/sequencer.ts'

/** Close codes: 1008 after an error frame (as the reference's stream server), 1001 at stop. */
export const CLOSE_POLICY = 1008
export const CLOSE_GOING_AWAY = 1001

/** What a subscriber needs of the firehose it reads. */
export type EventSource = {
  /** The last seq committed. */
  head(): number
  /** At most a page of events after seq `cursor`, oldest first. */
  eventsAfter(cursor: number): SeqEvent[]
  readonly highWaterBytes: number
  readonly stallMs: number
  /** Told of every frame sent, and of a subscriber cut with the frames it had still to get. */
  sent(): void
  cut(reason: string, behind: number): void
}

/**
 * One subscribeRepos connection: a position in the event log, and a socket. `pump()` sends
 * the events after the position, in seq order, while the socket holds less than
 * `highWaterBytes` unsent, and goes on as sends complete; so a replay runs into the live tail
 * with no gap and no duplicate, and a subscriber holds at most its socket buffer (about
 * highWaterBytes and one frame), however far behind it is. One whose socket completes no send
 * for `stallMs` while full is cut with ConsumerTooSlow.
 */
export class Subscriber {
  private readonly source: EventSource
  private readonly ws: WebSocket
  /** The seq last sent; -1 until the cursor has been checked. */
  private position = -1
  private pumping = false
  private waiting = false
  /** While the socket is full: since when no send has completed. */
  private blockedSince: number | undefined
  private answeredPing = true
  private closing = false
  private readonly onSent = (): void => {
    if (this.blockedSince !== undefined) this.blockedSince = Date.now()
    if (this.waiting) {
      this.waiting = false
      this.pump()
    }
  }

  constructor(source: EventSource, ws: WebSocket) {
    this.source = source
    this.ws = ws
    ws.on('pong', () => {
      this.answeredPing = true
    })
  }

  get closed(): boolean {
    return this.closing
  }

  /**
   * Starts at `cursor`: none means live from now; one in the future is refused (FutureCursor);
   * one older than the oldest event kept gets #info OutdatedCursor, then the oldest kept.
   */
  start(
    cursor: number | undefined,
    log: { current: number; oldest: number | null },
  ): void {
    if (cursor === undefined) {
      this.position = this.source.head()
      return
    }
    if (cursor > log.current) {
      this.fail('FutureCursor', 'Cursor in the future.')
      return
    }
    const firstKept = log.oldest ?? log.current + 1
    if (cursor < firstKept - 1) {
      this.outdated()
      this.position = firstKept - 1
    } else {
      this.position = cursor
    }
    this.pump()
  }

  /** Sends what it may of the events after its position. */
  pump(): void {
    if (this.pumping || this.closing || this.position < 0) return
    this.pumping = true
    try {
      const { source, ws } = this
      while (!this.closing && this.position < source.head()) {
        if (ws.bufferedAmount >= source.highWaterBytes) {
          this.blockedSince ??= Date.now()
          this.waiting = true
          return
        }
        this.blockedSince = undefined
        const events = source.eventsAfter(this.position)
        if (events.length === 0) return
        // Pruned while this subscriber was behind: say so, as for an old cursor.
        if (events[0].seq > this.position + 1) this.outdated()
        for (const event of events) {
          this.send(event.frame)
          this.position = event.seq
          if (ws.bufferedAmount >= source.highWaterBytes) break
        }
      }
    } finally {
      this.pumping = false
    }
  }

  /**
   * Called every few seconds: cuts a subscriber stalled past stallMs; with `ping`, ends one
   * that did not answer the last ping and pings the others. A full socket is not pinged (the
   * ping would wait behind the data): the stall rule looks after it.
   */
  tick(now: number, ping: boolean): void {
    if (this.closing) return
    if (
      this.blockedSince !== undefined &&
      now - this.blockedSince >= this.source.stallMs
    ) {
      this.source.cut('ConsumerTooSlow', this.source.head() - this.position)
      this.fail('ConsumerTooSlow', 'Stream consumer too slow')
      return
    }
    if (!ping || this.blockedSince !== undefined) return
    if (!this.answeredPing) {
      this.source.cut('NoPong', this.source.head() - this.position)
      this.closing = true
      this.ws.terminate()
      return
    }
    this.answeredPing = false
    this.ws.ping()
  }

  /** Closes with `code`; a peer that does not finish the closing handshake is cut. */
  close(code: number, reason: string, graceMs = 2000): void {
    if (this.closing) return
    this.closing = true
    this.ws.close(code, reason)
    setTimeout(() => this.ws.terminate(), graceMs).unref()
  }

  /** An error frame, then close: what the lexicon's errors look like on a subscription. */
  fail(error: string, message: string): void {
    this.send(new ErrorFrame({ error, message }).toBytes())
    this.close(CLOSE_POLICY, error)
  }

  private outdated(): void {
    this.send(
      new MessageFrame(
        {
          name: 'OutdatedCursor',
          message: 'Requested cursor exceeded limit. Possibly missing events',
        },
        { type: '#info' },
      ).toBytes(),
    )
  }

  private send(frame: Uint8Array): void {
    this.ws.send(frame, { binary: true }, this.onSent)
    this.source.sent()
  }
}
