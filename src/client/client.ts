import {
  buildAgent,
  xrpcSafe,
  XrpcResponseError,
  type Agent,
  type XrpcOptions,
  type XrpcResponse,
} from '@atproto/lex-client'
import type { Procedure, Query } from '@atproto/lex-schema'
import { io } from '../generated/lexicons/index.ts'
import { aggregateStats, type AggregatedStats } from './aggregate.ts'
import { Inflight, TtlCache, untilAborted } from './cache.ts'
import { HoldError, toHoldError } from './errors.ts'
import { GET_BLOB, getBlobBytes, getBlobUrl } from './get-blob.ts'
import { fetchHoldEndpoint } from './resolve.ts'
import { TokenCache, type GetToken } from './tokens.ts'

const hold = io.atcr.hold

export type Did = `did:${string}:${string}`
export type StatsView = io.atcr.hold.defs.StatsView
export type BlobUrl = io.atcr.hold.defs.BlobUrl
export type ListStatsPage = io.atcr.hold.listStats.$OutputBody
export type StatsHistory = io.atcr.hold.getStatsHistory.$OutputBody
export type TrendingPage = io.atcr.hold.listTrending.$OutputBody
export type InitiateUploadInput = io.atcr.hold.initiateUpload.$InputBody
export type InitiateUploadOutput = io.atcr.hold.initiateUpload.$OutputBody
export type GetPartUploadUrlInput = io.atcr.hold.getPartUploadUrl.$InputBody
export type GetPartUploadUrlOutput = io.atcr.hold.getPartUploadUrl.$OutputBody
export type UploadPartOutput = io.atcr.hold.uploadPart.$OutputBody
export type CompleteUploadInput = io.atcr.hold.completeUpload.$InputBody
export type CompleteUploadOutput = io.atcr.hold.completeUpload.$OutputBody
export type AbortUploadOutput = io.atcr.hold.abortUpload.$OutputBody
export type NotifyManifestInput = io.atcr.hold.notifyManifest.$InputBody
export type NotifyManifestOutput = io.atcr.hold.notifyManifest.$OutputBody
export type RequestCrewInput = io.atcr.hold.requestCrew.$InputBody
export type RequestCrewOutput = io.atcr.hold.requestCrew.$OutputBody

export type HoldClientOptions = {
  /** Any WHATWG fetch (default: the global one). */
  fetch?: typeof globalThis.fetch
  /** Service tokens for (hold DID, method); needed for uploads, notifyManifest, private holds. */
  getToken?: GetToken
  /** PLC directory for did:plc holds. Default https://plc.directory. */
  plcUrl?: string
  /** Resolve did:web:localhost over http (development and tests only). Default false. */
  allowHttpLocalhost?: boolean
  /** How long a resolved endpoint is kept. Default 10 minutes. */
  resolveTtlMs?: number
  /** The `exp` asked of the token function, from now. Default 600 s (a PDS allows 3600). */
  tokenLifetimeSec?: number
  /** A token is replaced this long before its `exp`. Default 30 s. */
  tokenMarginSec?: number
  /** Time limit of one call, retries included. Default 10 s. */
  timeoutMs?: number
  /** Retries of idempotent queries on network errors, 408/429/5xx. Default 2. */
  retries?: number
  /** First wait before a retry, doubled each time (a Retry-After header wins). Default 100 ms. */
  retryMinMs?: number
  /** Per-hold time limit of getAggregatedStats. Default 2 s. */
  aggregateTimeoutMs?: number
  /** How long an aggregate with every hold answering is kept. Default 30 s. */
  aggregateTtlMs?: number
  /** How long an aggregate missing some hold is kept. Default 5 s. */
  aggregatePartialTtlMs?: number
  /** Aggregates kept at most. Default 1000. */
  aggregateCacheSize?: number
}

export type CallOptions = { signal?: AbortSignal }

export type { AggregatedStats, HoldResult } from './aggregate.ts'

type Method = Query | Procedure

/**
 * A typed client for atcr-hold holds, as an AppView uses them. Holds are named by DID and
 * resolved to their `#atcr_hold` endpoint. Runs wherever `fetch` does.
 */
export class HoldClient {
  readonly #fetch: typeof globalThis.fetch
  readonly #opts: Required<Omit<HoldClientOptions, 'fetch' | 'getToken'>>
  readonly #tokens: TokenCache | undefined
  readonly #endpoints: TtlCache<string>
  readonly #resolving = new Inflight<string>()
  readonly #agents = new Map<string, Agent>()
  readonly #aggregates: TtlCache<AggregatedStats>
  readonly #aggregating = new Inflight<AggregatedStats>()
  readonly #privateHolds: TtlCache<true>

  constructor(opts: HoldClientOptions = {}) {
    const f = opts.fetch ?? globalThis.fetch
    this.#fetch = (input, init) => f(input, init)
    this.#opts = {
      plcUrl: opts.plcUrl ?? 'https://plc.directory',
      allowHttpLocalhost: opts.allowHttpLocalhost ?? false,
      resolveTtlMs: opts.resolveTtlMs ?? 10 * 60_000,
      tokenLifetimeSec: opts.tokenLifetimeSec ?? 600,
      tokenMarginSec: opts.tokenMarginSec ?? 30,
      timeoutMs: opts.timeoutMs ?? 10_000,
      retries: opts.retries ?? 2,
      retryMinMs: opts.retryMinMs ?? 100,
      aggregateTimeoutMs: opts.aggregateTimeoutMs ?? 2_000,
      aggregateTtlMs: opts.aggregateTtlMs ?? 30_000,
      aggregatePartialTtlMs: opts.aggregatePartialTtlMs ?? 5_000,
      aggregateCacheSize: opts.aggregateCacheSize ?? 1000,
    }
    this.#tokens = opts.getToken
      ? new TokenCache(
          opts.getToken,
          this.#opts.tokenLifetimeSec,
          this.#opts.tokenMarginSec,
          10_000,
        )
      : undefined
    this.#endpoints = new TtlCache(10_000)
    this.#privateHolds = new TtlCache(10_000)
    this.#aggregates = new TtlCache(this.#opts.aggregateCacheSize)
  }

  /** The `#atcr_hold` endpoint of a hold DID (did:web or did:plc), cached for resolveTtlMs. */
  async resolveHold(did: string, opts: CallOptions = {}): Promise<string> {
    const hit = this.#endpoints.get(did)
    if (hit) return hit
    const signal = this.#signal(opts.signal, this.#opts.timeoutMs)
    const run = this.#resolving.run(did, async () => {
      const endpoint = await fetchHoldEndpoint(did, {
        fetch: this.#fetch,
        plcUrl: this.#opts.plcUrl,
        allowHttpLocalhost: this.#opts.allowHttpLocalhost,
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      })
      this.#endpoints.set(did, endpoint, this.#opts.resolveTtlMs)
      return endpoint
    })
    try {
      return await untilAborted(run, signal)
    } catch (err) {
      throw toHoldError(err, { hold: did, signal })
    }
  }

  /** Forgets a resolved endpoint (after a hold moved). */
  forgetHold(did: string): void {
    this.#endpoints.delete(did)
  }

  /**
   * The blob's bytes (getBlob without `method`). With `repo`, the hold counts a pull of
   * (did, repo). Sent without a token first; a hold answering AuthRequired is asked again with
   * one and remembered as private. Not retried with `repo`, which would count twice.
   */
  async getBlob(
    holdDid: string,
    params: { did: Did; cid: string; repo?: string },
    opts: CallOptions = {},
  ): Promise<Uint8Array> {
    const res = await this.#readBlob(holdDid, getBlobBytes, params, opts)
    return res.body as Uint8Array
  }

  /**
   * A URL signed by the hold (getBlob with `method`): GET or HEAD to download, PUT to upload
   * once (needs blob:write, so always sent with a token). With `repo` the call counts.
   */
  async getBlobUrl(
    holdDid: string,
    params: {
      did: Did
      cid: string
      method: 'GET' | 'HEAD' | 'PUT'
      repo?: string
    },
    opts: CallOptions = {},
  ): Promise<BlobUrl> {
    if (params.method === 'PUT') {
      const res = await this.#call(holdDid, getBlobUrl, {
        params,
        auth: true,
        retry: false,
        signal: opts.signal,
      })
      return res.body
    }
    const res = await this.#readBlob(holdDid, getBlobUrl, params, opts)
    return res.body
  }

  async #readBlob<M extends typeof getBlobBytes | typeof getBlobUrl>(
    holdDid: string,
    method: M,
    params: { did: Did; cid: string; method?: string; repo?: string },
    opts: CallOptions,
  ): Promise<XrpcResponse<M>> {
    const retry = !params.repo
    const auth = Boolean(this.#tokens && this.#privateHolds.get(holdDid))
    try {
      return await this.#call(holdDid, method, {
        params,
        auth,
        retry,
        signal: opts.signal,
      })
    } catch (err) {
      const e = err as HoldError
      if (auth || !this.#tokens || e.status !== 401) throw err
      this.#privateHolds.set(holdDid, true, this.#opts.resolveTtlMs)
      return this.#call(holdDid, method, {
        params,
        auth: true,
        retry,
        signal: opts.signal,
      })
    }
  }

  /** io.atcr.hold.initiateUpload: starts a multipart upload (blob:write). */
  async initiateUpload(
    holdDid: string,
    input: InitiateUploadInput,
    opts: CallOptions = {},
  ): Promise<InitiateUploadOutput> {
    return (
      await this.#procedure(holdDid, hold.initiateUpload.main, input, opts)
    ).body
  }

  /** io.atcr.hold.getPartUploadUrl: where to PUT one part. */
  async getPartUploadUrl(
    holdDid: string,
    input: GetPartUploadUrlInput,
    opts: CallOptions = {},
  ): Promise<GetPartUploadUrlOutput> {
    return (
      await this.#procedure(holdDid, hold.getPartUploadUrl.main, input, opts)
    ).body
  }

  /** io.atcr.hold.uploadPart: one part's bytes through the hold. */
  async uploadPart(
    holdDid: string,
    input: {
      uploadId: string
      partNumber: number
      body: Uint8Array | Blob | ReadableStream<Uint8Array>
    },
    opts: CallOptions = {},
  ): Promise<UploadPartOutput> {
    const res = await this.#call(holdDid, hold.uploadPart.main, {
      body: input.body as Uint8Array,
      headers: {
        'x-upload-id': input.uploadId,
        'x-part-number': String(input.partNumber),
      },
      auth: true,
      retry: false,
      signal: opts.signal,
    })
    return res.body
  }

  /** io.atcr.hold.completeUpload: makes the blob visible once its bytes hash to `digest`. */
  async completeUpload(
    holdDid: string,
    input: CompleteUploadInput,
    opts: CallOptions = {},
  ): Promise<CompleteUploadOutput> {
    return (
      await this.#procedure(holdDid, hold.completeUpload.main, input, opts)
    ).body
  }

  /** io.atcr.hold.abortUpload: drops an upload and its parts. */
  async abortUpload(
    holdDid: string,
    input: { uploadId: string },
    opts: CallOptions = {},
  ): Promise<AbortUploadOutput> {
    return (await this.#procedure(holdDid, hold.abortUpload.main, input, opts))
      .body
  }

  /**
   * Pushes one blob with the multipart procedures, parts sent through the hold
   * (uploadPart), in order. With `repo`, the completed upload counts one push of (did, repo).
   * An upload that fails is aborted.
   */
  async pushBlob(
    holdDid: string,
    bytes: Uint8Array,
    input: {
      digest?: string
      did?: Did
      repo?: string
      partSize?: number
    } = {},
    opts: CallOptions = {},
  ): Promise<CompleteUploadOutput> {
    const digest = input.digest ?? (await sha256Digest(bytes))
    const partSize = input.partSize ?? 16 * 1024 * 1024
    const { uploadId } = await this.initiateUpload(
      holdDid,
      { digest, did: input.did, repo: input.repo },
      opts,
    )
    try {
      const parts: { partNumber: number; etag: string }[] = []
      for (let off = 0, n = 1; off < bytes.length || n === 1; n++) {
        const body = bytes.subarray(off, off + partSize)
        off += partSize
        const { etag } = await this.uploadPart(
          holdDid,
          { uploadId, partNumber: n, body },
          opts,
        )
        parts.push({ partNumber: n, etag })
      }
      return await this.completeUpload(
        holdDid,
        { uploadId, digest, parts },
        opts,
      )
    } catch (err) {
      await this.abortUpload(holdDid, { uploadId }).catch(() => {})
      throw err
    }
  }

  /** io.atcr.hold.notifyManifest: the AppView's notice of a pushed or pulled manifest. */
  async notifyManifest(
    holdDid: string,
    input: NotifyManifestInput,
    opts: CallOptions = {},
  ): Promise<NotifyManifestOutput> {
    return (
      await this.#procedure(holdDid, hold.notifyManifest.main, input, opts)
    ).body
  }

  /** io.atcr.hold.requestCrew: the token's issuer joins the crew (needs allowAllCrew). */
  async requestCrew(
    holdDid: string,
    input: RequestCrewInput = {},
    opts: CallOptions = {},
  ): Promise<RequestCrewOutput> {
    return (await this.#procedure(holdDid, hold.requestCrew.main, input, opts))
      .body
  }

  /** io.atcr.hold.getStats: the counts of one (did, repo) pair on one hold. */
  async getStats(
    holdDid: string,
    params: { did: Did; repo: string },
    opts: CallOptions = {},
  ): Promise<StatsView> {
    const res = await this.#call(holdDid, hold.getStats.main, {
      params,
      retry: true,
      signal: opts.signal,
    })
    return res.body
  }

  /** io.atcr.hold.listStats: every repository of one owner, one page per iteration. */
  async *listStats(
    holdDid: string,
    params: { did: Did; limit?: number },
    opts: CallOptions = {},
  ): AsyncGenerator<ListStatsPage, void, undefined> {
    yield* this.#pages(holdDid, hold.listStats.main, params, opts)
  }

  /**
   * io.atcr.hold.getStatsHistory: one pair's pulls and pushes per UTC day, `since` to `until`
   * (YYYY-MM-DD, both included, at most 366 days; `until` defaults to today on the hold).
   */
  async getStatsHistory(
    holdDid: string,
    params: { did: Did; repo: string; since: string; until?: string },
    opts: CallOptions = {},
  ): Promise<StatsHistory> {
    const res = await this.#call(holdDid, hold.getStatsHistory.main, {
      params,
      retry: true,
      signal: opts.signal,
    })
    return res.body
  }

  /** io.atcr.hold.listTrending: the hold's repositories by pulls in the last `days` days. */
  async *listTrending(
    holdDid: string,
    params: { days?: number; limit?: number } = {},
    opts: CallOptions = {},
  ): AsyncGenerator<TrendingPage, void, undefined> {
    yield* this.#pages(holdDid, hold.listTrending.main, params, opts)
  }

  /** A paged query's pages, each asked with the cursor of the one before (retried). */
  async *#pages<M extends Method>(
    holdDid: string,
    method: M,
    params: Record<string, unknown>,
    opts: CallOptions,
  ): AsyncGenerator<XrpcResponse<M>['body'], void, undefined> {
    let cursor: string | undefined
    do {
      const res = await this.#call(holdDid, method, {
        params: { ...params, cursor },
        retry: true,
        signal: opts.signal,
      })
      yield res.body
      cursor = (res.body as { cursor?: string }).cursor
    } while (cursor)
  }

  /**
   * The counts of one pair summed over several holds, asked in parallel, each within
   * aggregateTimeoutMs. Holds that fail or time out are listed in `failed` (and in `holds`
   * with their error); the sums cover the holds that answered. Results are cached
   * (aggregateTtlMs, or aggregatePartialTtlMs when a hold is missing), and concurrent calls
   * for the same pair and holds share one round of requests. `fresh` skips the cache.
   */
  async getAggregatedStats(
    did: Did,
    repo: string,
    holdDids: readonly string[],
    opts: CallOptions & { fresh?: boolean; timeoutMs?: number } = {},
  ): Promise<AggregatedStats> {
    const holds = [...new Set(holdDids)]
    const key = `${did}\n${repo}\n${[...holds].sort().join('\n')}`
    if (!opts.fresh) {
      const hit = this.#aggregates.get(key)
      if (hit) return hit
    }
    const run = this.#aggregating.run(key, async () => {
      const result = await aggregateStats(
        { did, repository: repo },
        holds,
        opts.timeoutMs ?? this.#opts.aggregateTimeoutMs,
        (holdDid, signal) => this.getStats(holdDid, { did, repo }, { signal }),
      )
      this.#aggregates.set(
        key,
        result,
        result.failed.length
          ? Math.min(
              this.#opts.aggregatePartialTtlMs,
              this.#opts.aggregateTtlMs,
            )
          : this.#opts.aggregateTtlMs,
      )
      return result
    })
    return untilAborted(run, opts.signal)
  }

  /** Forgets cached aggregates. */
  clearAggregateCache(): void {
    this.#aggregates.clear()
  }

  #procedure<M extends Procedure>(
    holdDid: string,
    method: M,
    body: unknown,
    opts: CallOptions,
  ): Promise<XrpcResponse<M>> {
    return this.#call(holdDid, method, {
      body,
      auth: true,
      retry: false,
      signal: opts.signal,
    } as CallSpec)
  }

  #signal(
    caller: AbortSignal | undefined,
    timeoutMs: number,
  ): AbortSignal | undefined {
    const own = AbortSignal.timeout(timeoutMs)
    return caller ? AbortSignal.any([caller, own]) : own
  }

  #agent(endpoint: string): Agent {
    let agent = this.#agents.get(endpoint)
    if (!agent) {
      agent = buildAgent({ service: endpoint, fetch: this.#fetch })
      if (this.#agents.size >= 10_000) this.#agents.clear()
      this.#agents.set(endpoint, agent)
    }
    return agent
  }

  async #call<M extends Method>(
    holdDid: string,
    method: M,
    spec: CallSpec,
  ): Promise<XrpcResponse<M>> {
    const nsid = method.nsid
    const signal = this.#signal(spec.signal, this.#opts.timeoutMs)
    try {
      const endpoint = await this.resolveHold(holdDid, { signal })
      const headers = new Headers(spec.headers)
      if (spec.auth) {
        if (!this.#tokens) {
          throw new HoldError(
            'TokenUnavailable',
            `${nsid} needs a service token: pass getToken to the HoldClient`,
            { hold: holdDid, nsid },
          )
        }
        const lxm = method === (getBlobUrl as Method) ? GET_BLOB : nsid
        const token = await untilAborted(this.#tokens.get(holdDid, lxm), signal)
        headers.set('authorization', `Bearer ${token}`)
      }
      const options = {
        params: spec.params,
        body: spec.body,
        headers,
        signal,
        maxRetries: spec.retry ? this.#opts.retries : 0,
        minRetryTimeout: this.#opts.retryMinMs,
        maxRetryTimeout: Math.max(this.#opts.retryMinMs, 2_000),
        validateResponse: false,
      } as unknown as XrpcOptions<M>
      const res = await xrpcSafe(this.#agent(endpoint), method, options)
      if (res.success) {
        checkOutput(method, res)
        return res
      }
      if (
        spec.auth &&
        res instanceof XrpcResponseError &&
        res.status === 401 &&
        this.#tokens
      ) {
        this.#tokens.drop(holdDid, method.nsid)
      }
      throw res
    } catch (err) {
      throw toHoldError(err, { hold: holdDid, nsid, signal })
    }
  }
}

/**
 * Validates a JSON answer against the method's output schema (lex-client's own check parses
 * instead, and builds an error with a stack trace for every absent optional field; without
 * the traces, which are never shown, that costs a tenth as much).
 */
const checkOutput = (method: Method, res: XrpcResponse<Method>): void => {
  const schema = method.output.schema
  if (!schema) return
  // V8's setting; elsewhere a harmless property.
  const E = Error as { stackTraceLimit?: number }
  const limit = E.stackTraceLimit
  E.stackTraceLimit = 0
  let result
  try {
    result = schema.safeValidate(res.body)
  } finally {
    E.stackTraceLimit = limit
  }
  if (!result.success) {
    throw new HoldError(
      'InvalidResponse',
      `${method.nsid}: ${result.reason.message}`,
      { nsid: method.nsid, status: res.status },
    )
  }
}

type CallSpec = {
  params?: object
  body?: unknown
  headers?: Record<string, string>
  auth?: boolean
  retry: boolean
  signal?: AbortSignal
}

/** `sha256:<hex>` of some bytes, with WebCrypto. */
export const sha256Digest = async (bytes: Uint8Array): Promise<string> => {
  const hash = new Uint8Array(
    await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>),
  )
  let hex = ''
  for (const b of hash) hex += b.toString(16).padStart(2, '0')
  return `sha256:${hex}`
}
