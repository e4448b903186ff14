import { createHash } from 'node:crypto'
import { decodeCid, parseCid } from '@atproto/lex-data'

/**
 * CIDs as bytes and strings, for the commit path. A commit touches a thousand or so blocks;
 * making a `multiformats` CID object for each (varint parsing, base32 through a generic codec)
 * cost more than the MST work itself, so the writer handles CIDs as their bytes and their
 * canonical string (the key of `repo_block`), and makes objects only at the edges.
 */

const DAG_CBOR = 0x71
const SHA2_256 = 0x12
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

const CHARS = Buffer.from(ALPHABET, 'latin1')

/** Multibase base32 (lowercase, no padding, "b" prefix), as CIDv1 strings are written. */
const base32 = (bytes: Uint8Array): string => {
  const out = Buffer.allocUnsafe(1 + Math.ceil((bytes.length * 8) / 5))
  out[0] = 0x62 // 'b'
  let n = 1
  let bits = 0
  let value = 0
  for (let i = 0; i < bytes.length; i++) {
    value = ((value << 8) | bytes[i]) & 0xffff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out[n++] = CHARS[(value >>> bits) & 31]
    }
  }
  if (bits > 0) out[n++] = CHARS[(value << (5 - bits)) & 31]
  return out.toString('latin1', 0, n)
}

/** The string form of a CID given as bytes (CIDv1 in base32; anything else by the library). */
export const cidString = (bytes: Uint8Array): string =>
  bytes[0] === 1 ? base32(bytes) : decodeCid(bytes).toString()

const VALUES = new Int8Array(128).fill(-1)
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i

/** The bytes of a CID given as a string: the inverse of cidString. */
export const cidBytes = (cid: string): Uint8Array => {
  if (cid.charCodeAt(0) !== 0x62) return parseCid(cid).bytes
  const out = Buffer.allocUnsafe(Math.floor(((cid.length - 1) * 5) / 8))
  let n = 0
  let bits = 0
  let value = 0
  for (let i = 1; i < cid.length; i++) {
    const v = VALUES[cid.charCodeAt(i)] ?? -1
    if (v < 0) return parseCid(cid).bytes
    value = ((value << 5) | v) & 0xffff
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out[n++] = (value >>> bits) & 0xff
    }
  }
  return out.subarray(0, n)
}

/** The CIDv1 (dag-cbor, sha2-256) bytes of a DAG-CBOR block. */
export const cborCidBytes = (block: Uint8Array): Uint8Array => {
  // Pooled memory (a commit makes one per block), not an ArrayBuffer each.
  const out = Buffer.allocUnsafe(36)
  out[0] = 1
  out[1] = DAG_CBOR
  out[2] = SHA2_256
  out[3] = 32
  out.set(createHash('sha256').update(block).digest(), 4)
  return out
}
