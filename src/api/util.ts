import type { HttpBindings } from '@hono/node-server'
import { isValidDid, isValidNsid, isValidRecordKey } from '@atproto/syntax'
import type { Context, Hono } from 'hono'
import type { Caller } from '../auth/access.ts'
import type { AppContext } from '../context.ts'
import {
  AuthRequiredError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
} from '../errors.ts'

/** Per-request values: `caller` is set once a request is authenticated (logs, metrics). */
export type Env = {
  Bindings: HttpBindings
  Variables: { caller: Caller | undefined }
}
export type App = Hono<Env>
export type Ctx = Context<Env>

/** A handler module registers its routes on the app. */
export type Register = (app: App, ctx: AppContext) => void

/**
 * The DID a service token speaks for, with the request's caller set; a call without one fails
 * with `missing` as its message.
 */
export const serviceDid = async (
  ctx: AppContext,
  c: Ctx,
  nsid: string,
  missing: string,
): Promise<string> => {
  const caller = await ctx.access.authenticate(c, nsid)
  c.set('caller', caller)
  if (!caller.did) throw new AuthRequiredError(missing)
  return caller.did
}

export const MAX_QUERY_LENGTH = 8192

/** The query string of a request, parsed once, with repeated parameters refused. */
export class Params {
  private readonly search: URLSearchParams

  constructor(c: Ctx) {
    const url = c.req.url
    const q = url.indexOf('?')
    const raw = q === -1 ? '' : url.slice(q + 1)
    if (raw.length > MAX_QUERY_LENGTH) {
      throw new InvalidRequestError(
        `query string is longer than ${MAX_QUERY_LENGTH} characters`,
      )
    }
    this.search = new URLSearchParams(raw)
  }

  string(name: string, opts: { maxLength?: number } = {}): string | undefined {
    const all = this.search.getAll(name)
    if (all.length === 0) return undefined
    if (all.length > 1) {
      throw new InvalidRequestError(`parameter ${name} is given more than once`)
    }
    return this.checked(name, all[0], opts.maxLength)
  }

  /** Every value of a parameter the method takes as an array (repeated), at most `max`. */
  array(name: string, opts: { max: number; maxLength?: number }): string[] {
    const all = this.search.getAll(name)
    if (all.length > opts.max) {
      throw new InvalidRequestError(
        `parameter ${name} is given more than ${opts.max} times`,
      )
    }
    return all.map((value) => this.checked(name, value, opts.maxLength))
  }

  private checked(name: string, value: string, maxLength?: number): string {
    const max = maxLength ?? 2048
    if (value.length > max) {
      throw new InvalidRequestError(
        `parameter ${name} is longer than ${max} characters`,
      )
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      throw new InvalidRequestError(
        `parameter ${name} contains control characters`,
      )
    }
    return value
  }

  required(name: string, opts: { maxLength?: number } = {}): string {
    const value = this.string(name, opts)
    if (value === undefined || value === '') {
      throw new InvalidRequestError(`missing required parameter: ${name}`)
    }
    return value
  }

  did(name: string): string {
    const value = this.required(name)
    if (!isValidDid(value)) {
      throw new InvalidRequestError(`${name} must be a DID, got "${value}"`)
    }
    return value
  }

  nsid(name: string): string {
    const value = this.required(name)
    if (!isValidNsid(value)) {
      throw new InvalidRequestError(`${name} must be an NSID, got "${value}"`)
    }
    return value
  }

  rkey(name: string): string {
    const value = this.required(name, { maxLength: 512 })
    if (!isValidRecordKey(value)) {
      throw new InvalidRequestError(
        `${name} must be a record key, got "${value}"`,
      )
    }
    return value
  }

  /** An integer in decimal digits, or undefined when absent or empty. */
  integer(name: string): number | undefined {
    const value = this.string(name, { maxLength: 16 })
    if (value === undefined || value === '') return undefined
    if (!/^-?\d+$/.test(value)) {
      throw new InvalidRequestError(`${name} must be an integer`)
    }
    return Number(value)
  }

  int(name: string, opts: { min: number; max: number; def: number }): number {
    const n = this.integer(name)
    if (n === undefined) return opts.def
    if (n < opts.min || n > opts.max) {
      throw new InvalidRequestError(
        `${name} must be between ${opts.min} and ${opts.max}`,
      )
    }
    return n
  }

  /** `true` or `false`, or undefined when absent or empty. */
  boolean(name: string): boolean | undefined {
    const value = this.string(name, { maxLength: 8 })
    if (value === undefined || value === '') return undefined
    if (value === 'true') return true
    if (value === 'false') return false
    throw new InvalidRequestError(`${name} must be true or false`)
  }

  bool(name: string, def: boolean): boolean {
    return this.boolean(name) ?? def
  }
}

/**
 * Checks that a `repo` or `did` parameter names this hold (by DID, or by handle where `handle` is
 * allowed). Valid syntax naming another account is RepoNotFound.
 */
export const assertOwnRepo = (
  ctx: AppContext,
  value: string,
  opts: { allowHandle: boolean },
): void => {
  if (value === ctx.cfg.did) return
  if (opts.allowHandle && value.toLowerCase() === ctx.cfg.handle) return
  if (!isValidDid(value) && !(opts.allowHandle && looksLikeHandle(value))) {
    throw new InvalidRequestError(
      `${opts.allowHandle ? 'repo must be a DID or handle' : 'did must be a DID'}, got "${value}"`,
    )
  }
  throw new NotFoundError(
    `Could not find repo: ${value} (this hold serves only ${ctx.cfg.did})`,
    'RepoNotFound',
  )
}

/** The query of a `com.atproto.sync` method, whose `did` must name this hold. */
export const syncParams = (c: Ctx, ctx: AppContext): Params => {
  const params = new Params(c)
  assertOwnRepo(ctx, params.required('did'), { allowHandle: false })
  return params
}

const looksLikeHandle = (value: string) =>
  /^[a-zA-Z0-9.-]{1,253}$/.test(value) && value.includes('.')

/** The headers of a CAR answer; its length when known (a HEAD has none). */
export const carHeaders = (length?: number): Record<string, string> => {
  const headers: Record<string, string> = {
    'content-type': 'application/vnd.ipld.car',
    'x-content-type-options': 'nosniff',
  }
  if (length !== undefined) headers['content-length'] = String(length)
  return headers
}

export const MAX_JSON_BODY_BYTES = 64 * 1024

/** The JSON object body of a procedure call, bounded in size; 400/413 otherwise. */
export const readJsonBody = async (
  c: Ctx,
  maxBytes = MAX_JSON_BODY_BYTES,
): Promise<Record<string, unknown>> => {
  if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) {
    throw new InvalidRequestError('body must be application/json')
  }
  const tooLarge = () =>
    new PayloadTooLargeError(`body is larger than ${maxBytes} bytes`)
  if (Number(c.req.header('content-length') ?? 0) > maxBytes) throw tooLarge()
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of c.req.raw.body ?? []) {
    size += chunk.byteLength
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk)
  }
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new InvalidRequestError('body is not valid JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError('body must be a JSON object')
  }
  return value as Record<string, unknown>
}
