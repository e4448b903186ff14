import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import type { AppContext } from '../../context.ts'
import type { Env } from '../util.ts'

export const ADMIN_USER = 'admin'
const REALM = 'Basic realm="atcr-hold admin", charset="UTF-8"'

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Guards /admin/*: off (403) without HOLD_ADMIN_PASSWORD; otherwise HTTP Basic with user
 * "admin" (as the reference PDS's admin routes take it). The password is compared as sha256
 * digests with timingSafeEqual, so neither its length nor its bytes leak through timing.
 */
export const adminAuth = (ctx: AppContext): MiddlewareHandler<Env> => {
  const password = ctx.secrets.adminPassword
  const expected = password === undefined ? undefined : digest(password)
  return async (c, next) => {
    if (!expected) {
      return c.json(
        {
          error: 'AdminDisabled',
          message:
            'the admin API is off on this hold: set HOLD_ADMIN_PASSWORD on the hold to enable it',
        },
        403,
      )
    }
    const header = c.req.header('authorization') ?? ''
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header)
    if (!m) {
      return c.json(
        {
          error: 'AuthRequired',
          message: 'the admin API needs HTTP Basic credentials (user "admin")',
        },
        401,
        { 'www-authenticate': REALM },
      )
    }
    const decoded = Buffer.from(m[1], 'base64').toString('utf8')
    const sep = decoded.indexOf(':')
    const user = sep === -1 ? decoded : decoded.slice(0, sep)
    const given = sep === -1 ? '' : decoded.slice(sep + 1)
    const passwordOk = timingSafeEqual(digest(given), expected)
    if (!passwordOk || user !== ADMIN_USER) {
      return c.json(
        {
          error: 'InvalidCredentials',
          message: 'wrong admin user or password',
        },
        401,
        { 'www-authenticate': REALM },
      )
    }
    await next()
  }
}
