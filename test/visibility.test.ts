import { ids } from '../src/ids.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  addMember,
  callAs,
  manifestBody,
  NOTIFY,
  pushLayers,
  type Layer,
} from './_appview.ts'
import { bearer, identity } from './_identity.ts'
import { startHold, TEST_OWNER, xrpc, type TestHold } from './_util.ts'

const MEMBER = 'did:plc:visibilitymember0000000000'
const STRANGER = 'did:plc:visibilitystranger00000000'

describe('visibility: private manifests on a public hold', () => {
  let h: TestHold
  let secret: Layer
  let shared: Layer
  let config: Layer

  beforeAll(async () => {
    await identity(STRANGER)
    h = await startHold()
    await addMember(h.url, TEST_OWNER, MEMBER)
    ;[secret, shared, config] = await pushLayers(h.url, 3)
    const priv = await callAs(
      h.url,
      NOTIFY,
      TEST_OWNER,
      manifestBody(TEST_OWNER, [secret, shared], {
        repository: 'private-app',
        config,
        visibility: 'private',
      }),
    )
    expect(priv.status).toBe(200)
    const pub = await callAs(
      h.url,
      NOTIFY,
      TEST_OWNER,
      manifestBody(TEST_OWNER, [shared], { repository: 'public-app' }),
    )
    expect(pub.status).toBe(200)
  })
  afterAll(() => h.stop())

  const read = async (
    layer: Layer,
    as?: string,
    extra: Record<string, string> = {},
  ) =>
    xrpc(
      h.url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: layer.digest, repo: 'private-app', ...extra },
      { headers: as ? await bearer({ iss: as, aud: h.did }) : {} },
    )

  it('keeps a blob only a private manifest names from anonymous callers and strangers, with no count', async () => {
    for (const blob of [secret, config]) {
      for (const extra of [{}, { method: 'GET' }, { method: 'HEAD' }] as Record<
        string,
        string
      >[]) {
        const anon = await read(blob, undefined, extra)
        expect(anon.status).toBe(401)
        expect(anon.body).toMatchObject({ error: 'AuthRequired' })
        const stranger = await read(blob, STRANGER, extra)
        expect(stranger.status).toBe(403)
        expect(stranger.body).toMatchObject({ error: 'Forbidden' })
      }
    }
    await h.hold.ctx.stats.flush()
    const stats = await xrpc(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'private-app',
    })
    expect(stats.body.pullCount).toBe(0)
  })

  it('serves it to the owner and to crew, counting as any pull', async () => {
    expect((await read(secret, TEST_OWNER)).status).toBe(200)
    expect((await read(secret, MEMBER, { method: 'GET' })).status).toBe(200)
    const stats = await xrpc(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'private-app',
    })
    expect(stats.body.pullCount).toBe(2)
  })

  it('keeps a blob that a public manifest also names public', async () => {
    expect((await read(shared)).status).toBe(200)
    expect((await read(shared, STRANGER)).status).toBe(200)
  })

  it('lets uploads of a private blob through for crew', async () => {
    const res = await read(secret, MEMBER, { method: 'PUT' })
    expect(res.status).toBe(200)
  })

  it('keeps the rule across a restart, and lifts it when the manifest is notified as public', async () => {
    const dataDir = h.dataDir
    const port = h.port
    await h.stop()
    h = await startHold({ dataDir, port })
    expect((await read(secret)).status).toBe(401)
    const again = await callAs(
      h.url,
      NOTIFY,
      TEST_OWNER,
      manifestBody(TEST_OWNER, [secret, shared], {
        repository: 'private-app',
        config,
        visibility: 'public',
      }),
    )
    expect(again.status).toBe(200)
    expect(again.body.layersCreated).toBe(0)
    expect((await read(secret)).status).toBe(200)
    expect((await read(config)).status).toBe(200)
  })
})
