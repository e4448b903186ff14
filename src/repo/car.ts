import { encode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'

/** A CARv1 header naming one root (or none), with its length in front. */
export const carHeader = (root: Cid | null): Uint8Array => {
  const header = encode({ version: 1, roots: root ? [root] : [] })
  return Buffer.concat([varint(header.byteLength), header])
}

/** An unsigned LEB128 varint, as CAR lengths are written. */
export const varint = (n: number): Uint8Array => {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/**
 * A whole CARv1 in memory (a firehose event's `blocks`), from blocks given as CID bytes and
 * contents, so a commit's thousand or so blocks need no CID objects (cid.ts).
 */
export const carBytes = (
  root: Cid | null,
  blocks: Iterable<readonly [cid: Uint8Array, bytes: Uint8Array]>,
): Buffer => {
  const parts: Uint8Array[] = [carHeader(root)]
  for (const [cid, bytes] of blocks) {
    parts.push(varint(cid.byteLength + bytes.byteLength), cid, bytes)
  }
  return Buffer.concat(parts)
}
