/** How long a resolved handle (or the lack of one) is shown before it is asked again. */
const FRESH_MS = 60 * 60 * 1000
/** Owners remembered; the status page shows at most a few dozen. */
const MAX = 1000
/** Resolutions in flight at once. */
const PARALLEL = 4

type Entry = { handle: string | undefined; at: number }

/**
 * Owner handles for the status page, resolved in the background and cached: `get` answers
 * from the cache at once (undefined until resolved) and starts the resolution of DIDs it has
 * not seen or whose answer is stale, so rendering never waits for a DID document.
 */
export class OwnerHandles {
  private readonly cache = new Map<string, Entry>()
  private readonly inFlight = new Set<string>()
  private readonly resolve: (did: string) => Promise<string | undefined>
  private readonly now: () => number

  constructor(
    resolve: (did: string) => Promise<string | undefined>,
    now: () => number = Date.now,
  ) {
    this.resolve = resolve
    this.now = now
  }

  get(did: string): string | undefined {
    const entry = this.cache.get(did)
    if (!entry || this.now() - entry.at >= FRESH_MS) this.start(did)
    return entry?.handle
  }

  /** Resolutions still running (tests wait on them). */
  get pending(): number {
    return this.inFlight.size
  }

  private start(did: string): void {
    if (this.inFlight.has(did) || this.inFlight.size >= PARALLEL) return
    this.inFlight.add(did)
    void this.resolve(did)
      .catch(() => undefined)
      .then((handle) => {
        this.inFlight.delete(did)
        if (this.cache.size >= MAX && !this.cache.has(did)) {
          this.cache.delete(this.cache.keys().next().value!)
        }
        this.cache.set(did, { handle, at: this.now() })
      })
  }
}
