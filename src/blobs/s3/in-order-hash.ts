import { createHash, type Hash } from 'node:crypto'
import type { ListedPart } from '../store.ts'

const unquote = (etag: string): string => etag.replace(/^"(.*)"$/, '$1')

/**
 * The sha256 of an upload whose parts all came through the hold one after another, 1, 2, 3...:
 * a part is folded in only once the store acknowledged it, and a retry of the latest part starts
 * again from the state before it. Anything else (a gap, parts at the same time, a part URL
 * handed out, a retry of an older part) gives up, and completion reads the assembled object
 * back instead. Kept in memory only: after a restart, completion reads back too.
 */
export class InOrderHash {
  private hash: Hash = createHash('sha256')
  /** The state before the latest part, for a retry of it. */
  private before: Hash | undefined
  private last = 0
  /** The ETag of the version of each part that was folded in. */
  private readonly etags: string[] = []
  private inFlight = 0
  private broken = false

  /** A hash to feed part n into, or undefined when it cannot extend the in-order digest. */
  begin(n: number): Hash | undefined {
    if (this.broken) return undefined
    let from: Hash | undefined
    if (this.inFlight === 0 && n === this.last + 1) from = this.hash
    else if (this.inFlight === 0 && n === this.last) from = this.before
    if (!from) {
      this.broken = true
      return undefined
    }
    this.inFlight++
    return from.copy()
  }

  /** Part n (begun with hash h) was stored with this ETag. */
  commit(n: number, h: Hash, etag: string): void {
    this.inFlight--
    if (this.broken) return
    if (n === this.last + 1) {
      this.before = this.hash
      this.last = n
    }
    this.hash = h
    this.etags[n - 1] = unquote(etag)
  }

  /** A begun part was not stored: the store still has what it had. */
  fail(): void {
    this.inFlight--
  }

  /** A part may reach the store without the hold (a part URL was handed out). */
  bypassed(): void {
    this.broken = true
  }

  /** The sha256 hex of exactly these parts, if this hash saw exactly them. */
  digestFor(parts: ListedPart[]): string | undefined {
    if (this.broken || this.inFlight > 0 || parts.length !== this.last) {
      return undefined
    }
    const same = parts.every(
      (p, i) => p.partNumber === i + 1 && unquote(p.etag) === this.etags[i],
    )
    return same ? this.hash.copy().digest('hex') : undefined
  }
}
