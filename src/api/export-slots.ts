import { RateLimitExceededError, XRPCError } from '../errors.ts'
import type { ExportLimits } from '../repo/car-export.ts'

/**
 * Who has getRepo exports under way. An export holds a slot from the moment it is accepted
 * until its last byte is sent, its client goes away, or it is cut.
 */
export class ExportSlots {
  private readonly byClient = new Map<string, number>()
  private readonly limits: ExportLimits
  active = 0

  constructor(limits: ExportLimits) {
    this.limits = limits
  }

  /** A slot for `client`, or a 429/503 XRPC error; the function returned gives it back. */
  take(client: string): () => void {
    const mine = this.byClient.get(client) ?? 0
    if (mine >= this.limits.perClient) {
      throw new RateLimitExceededError(
        `at most ${this.limits.perClient} getRepo exports at a time per client; retry when one has finished`,
      )
    }
    if (this.active >= this.limits.total) {
      throw new XRPCError(
        503,
        `the hold is serving ${this.limits.total} getRepo exports, its most at once; retry in a minute`,
        'NotEnoughResources',
      )
    }
    this.byClient.set(client, mine + 1)
    this.active++
    let released = false
    return () => {
      if (released) return
      released = true
      this.active--
      const left = (this.byClient.get(client) ?? 1) - 1
      if (left > 0) this.byClient.set(client, left)
      else this.byClient.delete(client)
    }
  }
}
