// atcr-hold/client when holds misbehave: resolution, time limits, garbage, retries.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HoldClient, HoldError, type GetToken } from '../src/client/index.ts'
import { startFront, type Front } from './_front.ts'
import { serviceToken } from './_identity.ts'
import { blobDigest } from './_shared.ts'
import { startHold, TEST_OWNER, type TestHold } from './_util.ts'

const asOwner: GetToken = (aud, lxm, { exp }) =>
  serviceToken({ iss: TEST_OWNER, aud, lxm, exp })

const failure = async (p: Promise<unknown>): Promise<HoldError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(HoldError)
  return err as HoldError
}

const PLC_HOLD = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const PLC_BARE = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'

let h: TestHold
let front: Front
let plc: Server
let plcUrl: string
let docFetches = 0

beforeAll(async () => {
  h = await startHold()
  front = await startFront(h.url)
  // A PLC directory naming the live hold as the #atcr_hold of a did:plc, and a did:plc with
  // no such service.
  plc = createServer((req, res) => {
    docFetches++
    const did = decodeURIComponent((req.url ?? '/').slice(1))
    const service =
      did === PLC_HOLD
        ? [{ id: '#atcr_hold', type: 'AtcrHold', serviceEndpoint: h.url }]
        : []
    if (did !== PLC_HOLD && did !== PLC_BARE) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ id: did, service }))
  })
  await new Promise<void>((r) => plc.listen(0, '127.0.0.1', r))
  plcUrl = `http://127.0.0.1:${(plc.address() as AddressInfo).port}`
})
afterAll(async () => {
  await front?.close()
  await new Promise((r) => plc?.close(r))
  await h?.stop()
})

describe('resolveHold', () => {
  it('resolves a did:web hold to its #atcr_hold endpoint', async () => {
    const c = new HoldClient({ allowHttpLocalhost: true })
    expect(await c.resolveHold(h.did)).toBe(h.url)
  })

  it('refuses http for did:web unless allowHttpLocalhost is set', async () => {
    const c = new HoldClient()
    const err = await failure(c.resolveHold(h.did))
    expect(err.error).toBe('HoldNotResolved')
  })

  it('resolves a did:plc hold through the PLC, and keeps it for the TTL', async () => {
    const c = new HoldClient({ plcUrl, resolveTtlMs: 300 })
    const before = docFetches
    expect(await c.resolveHold(PLC_HOLD)).toBe(h.url)
    expect(await c.resolveHold(PLC_HOLD)).toBe(h.url)
    expect(docFetches - before).toBe(1)
    await new Promise((r) => setTimeout(r, 350))
    await c.resolveHold(PLC_HOLD)
    expect(docFetches - before).toBe(2)
  })

  it('concurrent resolutions of one DID share one fetch', async () => {
    const c = new HoldClient({ plcUrl })
    const before = docFetches
    await Promise.all(Array.from({ length: 5 }, () => c.resolveHold(PLC_HOLD)))
    expect(docFetches - before).toBe(1)
  })

  it('a document without #atcr_hold, an unknown DID or a non-DID are HoldNotResolved', async () => {
    const c = new HoldClient({ plcUrl })
    for (const did of [PLC_BARE, 'did:plc:cccccccccccccccccccccccc', 'nope']) {
      const err = await failure(c.resolveHold(did))
      expect(err.error, did).toBe('HoldNotResolved')
    }
  })

  it('calls a did:plc hold like any other', async () => {
    const c = new HoldClient({ plcUrl })
    expect(
      await c.getStats(PLC_HOLD, { did: TEST_OWNER, repo: 'plc/app' }),
    ).toMatchObject({ pullCount: 0 })
  })
})

describe('a hold that answers garbage', () => {
  it('a body that is not JSON is InvalidResponse', async () => {
    front.answer = () => ({ status: 200, body: '<html>hi</html>' })
    const c = new HoldClient({ allowHttpLocalhost: true })
    const err = await failure(
      c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    )
    expect(err.error).toBe('InvalidResponse')
    expect(err.hold).toBe(front.did)
  })

  it('JSON of the wrong shape is InvalidResponse naming the field', async () => {
    const limit = Error.stackTraceLimit
    front.answer = () => ({
      status: 200,
      body: JSON.stringify({
        did: TEST_OWNER,
        repository: 'app',
        pullCount: -5,
      }),
    })
    const c = new HoldClient({ allowHttpLocalhost: true })
    const err = await failure(
      c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    )
    expect(err.error).toBe('InvalidResponse')
    expect(err.message).toMatch(/pullCount|pushCount/)
    // The check runs without stack traces and puts the limit back.
    expect(Error.stackTraceLimit).toBe(limit)
  })

  it('an error status with a non-XRPC body keeps the status', async () => {
    front.answer = () => ({
      status: 418,
      body: 'teapot',
      contentType: 'text/plain',
    })
    const c = new HoldClient({ allowHttpLocalhost: true })
    const err = await failure(
      c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    )
    expect(err.status).toBe(418)
  })
})

describe('time limits', () => {
  it('a call slower than timeoutMs is Timeout', async () => {
    front.answer = () => ({ delayMs: 2000 })
    const c = new HoldClient({ allowHttpLocalhost: true, timeoutMs: 200 })
    await c.resolveHold(front.did)
    const started = Date.now()
    const err = await failure(
      c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    )
    expect(err.error).toBe('Timeout')
    expect(err.timedOut).toBe(true)
    expect(Date.now() - started).toBeLessThan(1500)
  })

  it('the caller’s AbortSignal ends a call as Aborted', async () => {
    front.answer = () => ({ delayMs: 2000 })
    const c = new HoldClient({ allowHttpLocalhost: true })
    await c.resolveHold(front.did)
    const ac = new AbortController()
    const p = c.getStats(
      front.did,
      { did: TEST_OWNER, repo: 'app' },
      { signal: ac.signal },
    )
    setTimeout(() => ac.abort(), 50)
    expect((await failure(p)).error).toBe('Aborted')
  })
})

describe('retries', () => {
  it('an idempotent query is retried with backoff after 503, and succeeds', async () => {
    front.seen.length = 0
    front.answer = (nsid, n) =>
      nsid === 'io.atcr.hold.getStats' && n <= 2
        ? {
            status: 503,
            body: '{"error":"NotEnoughResources","message":"busy"}',
          }
        : 'forward'
    const c = new HoldClient({ allowHttpLocalhost: true, retryMinMs: 10 })
    expect(
      await c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    ).toMatchObject({ pullCount: 0 })
    expect(front.seen).toEqual(Array(3).fill('io.atcr.hold.getStats'))
  })

  it('gives up after `retries` with the last error', async () => {
    front.seen.length = 0
    front.answer = () => ({
      status: 503,
      body: '{"error":"NotEnoughResources","message":"busy"}',
    })
    const c = new HoldClient({
      allowHttpLocalhost: true,
      retryMinMs: 10,
      retries: 1,
    })
    const err = await failure(
      c.getStats(front.did, { did: TEST_OWNER, repo: 'app' }),
    )
    expect(err.error).toBe('NotEnoughResources')
    expect(err.status).toBe(503)
    expect(front.seen).toHaveLength(2)
  })

  it('procedures and counted getBlob calls are sent once', async () => {
    front.seen.length = 0
    front.answer = () => ({
      status: 503,
      body: '{"error":"NotEnoughResources","message":"busy"}',
    })
    const c = new HoldClient({
      allowHttpLocalhost: true,
      retryMinMs: 10,
      getToken: asOwner,
    })
    await failure(
      c.initiateUpload(front.did, { digest: blobDigest(new Uint8Array([1])) }),
    )
    const cid = blobDigest(new Uint8Array([2]))
    await failure(c.getBlob(front.did, { did: TEST_OWNER, cid, repo: 'app' }))
    expect(front.seen).toEqual([
      'io.atcr.hold.initiateUpload',
      'com.atproto.sync.getBlob',
    ])
    front.seen.length = 0
    await failure(c.getBlob(front.did, { did: TEST_OWNER, cid }))
    expect(front.seen).toHaveLength(3)
  })

  it('a 4xx refusal is not retried', async () => {
    front.seen.length = 0
    front.answer = () => 'forward'
    const c = new HoldClient({ allowHttpLocalhost: true, retryMinMs: 10 })
    const err = await failure(
      c.getBlob(front.did, {
        did: TEST_OWNER,
        cid: `sha256:${'1'.repeat(64)}`,
      }),
    )
    expect(err.error).toBe('BlobNotFound')
    expect(front.seen).toHaveLength(1)
  })
})
