import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  callAs,
  digestOf,
  LAYER,
  LAYER_TYPE,
  MANIFEST_TYPE,
  NOTIFY,
  published,
  verifiedRecords,
  type Layer,
} from './_appview.ts'
import { ids } from '../src/ids.ts'
import { bearer } from './_identity.ts'
import { startHold, TEST_OWNER, xrpc, type TestHold } from './_util.ts'

const REPO = 'team/web'

/**
 * What ATCR's AppView does with a hold, end to end, with the owner's real service tokens from
 * the local PLC directory: upload a config and two layers (multipart, as ATCR pushes), write the manifest (to the user's
 * PDS, not here) and notify the push, then serve two pulls (a URL per blob, then a pull
 * notification). The counts must be exactly what HOLD_COUNT_SOURCE says.
 */
describe.each([
  { source: 'blob', pulls: 6, pushes: 3, manifestCounts: false },
  { source: 'manifest', pulls: 2, pushes: 1, manifestCounts: true },
])(
  'the AppView’s push and pulls with HOLD_COUNT_SOURCE=$source',
  ({ source, pulls, pushes, manifestCounts }) => {
    let h: TestHold
    const blobs: { bytes: Uint8Array; info: Layer }[] = []

    beforeAll(async () => {
      h = await startHold({ env: { HOLD_COUNT_SOURCE: source } })
      for (const [i, size] of [300, 2000, 5000].entries()) {
        const bytes = new Uint8Array(size).map((_, j) => (i * 31 + j) % 251)
        blobs.push({
          bytes,
          info: {
            digest: digestOf(bytes),
            size,
            mediaType:
              i === 0 ? 'application/vnd.oci.image.config.v1+json' : LAYER_TYPE,
          },
        })
      }
    })
    afterAll(() => h.stop())

    const auth = (lxm = ids.SyncGetBlob) =>
      bearer({ iss: TEST_OWNER, aud: h.did, lxm })

    const notification = (operation: string) => ({
      repository: REPO,
      userDid: TEST_OWNER,
      manifestDigest: `sha256:${'e'.repeat(64)}`,
      tag: 'v1',
      operation,
      manifest: {
        mediaType: MANIFEST_TYPE,
        config: blobs[0].info,
        layers: blobs.slice(1).map((b) => b.info),
      },
    })

    it('uploads the blobs and notifies the push: layer records valid under ATCR’s schema', async () => {
      // ATCR's multipart push: initiate, a part URL per part, PUT the parts, complete.
      for (const { bytes, info } of blobs) {
        const init = await callAs<{ uploadId: string }>(
          h.url,
          ids.HoldInitiateUpload,
          TEST_OWNER,
          { digest: info.digest, repo: REPO },
        )
        expect(init.status, JSON.stringify(init.body)).toBe(200)
        const parts = [bytes.subarray(0, 100), bytes.subarray(100)]
        const etags: string[] = []
        for (const [i, part] of parts.entries()) {
          const signed = await callAs<{ url: string; method: string }>(
            h.url,
            ids.HoldGetPartUploadUrl,
            TEST_OWNER,
            { uploadId: init.body.uploadId, partNumber: i + 1 },
          )
          expect(signed.status, JSON.stringify(signed.body)).toBe(200)
          const put = await fetch(signed.body.url, {
            method: signed.body.method,
            body: part,
          })
          await put.arrayBuffer()
          expect(put.status).toBe(200)
          etags.push(put.headers.get('etag')!)
        }
        const done = await callAs(h.url, ids.HoldCompleteUpload, TEST_OWNER, {
          uploadId: init.body.uploadId,
          digest: info.digest,
          parts: etags.map((etag, i) => ({ partNumber: i + 1, etag })),
        })
        expect(done.status, JSON.stringify(done.body)).toBe(200)
      }
      const res = await callAs(h.url, NOTIFY, TEST_OWNER, notification('push'))
      expect(res.status).toBe(200)
      expect(res.body).toEqual({
        success: true,
        operation: 'push',
        statsUpdated: manifestCounts,
        layersCreated: 2,
      })
      const layers = (await verifiedRecords(h.url)).filter(
        (r) => r.collection === LAYER,
      )
      expect(layers.map((r) => r.record.digest).sort()).toEqual(
        blobs
          .slice(1)
          .map((b) => b.info.digest)
          .sort(),
      )
      for (const { record } of layers) {
        published.assertValidRecord(LAYER, record)
      }
    })

    it('serves two pulls, each a URL per blob and a pull notification', async () => {
      for (let pull = 0; pull < 2; pull++) {
        for (const { bytes, info } of blobs) {
          const signed = await xrpc<{ url: string }>(
            h.url,
            ids.SyncGetBlob,
            { did: TEST_OWNER, cid: info.digest, method: 'GET', repo: REPO },
            { headers: await auth() },
          )
          expect(signed.status).toBe(200)
          const got = new Uint8Array(
            await (await fetch(signed.body.url)).arrayBuffer(),
          )
          expect(got).toEqual(bytes)
        }
        const res = await callAs(
          h.url,
          NOTIFY,
          TEST_OWNER,
          notification('pull'),
        )
        expect(res.status).toBe(200)
        expect(res.body).toEqual({
          success: true,
          operation: 'pull',
          statsUpdated: manifestCounts,
        })
      }
    })

    it(`counts exactly ${pulls} pulls and ${pushes} pushes, in getStats, listStats, the record and the status page`, async () => {
      const stats = await xrpc(h.url, ids.HoldGetStats, {
        did: TEST_OWNER,
        repo: REPO,
      })
      expect(stats.body).toMatchObject({
        pullCount: pulls,
        pushCount: pushes,
        countSource: source,
      })
      const list = await xrpc(h.url, ids.HoldListStats, {
        did: TEST_OWNER,
      })
      expect(list.body).toMatchObject({
        countSource: source,
        stats: [{ repository: REPO, pullCount: pulls, pushCount: pushes }],
      })
      await h.hold.ctx.stats.flush()
      const record = (await verifiedRecords(h.url)).find(
        (r) => r.collection === ids.HoldStats && r.record.repository === REPO,
      )
      expect(record?.record).toMatchObject({
        ownerDid: TEST_OWNER,
        pullCount: pulls,
        pushCount: pushes,
      })
      published.assertValidRecord(ids.HoldStats, record!.record)
      const page = await (await fetch(`${h.url}/`)).text()
      expect(page).toMatch(
        source === 'blob'
          ? /id="count-source">blob requests/
          : /id="count-source">manifests/,
      )
    })
  },
)
