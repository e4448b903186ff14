import { CliError } from './errors.ts'

export type CliEnv = {
  /** Base URL of the running hold, no trailing slash. */
  url: string
  password: string | undefined
}

/** HOLD_URL (default http://localhost:$HOLD_PORT, port default 8080) and HOLD_ADMIN_PASSWORD. */
export const readCliEnv = (env: NodeJS.ProcessEnv): CliEnv => {
  const port = env.HOLD_PORT?.trim() || '8080'
  const raw = env.HOLD_URL?.trim() || `http://localhost:${port}`
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new CliError(`HOLD_URL must be an http(s) URL, got "${raw}"`, 2)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`HOLD_URL must be an http(s) URL, got "${raw}"`, 2)
  }
  return {
    url: url.href.replace(/\/+$/, ''),
    password: env.HOLD_ADMIN_PASSWORD || undefined,
  }
}

type Query = Record<string, string | number | undefined>

/** HTTP to the running hold: public XRPC reads and the password-protected /admin API. */
export class HoldClient {
  readonly url: string
  private readonly password: string | undefined
  timeoutMs = 60_000

  constructor(env: CliEnv) {
    this.url = env.url
    this.password = env.password
  }

  xrpc<T>(nsid: string, query: Query = {}): Promise<T> {
    return this.json<T>('GET', `/xrpc/${nsid}`, query)
  }

  adminGet<T>(path: string, query: Query = {}): Promise<T> {
    return this.json<T>('GET', `/admin/${path}`, query, undefined, true)
  }

  adminPost<T>(path: string, body: unknown): Promise<T> {
    return this.json<T>('POST', `/admin/${path}`, {}, body, true)
  }

  /** A raw GET (streams such as a CAR), with the same error handling; no overall timeout. */
  async stream(path: string, query: Query = {}): Promise<Response> {
    const res = await this.fetch(this.target(path, query), { method: 'GET' })
    if (!res.ok) await this.fail(res, path, false)
    return res
  }

  private target(path: string, query: Query): URL {
    // Appended, not resolved, so a HOLD_URL with a path (behind a proxy) keeps it.
    const url = new URL(`${this.url}${path}`)
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined) url.searchParams.set(k, String(v))
    }
    return url
  }

  private async json<T>(
    method: string,
    path: string,
    query: Query,
    body?: unknown,
    admin = false,
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (admin) {
      if (!this.password) {
        throw new CliError(
          'HOLD_ADMIN_PASSWORD is not set: this command needs the admin password the hold was started with',
          2,
        )
      }
      headers.authorization = `Basic ${Buffer.from(`admin:${this.password}`).toString('base64')}`
    }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await this.fetch(this.target(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    })
    if (!res.ok) await this.fail(res, path, admin)
    const text = await res.text()
    try {
      return JSON.parse(text) as T
    } catch {
      throw new CliError(
        `unexpected answer from ${this.url}${path}: not JSON (is HOLD_URL an atcr-hold?)`,
      )
    }
  }

  private async fetch(url: URL, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init)
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } }
      if (e.name === 'TimeoutError') {
        throw new CliError(
          `the hold at ${this.url} did not answer within ${this.timeoutMs / 1000} s`,
        )
      }
      const why = e.cause?.message || e.cause?.code || e.message
      throw new CliError(`cannot reach the hold at ${this.url}: ${why}`)
    }
  }

  private async fail(
    res: Response,
    path: string,
    admin: boolean,
  ): Promise<never> {
    const text = await res.text().catch(() => '')
    let error = ''
    let message = text.slice(0, 200).replace(/\s+/g, ' ').trim()
    try {
      const body = JSON.parse(text) as { error?: string; message?: string }
      error = body.error ?? ''
      message = body.message ?? message
    } catch {
      // not JSON: keep the text
    }
    if (admin && res.status === 401) {
      throw new CliError(
        `the hold at ${this.url} refused the admin password (401 ${error || 'Unauthorized'}): check HOLD_ADMIN_PASSWORD`,
      )
    }
    if (admin && error === 'AdminDisabled') {
      throw new CliError(
        `the admin API is off on the hold at ${this.url}: start the hold with HOLD_ADMIN_PASSWORD set`,
      )
    }
    if (admin && res.status === 404 && error !== 'RecordNotFound') {
      throw new CliError(
        `the hold at ${this.url} has no admin API at ${path} (404): is HOLD_URL an atcr-hold of this version?`,
      )
    }
    const code = `${res.status}${error ? ` ${error}` : ''}`
    if (res.status < 500 && message) throw new CliError(`${message} (${code})`)
    throw new CliError(
      `the hold at ${this.url} failed on ${path}: ${code}${message ? `: ${message}` : ''}`,
    )
  }
}
