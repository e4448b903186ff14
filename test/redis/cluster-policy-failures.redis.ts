import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../../src/ids.ts'
import {
  addMember,
  callAs,
  manifestBody,
  NOTIFY,
  pushLayers,
  type Layer,
} from '../_appview.ts'
import { bearer, identity } from '../_identity.ts'
import {
  holdInfo,
  removeDir,
  spawnHold,
  tempDir,
  TEST_OWNER,
  waitFor,
  xrpc,
  type SpawnedHold,
} from '../_util.ts'
import { startCluster, type TestCluster } from './_cluster.ts'

const MEMBER = 'did:plc:policyfailuremember00000000'
const STRANGER = 'did:plc:policyfailurestranger000000'
/** What the README states: a frontend refuses crew decisions once Redis is gone this long. */
const MAX_AGE_MS = 10_000

describe('a public hold with a private repository, on frontends', () => {
  let cluster: TestCluster
  let holdDid: string
  let secret: Layer
  let open: Layer
  let lonely: SpawnedHold | undefined
  let lonelyDir: string | undefined

  beforeAll(async () => {
    for (const d of [MEMBER, STRANGER]) await identity(d)
    cluster = await startCluster({ frontends: 1 })
    holdDid = (await holdInfo(cluster.writer.url)).did
    await addMember(cluster.writer.url, TEST_OWNER, MEMBER)
    ;[secret, open] = await pushLayers(cluster.frontends[0].url, 2)
    const priv = await callAs(
      cluster.writer.url,
      NOTIFY,
      TEST_OWNER,
      manifestBody(TEST_OWNER, [secret], {
        repository: 'private-app',
        visibility: 'private',
      }),
    )
    expect(priv.status).toBe(200)
  })
  afterAll(async () => {
    if (lonely && lonely.proc.exitCode === null) {
      lonely.proc.kill('SIGKILL')
      await lonely.exited
    }
    await cluster?.close()
    if (lonelyDir) await removeDir(lonelyDir)
  })

  const read = async (base: string, layer: Layer, as?: string) =>
    xrpc(
      base,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: layer.digest, repo: 'private-app' },
      { headers: as ? await bearer({ iss: as, aud: holdDid }) : {} },
    )

  it("refuses a private repository's blob to an anonymous pull and a stranger, serves it to the crew", async () => {
    const f = cluster.frontends[0].url
    // The manifest was recorded on the writer: the frontend learns of it through Redis.
    await waitFor(async () => (await read(f, secret)).status === 401, 2000)
    const anon = await read(f, secret)
    expect(anon.body).toMatchObject({ error: 'AuthRequired' })
    const stranger = await read(f, secret, STRANGER)
    expect(stranger.status).toBe(403)
    expect((await read(f, secret, MEMBER)).status).toBe(200)
    expect((await read(f, open)).status).toBe(200)
  })

  it('with Redis stopped: serves public blobs and the owner, keeps private blobs closed, and answers crew decisions 503 once its copy is too old; all again once Redis is back', async () => {
    const f = cluster.frontends[0].url
    await cluster.redis.stop()
    const stopped = Date.now()
    try {
      // Within the bound the copy still answers, crew included.
      expect((await read(f, secret, MEMBER)).status).toBe(200)
      const refused = await waitFor(async () => {
        const res = await read(f, secret, MEMBER)
        return res.status === 503 ? res : undefined
      }, MAX_AGE_MS + 5000)
      expect(Date.now() - stopped).toBeGreaterThanOrEqual(MAX_AGE_MS - 100)
      expect(refused!.body).toMatchObject({ error: 'PolicyUnavailable' })
      expect(refused!.body.message).toMatch(/Redis/)
      // A push needs the crew and the quota: refused the same way, never let through.
      const push = await xrpc(
        f,
        ids.SyncGetBlob,
        { did: MEMBER, cid: `sha256:${'b'.repeat(64)}`, method: 'PUT' },
        { headers: await bearer({ iss: MEMBER, aud: holdDid }) },
      )
      expect(push.status).toBe(503)
      // What needs no crew is still answered as before.
      expect((await read(f, open)).status).toBe(200)
      expect((await read(f, open, STRANGER)).status).toBe(200)
      expect((await read(f, secret)).status).toBe(401)
      expect((await read(f, secret, STRANGER)).status).toBe(503)
      expect((await read(f, secret, TEST_OWNER)).status).toBe(200)
      const bad = await xrpc(f, ids.SyncGetBlob, { did: TEST_OWNER, cid: 'x' })
      expect(bad.status).toBe(400)
    } finally {
      await cluster.redis.start()
    }
    await waitFor(
      async () => (await read(f, secret, MEMBER)).status === 200,
      10_000,
    )
  })

  it('a frontend with no copy of the policy answers 503, not its own configuration', async () => {
    // Another prefix: this frontend never sees the writer's policy.
    lonelyDir = await tempDir()
    lonely = await spawnHold({
      dataDir: lonelyDir,
      env: {
        ...cluster.env,
        HOLD_ROLE: 'frontend',
        HOLD_WRITER_URL: `http://127.0.0.1:${cluster.writerPort}`,
        HOLD_REDIS_PREFIX: 'elsewhere',
      },
    })
    for (const layer of [open, secret]) {
      const res = await read(lonely.url, layer)
      expect(res.status).toBe(503)
      expect(res.body).toMatchObject({ error: 'PolicyUnavailable' })
    }
    const bad = await xrpc(lonely.url, ids.SyncGetBlob, {
      did: TEST_OWNER,
      cid: 'x',
    })
    expect(bad.status).toBe(400)
  })
})
