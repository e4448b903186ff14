import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BlobUrlSigner } from '../src/blobs/signed-url.ts'
import { iso } from '../src/stats/counter-row.ts'

const HEX = 'ab'.repeat(32)
const secret = Buffer.alloc(32, 7)

describe('iso', () => {
  it('writes every time in ms as Date.toISOString does', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: -1e15, max: 1e15 }),
          fc.integer({ min: 253402300799000, max: 253402300801000 }),
          fc.double({ min: -1e14, max: 1e14, noNaN: true }),
        ),
        (ms) => {
          expect(iso(ms)).toBe(new Date(ms).toISOString())
        },
      ),
      { numRuns: 5000 },
    )
  })

  it('stays right when times go back and forth across seconds', () => {
    const base = Date.UTC(2026, 10, 30, 23, 59, 59, 990)
    for (const d of [
      0, 5, 9, 10, 11, -1, 99, 100, 1000, -1000, 5, 86_400_000,
    ]) {
      expect(iso(base + d)).toBe(new Date(base + d).toISOString())
    }
  })

  it('refuses what toISOString refuses', () => {
    expect(() => iso(Number.NaN)).toThrow(RangeError)
    expect(() => iso(8.64e15 + 1)).toThrow(RangeError)
  })
})

describe('BlobUrlSigner', () => {
  const signer = new BlobUrlSigner(secret, 'https://hold.example')
  const grant = {
    method: 'GET' as const,
    hex: HEX,
    did: 'did:plc:alice',
    repo: 'app',
    caller: undefined,
  }

  it('answers the same grant in the same second with the same URL, and it verifies', () => {
    const now = Date.UTC(2026, 10, 30, 12, 0, 0, 100)
    const a = signer.sign(grant, now)
    const b = signer.sign({ ...grant }, now + 800)
    expect(b).toEqual(a)
    const url = new URL(a.url)
    const verified = signer.verify(HEX, url.searchParams, now + 1000)
    expect(verified).toMatchObject({ did: 'did:plc:alice', repo: 'app' })
  })

  it('signs a new URL once the expiry moves to the next second', () => {
    const now = Date.UTC(2026, 10, 30, 12, 0, 0, 100)
    const a = signer.sign(grant, now)
    const b = signer.sign(grant, now + 1000)
    expect(b.url).not.toBe(a.url)
    expect(
      new Date(b.expiresAt).getTime() - new Date(a.expiresAt).getTime(),
    ).toBe(1000)
    expect(new URL(b.url).searchParams.get('exp')).toBe(
      String(new Date(b.expiresAt).getTime() / 1000),
    )
  })

  it('never answers one grant with the URL of another', () => {
    const now = Date.UTC(2026, 10, 30, 12, 0, 1, 0)
    const variants = [
      grant,
      { ...grant, method: 'HEAD' as const, repo: undefined },
      { ...grant, repo: undefined },
      { ...grant, repo: 'ap' },
      { ...grant, did: 'did:plc:alicf' },
      { ...grant, caller: 'did:plc:bob' },
      { ...grant, hex: 'cd'.repeat(32) },
      // Fields that would run together if the key did not separate them.
      { ...grant, repo: 'app', caller: 'x' },
      { ...grant, repo: 'app x', caller: undefined },
    ]
    const urls = variants.map((g) => signer.sign(g, now).url)
    expect(new Set(urls).size).toBe(variants.length)
    for (const [i, g] of variants.entries()) {
      const q = new URL(urls[i]).searchParams
      expect(signer.verify(g.hex, q, now)).toMatchObject({
        method: g.method,
        did: g.did,
        repo: g.repo,
        caller: g.caller,
      })
    }
  })

  it('gives every PUT URL a nonce of its own', () => {
    const now = Date.UTC(2026, 10, 30, 12, 0, 2, 0)
    const put = { ...grant, method: 'PUT' as const, repo: undefined }
    const a = new URL(signer.sign(put, now).url).searchParams.get('nonce')
    const b = new URL(signer.sign(put, now).url).searchParams.get('nonce')
    expect(a).toBeTruthy()
    expect(b).not.toBe(a)
  })
})
