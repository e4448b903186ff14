import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../logger.ts'

/** A relay's last answer to requestCrawl, for the status page and metrics. */
export type CrawlAnswer = {
  at: string
  ok: boolean
  /** The HTTP status, when the relay answered. */
  status?: number
  /** Why it failed: the relay's XRPC error, or the network's. */
  error?: string
  attempts: number
}

export type CrawlersOptions = {
  /** New events ask again only when the last request is at least this old. */
  intervalMs: number
  /** Tries per request, for network errors, 429 and 5xx; a 4xx is the relay's answer. */
  attempts: number
  /** The wait before the second try, doubling for each further one. */
  backoffMs: number
  timeoutMs: number
  fetch: typeof globalThis.fetch
}

export const DEFAULT_CRAWLERS_OPTIONS: CrawlersOptions = {
  // As the reference PDS: relays keep following a host they crawl, so asking more is noise.
  intervalMs: 20 * 60_000,
  attempts: 5,
  backoffMs: 1000,
  timeoutMs: 10_000,
  fetch: globalThis.fetch,
}

/**
 * Asks relays (HOLD_CRAWLERS) to crawl the hold: `POST {relay}/xrpc/com.atproto.sync.requestCrawl`
 * with the hold's host name, at start and again when new events come after the last request is
 * `intervalMs` old, so a relay that dropped the hold in a quiet spell comes back. Failures are
 * retried with backoff and logged, never thrown: a relay's answer is kept for the status page.
 */
export class Crawlers {
  private readonly hostname: string
  private readonly relays: string[]
  private readonly log: Logger | undefined
  private readonly options: CrawlersOptions
  private lastRequest = -Infinity
  private stopped = false
  /** Relays being asked, and when that ends. */
  private readonly busy = new Map<string, Promise<void>>()
  private readonly abort = new AbortController()
  /** The last answer of each relay. */
  readonly answers = new Map<string, CrawlAnswer>()
  private readonly listeners: ((relay: string, answer: CrawlAnswer) => void)[] =
    []

  constructor(opts: {
    /** The hold's public URL: relays are given its host (no scheme), as they expect. */
    publicUrl: string
    relays: string[]
    log?: Logger
    options?: Partial<CrawlersOptions>
  }) {
    this.hostname = new URL(opts.publicUrl).host
    this.relays = opts.relays
    this.log = opts.log
    this.options = { ...DEFAULT_CRAWLERS_OPTIONS, ...opts.options }
  }

  /**
   * Asks every relay now (at start; the CLI's `crawl`); resolves when each has answered or its
   * tries are spent. A relay still being asked is not asked twice: its answer is awaited.
   */
  requestNow(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    this.lastRequest = Date.now()
    return Promise.all(
      this.relays.map((relay) => {
        let asking = this.busy.get(relay)
        if (!asking) {
          asking = this.ask(relay).finally(() => this.busy.delete(relay))
          this.busy.set(relay, asking)
        }
        return asking
      }),
    ).then(() => undefined)
  }

  /** New events were committed: asks again when the last request is old enough. */
  notifyOfUpdate(): void {
    if (Date.now() - this.lastRequest >= this.options.intervalMs) {
      void this.requestNow()
    }
  }

  /** Calls `listener` with every answer (each try), for metrics. */
  onAnswer(listener: (relay: string, answer: CrawlAnswer) => void): void {
    this.listeners.push(listener)
  }

  /** The relays asked (HOLD_CRAWLERS). */
  get relayUrls(): readonly string[] {
    return this.relays
  }

  /** Stops asking: no retry is made after this, and requests under way are aborted. */
  stop(): void {
    this.stopped = true
    this.abort.abort()
  }

  private async ask(relay: string): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      const answer = await this.try(relay, attempt)
      if (this.stopped) return
      this.answers.set(relay, answer)
      for (const listener of this.listeners) listener(relay, answer)
      const retry =
        !answer.ok &&
        (answer.status === undefined ||
          answer.status === 429 ||
          answer.status >= 500)
      if (retry && attempt < this.options.attempts) {
        this.log?.debug({ relay, ...answer }, 'requestCrawl failed; will retry')
        await sleep(this.options.backoffMs * 2 ** (attempt - 1), undefined, {
          signal: this.abort.signal,
          ref: false,
        }).catch(() => undefined)
        continue
      }
      if (answer.ok) {
        this.log?.info(
          { relay, hostname: this.hostname },
          'asked relay to crawl',
        )
      } else {
        this.log?.warn(
          { relay, hostname: this.hostname, ...answer },
          'the relay in HOLD_CRAWLERS refused or did not answer requestCrawl',
        )
      }
      return
    }
  }

  private async try(relay: string, attempt: number): Promise<CrawlAnswer> {
    try {
      const res = await this.options.fetch(
        new URL('/xrpc/com.atproto.sync.requestCrawl', relay),
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ hostname: this.hostname }),
          signal: AbortSignal.any([
            this.abort.signal,
            AbortSignal.timeout(this.options.timeoutMs),
          ]),
        },
      )
      const body = await res.text().catch(() => '')
      return {
        at: new Date().toISOString(),
        ok: res.ok,
        status: res.status,
        ...(res.ok ? {} : { error: xrpcError(body) ?? res.statusText }),
        attempts: attempt,
      }
    } catch (err) {
      return {
        at: new Date().toISOString(),
        ok: false,
        error: (err as Error).message,
        attempts: attempt,
      }
    }
  }
}

/** `error: message` of an XRPC error body, when it is one. */
const xrpcError = (body: string): string | undefined => {
  try {
    const { error, message } = JSON.parse(body) as {
      error?: unknown
      message?: unknown
    }
    if (typeof error !== 'string') return undefined
    return typeof message === 'string' ? `${error}: ${message}` : error
  } catch {
    return undefined
  }
}
