import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FREE_FAILURES } from '../src/api/middleware/admin-auth.ts'
import {
  AuthRequiredError,
  ForbiddenError,
  InvalidRequestError,
  MethodNotImplementedError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitExceededError,
  XRPCError,
} from '../src/errors.ts'
import { removeDir, ROOT, startHold, type TestHold } from './_util.ts'

const PASSWORD = 'a long and random admin password'
const CLIENT_HEADER = 'x-test-client'

const basic = (password: string) =>
  `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`

describe('XRPC error constructors', () => {
  it.each<[string, new (message: string, error?: string) => XRPCError, number]>(
    [
      ['InvalidRequest', InvalidRequestError, 400],
      ['AuthRequired', AuthRequiredError, 401],
      ['Forbidden', ForbiddenError, 403],
      ['NotFound', NotFoundError, 404],
      ['PayloadTooLarge', PayloadTooLargeError, 413],
      ['RateLimitExceeded', RateLimitExceededError, 429],
      ['MethodNotImplemented', MethodNotImplementedError, 501],
    ],
  )(
    '%s takes the message first and the lexicon error name second',
    (name, Ctor, status) => {
      const named = new Ctor('what went wrong', 'SomeLexiconName')
      expect([named.status, named.message, named.error]).toEqual([
        status,
        'what went wrong',
        'SomeLexiconName',
      ])
      expect(new Ctor('what went wrong').error).toBe(name)
    },
  )

  it('the base takes the status, then the message, then the name', () => {
    const err = new XRPCError(409, 'already used', 'UrlAlreadyUsed')
    expect([err.status, err.message, err.error]).toEqual([
      409,
      'already used',
      'UrlAlreadyUsed',
    ])
    expect(err.headers).toBeUndefined()
  })

  it('a rate limit carries retry-after in whole seconds', () => {
    const err = new RateLimitExceededError('slow down', 'RateLimitExceeded', 7)
    expect(err.headers).toEqual({ 'retry-after': '7' })
  })
})

const ERROR_CLASSES = new Set([
  'InvalidRequestError',
  'AuthRequiredError',
  'ForbiddenError',
  'NotFoundError',
  'PayloadTooLargeError',
  'RateLimitExceededError',
  'MethodNotImplementedError',
])

/** Every `new SomeXRPCError(...)` in src/, with its message and name arguments as written. */
const errorCalls = () => {
  const src = join(ROOT, 'src')
  const calls: { at: string; message?: ts.Expression; name?: ts.Expression }[] =
    []
  for (const file of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue
    const text = readFileSync(join(src, file), 'utf8')
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node) => {
      if (ts.isNewExpression(node) && ts.isIdentifier(node.expression)) {
        const cls = node.expression.text
        const args = node.arguments ?? ts.factory.createNodeArray()
        const at = `src/${file}:${sf.getLineAndCharacterOfPosition(node.getStart()).line + 1}`
        if (cls === 'XRPCError') {
          calls.push({ at, message: args[1], name: args[2] })
        } else if (ERROR_CLASSES.has(cls)) {
          calls.push({ at, message: args[0], name: args[1] })
        }
      }
      ts.forEachChild(node, visit)
    }
    visit(sf)
  }
  return calls
}

const isName = (e: ts.Expression | undefined) =>
  e !== undefined && ts.isStringLiteral(e) && /^[A-Z][A-Za-z]+$/.test(e.text)

describe('XRPC errors in src/', () => {
  it('are all built message first, lexicon error name second (a merge in the old order does not type-check as wrong)', () => {
    const calls = errorCalls()
    expect(calls.length).toBeGreaterThan(40)
    const wrong = calls
      .filter(
        ({ message, name }) =>
          isName(message) ||
          (name !== undefined &&
            ts.isStringLiteralLike(name) &&
            !isName(name)) ||
          (name !== undefined && ts.isTemplateExpression(name)),
      )
      .map((c) => c.at)
    expect(wrong).toEqual([])
  })
})

type Answer = { status: number; headers: Headers; body: unknown }

const adminStatus = async (
  url: string,
  opts: { auth?: string; client?: string } = {},
): Promise<Answer> => {
  const headers: Record<string, string> = {}
  if (opts.auth) headers.authorization = opts.auth
  if (opts.client) headers[CLIENT_HEADER] = opts.client
  const res = await fetch(`${url}/admin/status`, { headers })
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  return { status: res.status, headers: res.headers, body: await res.json() }
}

/** Exactly `{error, message}`, with this name. */
const expectShape = (res: Answer, status: number, error: string) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  expect(Object.keys(res.body as object).sort()).toEqual(['error', 'message'])
  const body = res.body as { error: string; message: string }
  expect(body.error).toBe(error)
  expect(body.message.length).toBeGreaterThan(0)
}

describe('admin API refusals, thrown and shaped by the root error handler', () => {
  let on: TestHold
  let off: TestHold
  beforeAll(async () => {
    on = await startHold({
      env: {
        HOLD_ADMIN_PASSWORD: PASSWORD,
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
      },
    })
    off = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
  })
  afterAll(async () => {
    for (const h of [on, off]) {
      await h.stop()
      await removeDir(h.dataDir)
    }
  })

  it('403 AdminDisabled without HOLD_ADMIN_PASSWORD, naming the variable', async () => {
    const res = await adminStatus(off.url, { auth: basic(PASSWORD) })
    expectShape(res, 403, 'AdminDisabled')
    expect((res.body as { message: string }).message).toMatch(
      /HOLD_ADMIN_PASSWORD/,
    )
  })

  it('401 AuthRequired without credentials and 401 InvalidCredentials with wrong ones, each with a Basic challenge', async () => {
    const none = await adminStatus(on.url, { client: '198.51.100.1' })
    expectShape(none, 401, 'AuthRequired')
    expect(none.headers.get('www-authenticate')).toBe(
      'Basic realm="atcr-hold admin", charset="UTF-8"',
    )
    const wrong = await adminStatus(on.url, {
      auth: basic('not it'),
      client: '198.51.100.1',
    })
    expectShape(wrong, 401, 'InvalidCredentials')
    expect(wrong.headers.get('www-authenticate')).toBe(
      'Basic realm="atcr-hold admin", charset="UTF-8"',
    )
    expect(wrong.headers.get('retry-after')).toBeNull()
  })

  it('429 RateLimitExceeded with retry-after once a client is locked out, and no challenge', async () => {
    const client = '198.51.100.2'
    for (let i = 0; i <= FREE_FAILURES; i++) {
      await adminStatus(on.url, { auth: basic(`guess ${i}`), client })
    }
    const locked = await adminStatus(on.url, { auth: basic(PASSWORD), client })
    expectShape(locked, 429, 'RateLimitExceeded')
    const seconds = Number(locked.headers.get('retry-after'))
    expect(Number.isInteger(seconds) && seconds > 0).toBe(true)
    expect((locked.body as { message: string }).message).toContain(
      `try again in ${seconds} s`,
    )
    expect(locked.headers.get('www-authenticate')).toBeNull()
  })

  it('lets the right password through, as before', async () => {
    const res = await adminStatus(on.url, {
      auth: basic(PASSWORD),
      client: '198.51.100.3',
    })
    expect(res.status).toBe(200)
  })
})
