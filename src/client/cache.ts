/** A size-bounded map whose entries expire; the least recently used entry goes first. */
export class TtlCache<V> {
  readonly #map = new Map<string, { value: V; expires: number }>()
  readonly #max: number

  constructor(max: number) {
    this.#max = Math.max(1, max)
  }

  get(key: string, now = Date.now()): V | undefined {
    const hit = this.#map.get(key)
    if (!hit) return undefined
    if (hit.expires <= now) {
      this.#map.delete(key)
      return undefined
    }
    this.#map.delete(key)
    this.#map.set(key, hit)
    return hit.value
  }

  set(key: string, value: V, ttlMs: number, now = Date.now()): void {
    if (ttlMs <= 0) return
    this.#map.delete(key)
    this.#map.set(key, { value, expires: now + ttlMs })
    while (this.#map.size > this.#max) {
      this.#map.delete(this.#map.keys().next().value as string)
    }
  }

  delete(key: string): void {
    this.#map.delete(key)
  }

  clear(): void {
    this.#map.clear()
  }

  get size(): number {
    return this.#map.size
  }
}

/** Concurrent calls with one key share one promise until it settles. */
export class Inflight<V> {
  readonly #map = new Map<string, Promise<V>>()

  run(key: string, fn: () => Promise<V>): Promise<V> {
    const running = this.#map.get(key)
    if (running) return running
    const p = fn().finally(() => this.#map.delete(key))
    this.#map.set(key, p)
    return p
  }
}

/** Waits for `p` but gives up when `signal` fires; `p` itself keeps running for others. */
export const untilAborted = <T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> => {
  if (!signal) return p
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
