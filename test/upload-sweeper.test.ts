import { ids } from '../src/ids.ts'
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { S3BlobStore } from '../src/blobs/s3-store.ts'
import type { MeteredBlobStore } from '../src/blobs/metered-store.ts'
import { expectXrpcError } from './_access.ts'
import { s3Env, startS3 } from './_s3.ts'
import {
  ABORT,
  call,
  digestOf,
  uploadPart,
  type StoreKind,
} from './_uploads.ts'
import { removeDir, startHold, tempDir, TEST_OWNER } from './_util.ts'

const DAY_MS = 24 * 3600 * 1000

describe.each<StoreKind>(['disk', 's3'])('the upload sweeper on %s', (kind) => {
  it('aborts, when the hold starts, uploads older than HOLD_UPLOAD_TTL_HOURS, leaving nothing in the store', async () => {
    const s3 = kind === 's3' ? await startS3() : undefined
    const dataDir = await tempDir()
    const env = s3 ? s3Env(s3, { HOLD_UPLOAD_TTL_HOURS: '24' }) : {}
    const leftovers = async (h: { hold: { ctx: { blobs: unknown } } }) => {
      const inner = (h.hold.ctx.blobs as MeteredBlobStore).inner
      if (inner instanceof S3BlobStore) {
        return [
          ...(await inner.client.listMultipartUploads('hold/uploads/')),
          ...(await inner.client.listObjects('hold/uploads/')),
        ].length
      }
      return (
        await readdir(join(dataDir, 'blobs', 'uploads'), { recursive: true })
      ).length
    }
    try {
      const first = await startHold({ env, dataDir })
      const blob = randomBytes(3000)
      // Started two days ago, as far as the hold's records go.
      const old = await first.hold.ctx.uploads.initiate(
        { caller: TEST_OWNER, hex: digestOf(blob).slice(7) },
        Date.now() - 2 * DAY_MS,
      )
      expect((await uploadPart(first, old.uploadId, 1, blob)).status).toBe(200)
      const fresh = (
        await call<{ uploadId: string }>(first, ids.HoldInitiateUpload, {
          digest: digestOf(blob),
        })
      ).body.uploadId
      await first.stop()

      const second = await startHold({ env, dataDir, port: first.port })
      try {
        await expect
          .poll(() => second.hold.ctx.uploads.count(), { timeout: 10_000 })
          .toBe(1)
        expectXrpcError(
          await call(second, ABORT, { uploadId: old.uploadId }),
          400,
          'InvalidUploadId',
        )
        expect((await call(second, ABORT, { uploadId: fresh })).status).toBe(
          200,
        )
        expect(await leftovers(second)).toBe(0)
      } finally {
        await second.stop()
      }
    } finally {
      await s3?.close()
      await removeDir(dataDir)
    }
  })
})
