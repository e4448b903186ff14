import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import type { AppContext } from '../../context.ts'
import {
  AuthRequiredError,
  ForbiddenError,
  RateLimitExceededError,
} from '../../errors.ts'
import { Lru } from '../../lru.ts'
import { clientKey } from '../../auth/client-address.ts'
import type { Env } from '../util.ts'

export const ADMIN_USER = 'admin'
const CHALLENGE = {
  headers: {
    'www-authenticate': 'Basic realm="atcr-hold admin", charset="UTF-8"',
  },
}

/** Wrong passwords a client may send before it is locked out. */
export const FREE_FAILURES = 10
/** The first lock; each further failure doubles it, up to MAX_LOCK_MS. */
const FIRST_LOCK_MS = 1000
const MAX_LOCK_MS = 15 * 60 * 1000
/** A client's failures are forgotten after this long without one (longer than any lock). */
const FORGET_MS = 60 * 60 * 1000
const CLIENTS_MAX = 10_000

type Failures = { count: number; last: number; lockedUntil: number }

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Counts wrong admin credentials per client. After FREE_FAILURES, each further failure locks
 * the client out for twice as long as the last, up to MAX_LOCK_MS; a locked client's requests
 * are refused unchecked, so a guess costs the guesser the whole lock. A success clears the
 * client. Clients are kept in a bounded LRU: memory does not grow with addresses.
 */
export class AdminLockout {
  private readonly clients = new Lru<string, Failures>({
    maxEntries: CLIENTS_MAX,
  })

  get size(): number {
    return this.clients.size
  }

  /** Milliseconds the client is still locked out for, or 0. */
  lockedFor(client: string, now = Date.now()): number {
    const entry = this.clients.peek(client)
    return entry && entry.lockedUntil > now ? entry.lockedUntil - now : 0
  }

  /** Records a failure; returns the lock it starts in milliseconds (0 while still free). */
  fail(client: string, now = Date.now()): number {
    let entry = this.clients.get(client)
    if (!entry || now - entry.last > FORGET_MS) {
      entry = { count: 0, last: now, lockedUntil: 0 }
      this.clients.set(client, entry)
    }
    entry.count++
    entry.last = now
    if (entry.count <= FREE_FAILURES) return 0
    const lock = Math.min(
      FIRST_LOCK_MS * 2 ** Math.min(entry.count - FREE_FAILURES - 1, 30),
      MAX_LOCK_MS,
    )
    entry.lockedUntil = now + lock
    return lock
  }

  succeed(client: string): void {
    this.clients.delete(client)
  }
}

/**
 * Guards /admin/*: off (403) without HOLD_ADMIN_PASSWORD; otherwise HTTP Basic with user
 * "admin" (as the reference PDS's admin routes take it). The password is compared as sha256
 * digests with timingSafeEqual, so neither its length nor its bytes leak through timing.
 * Repeated wrong credentials lock the client out (AdminLockout), with a metric and a log line.
 */
export const adminAuth = (ctx: AppContext): MiddlewareHandler<Env> => {
  const password = ctx.secrets.adminPassword
  const expected = password === undefined ? undefined : digest(password)
  const lockout = new AdminLockout()
  const log = ctx.log.admin
  return async (c, next) => {
    if (!expected) {
      throw new ForbiddenError(
        'the admin API is off on this hold: set HOLD_ADMIN_PASSWORD on the hold to enable it',
        'AdminDisabled',
      )
    }
    const client = clientKey(ctx, c, undefined)
    const locked = lockout.lockedFor(client)
    if (locked > 0) {
      ctx.metrics.adminLocked.inc()
      const seconds = Math.ceil(locked / 1000)
      throw new RateLimitExceededError(
        `too many wrong admin passwords from this client: try again in ${seconds} s`,
        'RateLimitExceeded',
        seconds,
      )
    }
    const header = c.req.header('authorization') ?? ''
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header)
    if (!m) {
      throw new AuthRequiredError(
        'the admin API needs HTTP Basic credentials (user "admin")',
        'AuthRequired',
        CHALLENGE,
      )
    }
    const decoded = Buffer.from(m[1], 'base64').toString('utf8')
    const sep = decoded.indexOf(':')
    const user = sep === -1 ? decoded : decoded.slice(0, sep)
    const given = sep === -1 ? '' : decoded.slice(sep + 1)
    const passwordOk = timingSafeEqual(digest(given), expected)
    if (!passwordOk || user !== ADMIN_USER) {
      ctx.metrics.adminAuthFailures.inc()
      const lock = lockout.fail(client)
      if (lock > 0) {
        log.warn(
          { client, lockedForS: lock / 1000 },
          'admin API locked for a client after repeated wrong passwords',
        )
      }
      throw new AuthRequiredError(
        'wrong admin user or password',
        'InvalidCredentials',
        CHALLENGE,
      )
    }
    lockout.succeed(client)
    await next()
  }
}
