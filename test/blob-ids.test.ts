import { createHash } from 'node:crypto'
import { createCid } from '@atproto/lex-data'
import { isValidDid, isValidRecordKey } from '@atproto/syntax'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import { parseBlobId } from '../src/blobs/digest.ts'
import { InvalidRequestError } from '../src/errors.ts'
import {
  isValidRepository,
  MAX_RKEY_LENGTH,
  parseRepoParam,
  parseStatsRecordKey,
  statsRecordKey,
} from '../src/stats/rkey.ts'

const RAW = 0x55
const DAG_CBOR = 0x71
const SHA256 = 0x12
const SHA512 = 0x13
const BLAKE2B_256 = 0xb220

const digestBytes = createHash('sha256').update('a layer').digest()
const hex = digestBytes.toString('hex')

/** The InvalidRequestError fn throws (fails the test if it throws nothing or something else). */
const refusal = (fn: () => unknown): InvalidRequestError => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect((err as InvalidRequestError).status).toBe(400)
    expect((err as InvalidRequestError).error).toBe('InvalidRequest')
    return err as InvalidRequestError
  }
  throw new Error('expected an InvalidRequestError, nothing was thrown')
}

describe('parseBlobId', () => {
  it('gives the same hex for an OCI digest, a raw CIDv1 and a dag-cbor CIDv1 of one sha256', () => {
    const raw = createCid(RAW, SHA256, digestBytes).toString()
    const cbor = createCid(DAG_CBOR, SHA256, digestBytes).toString()
    expect(raw).not.toBe(cbor)
    expect(raw.startsWith('b')).toBe(true)
    expect(parseBlobId(`sha256:${hex}`)).toBe(hex)
    expect(parseBlobId(raw)).toBe(hex)
    expect(parseBlobId(cbor)).toBe(hex)
  })

  it('refuses uppercase hex, short hex and long hex in an OCI digest', () => {
    refusal(() => parseBlobId(`sha256:${hex.toUpperCase()}`))
    refusal(() => parseBlobId(`SHA256:${hex}`))
    refusal(() => parseBlobId(`sha256:${hex.slice(0, 63)}`))
    refusal(() => parseBlobId(`sha256:${hex}0`))
    refusal(() => parseBlobId('sha256:'))
    refusal(() => parseBlobId(hex))
  })

  it('refuses a sha512 digest in both OCI and CID form', () => {
    const d512 = createHash('sha512').update('a layer').digest()
    refusal(() => parseBlobId(`sha512:${d512.toString('hex')}`))
    refusal(() => parseBlobId(`sha512:${hex}`))
    const cid512 = createCid(RAW, SHA512, d512).toString()
    expect(cid512.length).toBeLessThanOrEqual(128)
    expect(refusal(() => parseBlobId(cid512)).message).toMatch(/sha256/)
  })

  it('refuses a CID whose multihash is not sha256 even when the digest is 32 bytes', () => {
    const blake = createCid(RAW, BLAKE2B_256, digestBytes).toString()
    expect(refusal(() => parseBlobId(blake)).message).toMatch(/sha256/)
    const identity = createCid(RAW, 0x00, digestBytes).toString()
    refusal(() => parseBlobId(identity))
  })

  it('refuses a CIDv0 (Qm...) even though its multihash is sha256', () => {
    const v0 = CID.createV0(Digest.create(SHA256, digestBytes)).toString()
    expect(v0.startsWith('Qm')).toBe(true)
    refusal(() => parseBlobId(v0))
  })

  it('refuses path tricks, junk, empty input and input longer than 128 characters', () => {
    for (const bad of [
      'sha256:../../etc/passwd',
      `sha256:../${hex.slice(3)}`,
      `sha256:${hex}/../x`,
      `../${hex}`,
      `sha256:${hex}\n`,
      ` sha256:${hex}`,
      `sha256:${hex}%00`,
      'bafy/../../etc',
      'not a cid',
      '',
      'b'.repeat(129),
      `sha256:${hex}${'0'.repeat(60)}`,
    ]) {
      refusal(() => parseBlobId(bad))
    }
  })

  it('never returns anything but 64 lowercase hex characters for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 140 }), (s) => {
        let out: string
        try {
          out = parseBlobId(s)
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidRequestError)
          return
        }
        expect(out).toMatch(/^[0-9a-f]{64}$/)
      }),
    )
  })
})

describe('repository names', () => {
  const did = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
  const accepted = [
    'myapp',
    'a',
    '0',
    'a/b/c',
    'my-app',
    'my--app',
    'my_app',
    'my__app',
    'a.b',
    'tools/builder',
    'library/ubuntu-22.04',
    'a0/b_1/c__2/d-3/e.4',
    'x'.repeat(256),
  ]
  const refused = [
    'MyApp',
    'myApp',
    '-a',
    'a-',
    '.a',
    'a.',
    '_a',
    'a_',
    'a//b',
    '/a',
    'a/',
    'a___b',
    'a..b',
    'a._b',
    'a b',
    'a:b',
    'a@b',
    'a\u00e9',
    'a\nb',
    'x'.repeat(257),
    `${'a/'.repeat(128)}b`,
  ]

  it.each(accepted)('accepts the OCI repository name %j', (name) => {
    expect(isValidRepository(name)).toBe(true)
    expect(parseRepoParam(did, name)).toBe(name)
  })

  it.each(
    refused.map((n) => [
      n.length > 40 ? `${n.slice(0, 20)}… (${n.length} chars)` : n,
      n,
    ]),
  )('refuses the repository name %j', (_label, name) => {
    expect(isValidRepository(name)).toBe(false)
    refusal(() => parseRepoParam(did, name))
  })

  it('treats an empty or absent repo as absent', () => {
    expect(parseRepoParam(did, '')).toBeUndefined()
    expect(parseRepoParam(did, undefined)).toBeUndefined()
    expect(isValidRepository('')).toBe(false)
  })

  it('refuses a 257-character name with a message about the length', () => {
    expect(refusal(() => parseRepoParam(did, 'x'.repeat(257))).message).toMatch(
      /256/,
    )
  })

  it('refuses a (did, repo) pair whose record key would exceed 512 characters, naming the record key', () => {
    // 384 UTF-8 bytes encode to exactly 512 base64url characters.
    const repo = 'r'.repeat(200)
    const hostFor = (bytes: number) =>
      'h'.repeat(bytes - 'did:web:'.length - 1 - repo.length)
    const fits = `did:web:${hostFor(384)}`
    const over = `did:web:${hostFor(385)}`
    expect(isValidDid(fits) && isValidDid(over)).toBe(true)
    expect(statsRecordKey(fits, repo)).toHaveLength(MAX_RKEY_LENGTH)
    expect(parseRepoParam(fits, repo)).toBe(repo)
    expect(isValidRecordKey(statsRecordKey(fits, repo))).toBe(true)
    expect(statsRecordKey(over, repo).length).toBeGreaterThan(MAX_RKEY_LENGTH)
    expect(refusal(() => parseRepoParam(over, repo)).message).toMatch(
      /record key/,
    )
  })
})

// Generators from the grammars: did:plc (24 base32 characters), did:web (hostnames, optional
// port), OCI repository names (components of lowercase alphanumerics joined by separators).
const plcDid = fc.stringMatching(/^[a-z2-7]{24}$/).map((id) => `did:plc:${id}`)
const label = (max: number) =>
  fc.stringMatching(new RegExp(`^[a-z0-9]([a-z0-9-]{0,${max}}[a-z0-9])?$`))
const webDid = fc
  .tuple(
    fc.array(fc.oneof(label(10), label(61)), { minLength: 1, maxLength: 5 }),
    fc.option(fc.integer({ min: 1, max: 65535 })),
  )
  .map(
    ([labels, port]) =>
      `did:web:${labels.join('.')}${port === null ? '' : `%3A${port}`}`,
  )
// Long hostnames (several 40-63 character labels) so that some pairs pass the key limit.
const longWebDid = fc
  .array(fc.stringMatching(/^[a-z0-9]{40,63}$/), { minLength: 3, maxLength: 5 })
  .map((labels) => `did:web:${labels.join('.')}`)
const anyDid = fc.oneof(plcDid, webDid, longWebDid)

const alnum = fc.stringMatching(/^[a-z0-9]{1,12}$/)
const separator = fc.oneof(
  fc.constant('.'),
  fc.constant('_'),
  fc.constant('__'),
  fc.stringMatching(/^-{1,3}$/),
)
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 5 }))
  .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(''))
const repository = fc
  .oneof(
    fc
      .array(component, { minLength: 1, maxLength: 8 })
      .map((parts) => parts.join('/')),
    fc.stringMatching(/^[a-z0-9]{200,256}$/),
  )
  .filter((name) => name.length <= 256)

describe('stats record keys (properties)', () => {
  it('the generators produce valid DIDs and valid repository names', () => {
    fc.assert(
      fc.property(anyDid, repository, (did, repo) => {
        expect(isValidDid(did)).toBe(true)
        expect(isValidRepository(repo)).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('every (DID, repository) key is base64url without padding and decodes back to the pair', () => {
    fc.assert(
      fc.property(anyDid, repository, (did, repo) => {
        const key = statsRecordKey(did, repo)
        expect(key).not.toMatch(/[+/=]/)
        expect(key).toMatch(/^[A-Za-z0-9_-]+$/)
        expect(Buffer.from(key, 'base64url').toString('utf8')).toBe(
          `${did}:${repo}`,
        )
        expect(parseStatsRecordKey(key)).toEqual({ did, repository: repo })
      }),
      { numRuns: 1000 },
    )
  })

  it('every key of at most 512 characters is a valid atproto record key and is accepted; longer ones are refused', () => {
    let fitting = 0
    let over = 0
    fc.assert(
      fc.property(anyDid, repository, (did, repo) => {
        const key = statsRecordKey(did, repo)
        if (key.length <= MAX_RKEY_LENGTH) {
          fitting++
          expect(isValidRecordKey(key)).toBe(true)
          expect(parseRepoParam(did, repo)).toBe(repo)
        } else {
          over++
          expect(isValidRecordKey(key)).toBe(false)
          expect(refusal(() => parseRepoParam(did, repo)).message).toMatch(
            /record key/,
          )
        }
      }),
      { numRuns: 1000 },
    )
    // Both branches ran, so neither set of assertions is vacuous.
    expect(fitting).toBeGreaterThan(100)
    expect(over).toBeGreaterThan(0)
  })

  it('distinct pairs get distinct keys', () => {
    fc.assert(
      fc.property(anyDid, repository, anyDid, repository, (d1, r1, d2, r2) => {
        fc.pre(d1 !== d2 || r1 !== r2)
        expect(statsRecordKey(d1, r1)).not.toBe(statsRecordKey(d2, r2))
      }),
      { numRuns: 500 },
    )
  })
})
