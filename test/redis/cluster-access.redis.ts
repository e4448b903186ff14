import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { crewRecordKey } from '../../src/auth/crew-rules.ts'
import { ids } from '../../src/ids.ts'
import { addMember, callAs, manifestBody, NOTIFY } from '../_appview.ts'
import { bearer, identity } from '../_identity.ts'
import { uploadBlob } from '../_shared.ts'
import {
  holdInfo,
  removeDir,
  tempDir,
  TEST_OWNER,
  waitFor,
  xrpc,
} from '../_util.ts'
import { startCluster, type TestCluster } from './_cluster.ts'

const MEMBER = 'did:plc:clusteraccessmember00000000'
const STRANGER = 'did:plc:clusteraccessstranger000000'
const PUSHER = 'did:plc:clusteraccesspusher00000000'
/** What the README states: a crew change reaches every frontend within this. */
const PROPAGATION_MS = 2000
const QUOTA = 3000

describe('a private hold with quotas: frontends decide as the writer', () => {
  let cluster: TestCluster
  let tiersDir: string
  let holdDid: string
  let blob: string

  beforeAll(async () => {
    tiersDir = await tempDir('atcr-cluster-tiers-')
    const tiers = join(tiersDir, 'quotas.yaml')
    await writeFile(
      tiers,
      `tiers:\n  deckhand: ${QUOTA}\ndefaults:\n  new_crew_tier: deckhand\n`,
    )
    for (const d of [MEMBER, STRANGER, PUSHER]) await identity(d)
    cluster = await startCluster({
      frontends: 2,
      env: { HOLD_PUBLIC: 'false', HOLD_QUOTAS_FILE: tiers },
    })
    holdDid = (await holdInfo(cluster.writer.url)).did
    const bytes = randomBytes(512)
    const stored = await uploadBlob(cluster.frontends[0].url, bytes, {
      did: TEST_OWNER,
      repo: 'app',
      headers: await bearer({ iss: TEST_OWNER, aud: holdDid }),
    })
    expect(stored.status).toBe(201)
    blob = stored.digest
  })
  afterAll(async () => {
    await cluster?.close()
    if (tiersDir) await removeDir(tiersDir)
  })

  const read = async (base: string, as?: string) =>
    xrpc(
      base,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: blob },
      { headers: as ? await bearer({ iss: as, aud: holdDid }) : {} },
    )

  it('refuses a non-crew user on every frontend, accepts them once the writer adds them to the crew, and refuses them again once removed', async () => {
    for (const f of cluster.frontends) {
      const anon = await read(f.url)
      expect(anon.status).toBe(401)
      expect(anon.body).toMatchObject({ error: 'AuthRequired' })
      const before = await read(f.url, MEMBER)
      expect(before.status).toBe(403)
      expect(before.body).toMatchObject({ error: 'Forbidden' })
    }
    // Added on the writer, directly: frontends learn it through Redis only.
    await addMember(cluster.writer.url, TEST_OWNER, MEMBER)
    const added = Date.now()
    for (const f of cluster.frontends) {
      await waitFor(
        async () => (await read(f.url, MEMBER)).status === 200,
        PROPAGATION_MS - (Date.now() - added),
      )
    }
    // A stranger is still refused, the owner always served.
    expect((await read(cluster.frontends[1].url, STRANGER)).status).toBe(403)
    expect((await read(cluster.frontends[1].url, TEST_OWNER)).status).toBe(200)

    const removed = await callAs(
      cluster.writer.url,
      ids.RepoDeleteRecord,
      TEST_OWNER,
      { repo: holdDid, collection: ids.HoldCrew, rkey: crewRecordKey(MEMBER) },
    )
    expect(removed.status).toBe(200)
    const at = Date.now()
    for (const f of cluster.frontends) {
      await waitFor(
        async () => (await read(f.url, MEMBER)).status === 403,
        PROPAGATION_MS - (Date.now() - at),
      )
    }
  })

  it("refuses a crew member's push on a frontend once their uploads there and on the other frontend would pass their quota", async () => {
    await addMember(cluster.writer.url, TEST_OWNER, PUSHER)
    const [a, b] = cluster.frontends
    const auth = async () => bearer({ iss: PUSHER, aud: holdDid })
    const upload = async (base: string, size: number) =>
      uploadBlob(base, randomBytes(size), {
        did: PUSHER,
        repo: 'mine',
        headers: await auth(),
      })
    // The crew change reaches the frontends first (a push before it is refused as non-crew).
    await waitFor(async () => {
      const res = await xrpc(
        b.url,
        ids.SyncGetBlob,
        { did: PUSHER, cid: `sha256:${'a'.repeat(64)}`, method: 'PUT' },
        { headers: await auth() },
      )
      return res.status === 200
    }, PROPAGATION_MS)

    const first = await upload(a.url, 2000)
    expect(first.status).toBe(201)
    // 2000 accepted on frontend a, not yet in any manifest: b counts them.
    const again = await fetchSignedPut(b.url, PUSHER, holdDid, 1500)
    expect(again.status).toBe(403)
    expect(again.body).toMatchObject({ error: 'QuotaExceeded' })
    expect(again.body.message).toMatch(/limit of 3000 bytes/)

    // The manifest names the first blob: its bytes move from the reservation to the records.
    const notified = await callAs(
      cluster.writer.url,
      NOTIFY,
      PUSHER,
      manifestBody(
        PUSHER,
        [
          {
            digest: first.digest,
            size: 2000,
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          },
        ],
        { repository: 'mine' },
      ),
    )
    expect(notified.status).toBe(200)
    expect(notified.body).toMatchObject({ layersCreated: 1 })
    const stillOver = await fetchSignedPut(a.url, PUSHER, holdDid, 1500)
    expect(stillOver.status).toBe(403)
    expect(stillOver.body).toMatchObject({ error: 'QuotaExceeded' })
    expect((await upload(b.url, 900)).status).toBe(201)
    // The owner has no limit.
    const big = await uploadBlob(a.url, randomBytes(QUOTA * 2), {
      did: TEST_OWNER,
      repo: 'app',
      headers: await bearer({ iss: TEST_OWNER, aud: holdDid }),
    })
    expect(big.status).toBe(201)
  })

  it('answers bad input on a frontend with 4xx XRPC errors', async () => {
    const [a] = cluster.frontends
    const headers = await bearer({ iss: TEST_OWNER, aud: holdDid })
    const cases: [Record<string, string>, number, string][] = [
      [{ did: TEST_OWNER, cid: 'not-a-cid' }, 400, 'InvalidRequest'],
      [{ did: 'nope', cid: blob }, 400, 'InvalidRequest'],
      [{ did: TEST_OWNER, cid: blob, method: 'POST' }, 400, 'InvalidRequest'],
      [{ did: TEST_OWNER, cid: `sha256:${'0'.repeat(64)}` }, 404, ''],
    ]
    for (const [params, status, error] of cases) {
      const res = await xrpc(a.url, ids.SyncGetBlob, params, { headers })
      expect(res.status, JSON.stringify(params)).toBe(status)
      expect(typeof res.body.message).toBe('string')
      if (error) expect(res.body.error).toBe(error)
    }
    const badToken = await xrpc(
      a.url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: blob },
      { headers: { authorization: 'Bearer not.a.jwt' } },
    )
    expect(badToken.status).toBe(401)
    const badUrl = await fetch(`${a.url}/blobs/sha256/zz?sig=x`, {
      method: 'PUT',
    })
    expect(badUrl.status).toBeGreaterThanOrEqual(400)
    expect(badUrl.status).toBeLessThan(500)
  })
})

/** Asks `base` for a PUT URL as `as` and PUTs `size` random bytes to it, returning the answer. */
const fetchSignedPut = async (
  base: string,
  as: string,
  holdDid: string,
  size: number,
): Promise<{ status: number; body: { error?: string; message?: string } }> => {
  const bytes = randomBytes(size)
  const hex = createHash('sha256').update(bytes).digest('hex')
  const signed = await xrpc<{ url: string }>(
    base,
    ids.SyncGetBlob,
    { did: as, cid: `sha256:${hex}`, method: 'PUT', repo: 'mine' },
    { headers: await bearer({ iss: as, aud: holdDid }) },
  )
  if (signed.status !== 200) {
    return { status: signed.status, body: signed.body as never }
  }
  const res = await fetch(signed.body.url, { method: 'PUT', body: bytes })
  return {
    status: res.status,
    body: (await res.json()) as { error?: string; message?: string },
  }
}
