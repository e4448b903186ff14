import { randomBytes } from 'node:crypto'
import http from 'node:http'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { createRootLogger } from '../src/logger.ts'
import { HoldServer } from '../src/server.ts'
import { GET_BLOB, blobFiles, sha256Hex } from './_access.ts'
import { identity, testPlcUrl } from './_identity.ts'
import {
  TEST_OWNER,
  freePort,
  ownerAuth,
  removeDir,
  sleep,
  tempDir,
  waitFor,
  xrpc,
  type TestHold,
} from './_util.ts'

type Line = Record<string, unknown> & { msg: string; level: number }

/** The hold's request metrics, as Prometheus text lines. */
const metricLines = async (url: string) =>
  (await (await fetch(`${url}/metrics`)).text()).split('\n')

describe('an upload the client cuts off', () => {
  const logged: string[] = []
  let h: TestHold

  beforeAll(async () => {
    const dataDir = await tempDir()
    const port = await freePort()
    await identity(TEST_OWNER)
    const env = readEnv({
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(port),
      HOLD_DATA_DIR: dataDir,
      HOLD_PLC_URL: await testPlcUrl(),
      HOLD_OWNER_DID: TEST_OWNER,
    })
    const hold = await HoldServer.create(
      envToCfg(env, 'test'),
      envToSecrets(env),
      {
        logger: createRootLogger('info', {
          pretty: false,
          destination: new Writable({
            write(chunk, _enc, cb) {
              logged.push(String(chunk))
              cb()
            },
          }),
        }),
      },
    )
    await hold.start()
    h = {
      hold,
      url: `http://localhost:${port}`,
      did: hold.ctx.cfg.did,
      dataDir,
      port,
      stop: () => hold.destroy(),
    }
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('is logged as a client event (499, aborted), not a 500, and leaves the in-flight gauge where it was', async () => {
    const inFlight = (lines: string[]) =>
      lines.find((l) => l.startsWith('hold_http_requests_in_flight '))
    const quiet = inFlight(await metricLines(h.url))

    const body = randomBytes(1 << 20)
    const signed = await xrpc<{ url: string }>(
      h.url,
      GET_BLOB,
      {
        did: TEST_OWNER,
        cid: `sha256:${sha256Hex(body)}`,
        method: 'PUT',
        repo: 'cut/off',
      },
      { headers: await ownerAuth(h.url) },
    )
    const u = new URL(signed.body.url)
    const req = http.request({
      host: '127.0.0.1',
      port: h.port,
      path: u.pathname + u.search,
      method: 'PUT',
      headers: { 'content-length': body.length },
      agent: false,
    })
    req.on('error', () => undefined)
    req.write(body.subarray(0, 100_000))
    await waitFor(() => h.hold.ctx.metrics.requestsInFlight > 0)
    await sleep(100)
    req.destroy()

    await waitFor(() => h.hold.ctx.metrics.requestsInFlight === 0)
    const lines = await metricLines(h.url)
    expect(inFlight(lines)).toBe(quiet)
    const blobRoute = lines.filter(
      (l) =>
        l.startsWith('hold_http_requests_total{') &&
        l.includes('route="/blobs/sha256/:hex"'),
    )
    expect(blobRoute).toEqual([
      'hold_http_requests_total{route="/blobs/sha256/:hex",method="PUT",status="499"} 1',
    ])

    const entries = logged.map((l) => JSON.parse(l) as Line)
    expect(entries.filter((e) => e.level >= 50)).toEqual([])
    expect(entries.filter((e) => e.msg === 'unhandled error')).toEqual([])
    const upload = entries.find(
      (e) => e.msg === 'request' && e.method === 'PUT',
    )
    expect(upload).toMatchObject({ status: 499, aborted: true, level: 30 })
    expect(await blobFiles(h)).toEqual([])
    expect(h.hold.ctx.stats.totals.pushes).toBe(0)
  })
})
