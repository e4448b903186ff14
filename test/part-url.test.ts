import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { BlobUrlSigner } from '../src/blobs/signed-url.ts'
import { ForbiddenError } from '../src/errors.ts'

const signer = new BlobUrlSigner(randomBytes(32), 'https://hold.example.com')
const grant = {
  uploadId: 'u1d_-abc',
  partNumber: 3,
  caller: 'did:plc:caller00000000000000000',
}
const NOW = Date.parse('2026-11-30T12:00:00Z')

const refusal = (fn: () => unknown): ForbiddenError => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ForbiddenError)
    return err as ForbiddenError
  }
  throw new Error('not refused')
}

describe('part URLs of disk uploads', () => {
  const signed = signer.signPart(grant, NOW)
  const url = new URL(signed.url)

  it('name the upload and the part in the path and verify for 15 minutes', () => {
    expect(url.pathname).toBe('/uploads/u1d_-abc/parts/3')
    expect(signed.expiresAt).toBe('2026-11-30T12:15:00.000Z')
    expect(
      signer.verifyPart('u1d_-abc', 3, url.searchParams, NOW + 14 * 60_000),
    ).toEqual(grant)
  })

  it('are refused once expired, for another part or upload, for another caller, or unsigned', () => {
    expect(
      refusal(() =>
        signer.verifyPart('u1d_-abc', 3, url.searchParams, NOW + 16 * 60_000),
      ).error,
    ).toBe('ExpiredUrl')
    refusal(() => signer.verifyPart('u1d_-abc', 4, url.searchParams, NOW))
    refusal(() => signer.verifyPart('other', 3, url.searchParams, NOW))
    const forged = new URLSearchParams(url.searchParams)
    forged.set('caller', 'did:plc:someoneelse000000000000')
    refusal(() => signer.verifyPart('u1d_-abc', 3, forged, NOW))
    refusal(() => signer.verifyPart('u1d_-abc', 3, new URLSearchParams(), NOW))
    const other = new BlobUrlSigner(randomBytes(32), 'https://hold.example.com')
    refusal(() => other.verifyPart('u1d_-abc', 3, url.searchParams, NOW))
  })
})
