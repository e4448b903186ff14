import type { SeqEvent } from '../repo/sequencer.ts'

/**
 * The latest events in memory, up to a number of bytes of frames, so live subscribers send
 * what was just committed without reading it back from SQLite, and all send the same buffers.
 */
export class RecentEvents {
  /** Events from `start` on are held; the slots before it are emptied. */
  private events: (SeqEvent | undefined)[] = []
  private start = 0
  private bytes = 0
  private readonly maxBytes: number

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  push(events: SeqEvent[]): void {
    for (const event of events) {
      this.events.push(event)
      this.bytes += event.frame.byteLength
    }
    // The newest event stays, however large.
    while (this.bytes > this.maxBytes && this.events.length - this.start > 1) {
      this.bytes -= this.events[this.start]!.frame.byteLength
      this.events[this.start++] = undefined
    }
    if (this.start * 2 > this.events.length) {
      this.events = this.events.slice(this.start)
      this.start = 0
    }
  }

  /**
   * Up to `limit` events right after seq `cursor`, or null when the oldest one held is
   * already past `cursor + 1` (older events must come from the log).
   */
  after(cursor: number, limit: number): SeqEvent[] | null {
    const { events } = this
    if (this.start === events.length || events[this.start]!.seq > cursor + 1) {
      return null
    }
    let lo = this.start
    let hi = events.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (events[mid]!.seq <= cursor) lo = mid + 1
      else hi = mid
    }
    return events.slice(lo, lo + limit) as SeqEvent[]
  }
}
