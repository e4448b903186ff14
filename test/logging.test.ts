import { createHash, randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { createRootLogger } from '../src/logger.ts'
import { HoldServer } from '../src/server.ts'
import { bearer, identity, testPlcUrl } from './_identity.ts'
import {
  freePort,
  removeDir,
  tempDir,
  TEST_OWNER,
  waitFor,
  xrpc,
} from './_util.ts'

type Line = Record<string, unknown> & { msg: string }

/** A log destination that keeps every line. */
const capture = () => {
  const raw: string[] = []
  return {
    raw,
    lines: () => raw.map((l) => JSON.parse(l) as Line),
    stream: new Writable({
      write(chunk, _enc, cb) {
        raw.push(String(chunk))
        cb()
      },
    }),
  }
}

describe('request logs', () => {
  const out = capture()
  let hold: HoldServer
  let url: string
  let dataDir: string

  beforeAll(async () => {
    dataDir = await tempDir()
    const port = await freePort()
    await identity(TEST_OWNER)
    const env = readEnv({
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(port),
      HOLD_DATA_DIR: dataDir,
      HOLD_PLC_URL: await testPlcUrl(),
      HOLD_OWNER_DID: TEST_OWNER,
    })
    hold = await HoldServer.create(envToCfg(env, 'test'), envToSecrets(env), {
      logger: createRootLogger('info', {
        pretty: false,
        destination: out.stream,
      }),
    })
    await hold.start()
    url = `http://localhost:${port}`
  })
  afterAll(async () => {
    await hold.destroy()
    await removeDir(dataDir)
  })

  const requestLines = () => out.lines().filter((l) => l.msg === 'request')

  it('writes one JSON line per request with method, NSID, status, duration and the verified caller', async () => {
    const auth = await bearer({ iss: TEST_OWNER, aud: hold.ctx.cfg.did })
    const bytes = randomBytes(32)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const before = requestLines().length
    const signed = await xrpc<{ url: string }>(
      url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: digest, method: 'PUT', repo: 'logged/app' },
      { headers: auth },
    )
    expect(signed.status).toBe(200)
    const anonymous = await xrpc(url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'logged/app',
    })
    expect(anonymous.status).toBe(200)

    const lines = (await waitFor(() => {
      const l = requestLines().slice(before)
      return l.length === 2 ? l : undefined
    }))!
    expect(lines[0]).toMatchObject({
      name: 'hold:http',
      level: 30,
      method: 'GET',
      nsid: 'com.atproto.sync.getBlob',
      status: 200,
      caller: TEST_OWNER,
    })
    expect(lines[0].query).toContain('repo=logged%2Fapp')
    expect(lines[0].ms).toBeTypeOf('number')
    expect(lines[0].ms as number).toBeGreaterThanOrEqual(0)
    expect(lines[1]).toMatchObject({
      method: 'GET',
      nsid: 'io.atcr.hold.getStats',
      status: 200,
    })
    expect(lines[1]).not.toHaveProperty('caller')
  })

  it('never writes tokens, authorization headers or the signature of a signed URL', async () => {
    const token = (await bearer({ iss: TEST_OWNER, aud: hold.ctx.cfg.did }))
      .authorization
    const bytes = randomBytes(48)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const signed = await xrpc<{ url: string }>(
      url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: digest, method: 'PUT' },
      { headers: { authorization: token } },
    )
    expect(signed.status).toBe(200)
    const sig = new URL(signed.body.url).searchParams.get('sig')!
    expect(sig.length).toBeGreaterThan(20)
    const put = await fetch(signed.body.url, { method: 'PUT', body: bytes })
    expect(put.status).toBe(201)
    // A forged token is refused with 401, and is not logged either.
    const forged = `Bearer ${token.split('.').slice(0, 2).join('.')}.c2lnbmF0dXJl`
    const refused = await xrpc(
      url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: digest, method: 'PUT' },
      { headers: { authorization: forged } },
    )
    expect(refused.status).toBe(401)
    const viaQuery = await fetch(`${url}/xrpc/_health?token=secret-in-query`)
    expect(viaQuery.status).toBe(200)

    const upload = await waitFor(() =>
      requestLines().find(
        (l) =>
          l.path === `/blobs/sha256/${digest.slice(7)}` && l.status === 201,
      ),
    )
    expect(upload?.method).toBe('PUT')
    expect(upload?.query).toContain('sig=[redacted]')
    await waitFor(() =>
      requestLines().find(
        (l) => l.nsid === '_health' && String(l.query).includes('token='),
      ),
    )
    const all = out.raw.join('')
    expect(all).not.toContain(sig)
    expect(all).not.toContain(token.slice('Bearer '.length))
    expect(all).not.toContain(forged.slice('Bearer '.length))
    expect(all).not.toContain('secret-in-query')
    expect(all).toContain('token=[redacted]')
  })

  it('logs paths outside XRPC by path, and a client that leaves mid-download as aborted', async () => {
    const bytes = randomBytes(8 * 1024 * 1024)
    const hex = createHash('sha256').update(bytes).digest('hex')
    const auth = await bearer({ iss: TEST_OWNER, aud: hold.ctx.cfg.did })
    const signed = await xrpc<{ url: string }>(
      url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: `sha256:${hex}`, method: 'PUT' },
      { headers: auth },
    )
    expect(
      (await fetch(signed.body.url, { method: 'PUT', body: bytes })).status,
    ).toBe(201)

    const leave = new AbortController()
    const res = await fetch(
      `${url}/xrpc/${ids.SyncGetBlob}?did=${TEST_OWNER}&cid=sha256:${hex}`,
      { signal: leave.signal },
    )
    expect(res.status).toBe(200)
    await res.body!.getReader().read()
    leave.abort() // closes the connection with most of the 8 MiB unsent

    const line = await waitFor(() =>
      requestLines().find(
        (l) =>
          l.nsid === ids.SyncGetBlob &&
          String(l.query).includes(hex) &&
          !String(l.query).includes('method='),
      ),
    )
    expect(line).toMatchObject({ status: 200, aborted: true })

    expect((await fetch(`${url}/no/such/page`)).status).toBe(404)
    const notFound = await waitFor(() =>
      requestLines().find((l) => l.path === '/no/such/page'),
    )
    expect(notFound).toMatchObject({ method: 'GET', status: 404 })
    expect(notFound).not.toHaveProperty('nsid')
  })
})

describe('the root logger', () => {
  it('redacts credentials in logged objects wherever they sit in the first two levels', () => {
    const out = capture()
    const log = createRootLogger('info', {
      pretty: false,
      destination: out.stream,
    })
    log.info(
      {
        authorization: 'Bearer top-level-secret',
        headers: { authorization: 'Basic header-secret', cookie: 'c=1' },
        secrets: { signingKeyHex: 'a'.repeat(64) },
        signingKeyHex: 'b'.repeat(64),
        password: 'pw-secret',
        sig: 'sig-secret',
        did: 'did:plc:visible',
      },
      'hello',
    )
    const [line] = out.lines()
    expect(line).toMatchObject({
      authorization: '[redacted]',
      headers: { authorization: '[redacted]', cookie: '[redacted]' },
      secrets: '[redacted]',
      signingKeyHex: '[redacted]',
      password: '[redacted]',
      sig: '[redacted]',
      did: 'did:plc:visible',
    })
    expect(out.raw.join('')).not.toMatch(/secret"|a{64}|b{64}/)
  })

  it('writes readable lines instead of JSON when asked to be pretty, still redacted', async () => {
    const out = capture()
    const log = createRootLogger('info', {
      pretty: true,
      destination: out.stream,
    })
    log.info({ nsid: ids.HoldGetStats, token: 'pretty-secret' }, 'request')
    const text = await waitFor(() => out.raw.join(''))
    expect(text).toContain('INFO')
    expect(text).toContain('request')
    expect(text).toContain('io.atcr.hold.getStats')
    expect(text).not.toContain('pretty-secret')
    expect(() => JSON.parse(text)).toThrow()
  })
})
