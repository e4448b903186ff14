/**
 * DAG-CBOR of MST nodes, written by hand for their one shape:
 *
 *   { e: [{ k: bytes, p: uint, t: CID | null, v: CID }, ...], l: CID | null }
 *
 * with the map keys in DAG-CBOR's canonical order ("e" < "l"; "k" < "p" < "t" < "v") and the
 * shortest integer heads, so the bytes are the ones any DAG-CBOR encoder writes for the same
 * node (the MST tests compare them with the library's). The generic encoder spends most of a
 * flush's MST time sorting map keys and building tokens; this writes the bytes directly.
 * Canonical DAG-CBOR has one encoding per value, so a block without this exact layout is not
 * a valid MST node, and reading one throws. Links are CIDs as bytes (see cid.ts).
 */

import { writeHead } from './dag-cbor.ts'

export type Link = Uint8Array
export type NodeEntry = { p: number; k: Uint8Array; v: Link; t: Link | null }
export type NodeData = { l: Link | null; e: NodeEntry[] }

const CID_TAG = [0xd8, 0x2a] // tag(42)

let scratch = new Uint8Array(4096)

/**
 * Encodes into one scratch buffer reused across nodes, and copies each result into Node's
 * pooled Buffer memory: a commit writes hundreds of nodes, and a separate ArrayBuffer for each
 * (two, with a growing buffer) costs more in the garbage collector than the encoding itself.
 */
class Writer {
  buf: Uint8Array = scratch
  len = 0

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.len + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
    scratch = next
  }

  byte(b: number): void {
    this.room(1)
    this.buf[this.len++] = b
  }

  /** A CBOR head: major type and argument, shortest form. */
  head(major: number, n: number): void {
    this.room(9)
    this.len = writeHead(this.buf, this.len, major, n)
  }

  /** A byte string of the ASCII characters of `text` from `from` on. */
  asciiBytes(text: string, from: number): void {
    const n = text.length - from
    this.head(2, n)
    this.room(n)
    for (let i = from; i < text.length; i++) {
      this.buf[this.len++] = text.charCodeAt(i)
    }
  }

  /** A one-letter text key. */
  key(letter: number): void {
    this.room(2)
    this.buf[this.len++] = 0x61
    this.buf[this.len++] = letter
  }

  linkOrNull(bytes: Link | null): void {
    if (bytes === null) {
      this.byte(0xf6)
      return
    }
    this.room(2)
    this.buf[this.len++] = CID_TAG[0]
    this.buf[this.len++] = CID_TAG[1]
    // A CID in DAG-CBOR is a byte string of 0x00 (the identity multibase) and the CID.
    this.head(2, bytes.length + 1)
    this.room(bytes.length + 1)
    this.buf[this.len++] = 0
    this.buf.set(bytes, this.len)
    this.len += bytes.length
  }
}

/** The node's one-letter map keys, as their ASCII codes. */
const KEY = { e: 0x65, k: 0x6b, l: 0x6c, p: 0x70, t: 0x74, v: 0x76 } as const

/**
 * A node in the form the MST code works with: the full keys in order, their values, and the
 * subtrees (`trees[0]` left of the first key, `trees[i + 1]` right of `keys[i]`).
 */
export type FlatNode = {
  keys: string[]
  values: Link[]
  trees: (Link | null)[]
}

const sharedPrefix = (a: string, b: string): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

/** The node's DAG-CBOR, key prefixes compressed as the spec has them. */
export const encodeFlat = (node: FlatNode): Uint8Array => {
  const w = new Writer()
  w.byte(0xa2) // map(2)
  w.key(KEY.e)
  w.head(4, node.keys.length)
  let last = ''
  for (let i = 0; i < node.keys.length; i++) {
    const key = node.keys[i]
    const p = sharedPrefix(last, key)
    w.byte(0xa4) // map(4)
    w.key(KEY.k)
    w.asciiBytes(key, p)
    w.key(KEY.p)
    w.head(0, p)
    w.key(KEY.t)
    w.linkOrNull(node.trees[i + 1])
    w.key(KEY.v)
    w.linkOrNull(node.values[i])
    last = key
  }
  w.key(KEY.l)
  w.linkOrNull(node.trees[0])
  return Buffer.from(w.buf.subarray(0, w.len))
}

const asciiOf = (bytes: Uint8Array): string =>
  String.fromCharCode.apply(null, bytes as unknown as number[])

/** A node read into the flat form (full keys rebuilt from their prefixes). */
export const decodeFlat = (bytes: Uint8Array): FlatNode => {
  const node = decodeNode(bytes)
  const keys: string[] = []
  const values: Link[] = []
  const trees: (Link | null)[] = [node.l]
  let last = ''
  for (const entry of node.e) {
    if (entry.p > last.length) throw new Error('MST node: bad key prefix')
    const key = last.slice(0, entry.p) + asciiOf(entry.k)
    keys.push(key)
    values.push(entry.v)
    trees.push(entry.t)
    last = key
  }
  return { keys, values, trees }
}

class Malformed extends Error {}

class Reader {
  readonly buf: Uint8Array
  pos = 0

  constructor(buf: Uint8Array) {
    this.buf = buf
  }

  private next(): number {
    if (this.pos >= this.buf.length) throw new Malformed()
    return this.buf[this.pos++]
  }

  /** A head of the given major type, shortest form only (as DAG-CBOR requires). */
  head(major: number): number {
    const first = this.next()
    if (first >> 5 !== major) throw new Malformed()
    const info = first & 0x1f
    if (info < 24) return info
    if (info === 24) {
      const n = this.next()
      if (n < 24) throw new Malformed()
      return n
    }
    if (info === 25) {
      const n = (this.next() << 8) | this.next()
      if (n < 0x100) throw new Malformed()
      return n
    }
    if (info === 26) {
      const n =
        this.next() * 0x1000000 +
        ((this.next() << 16) | (this.next() << 8) | this.next())
      if (n < 0x10000) throw new Malformed()
      return n
    }
    throw new Malformed()
  }

  expect(...bytes: number[]): void {
    for (const b of bytes) if (this.next() !== b) throw new Malformed()
  }

  bytes(): Uint8Array {
    const n = this.head(2)
    if (this.pos + n > this.buf.length) throw new Malformed()
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  linkOrNull(): Link | null {
    if (this.buf[this.pos] === 0xf6) {
      this.pos++
      return null
    }
    this.expect(CID_TAG[0], CID_TAG[1])
    const bytes = this.bytes()
    if (bytes.length < 2 || bytes[0] !== 0) throw new Malformed()
    return bytes.subarray(1)
  }
}

export const decodeNode = (bytes: Uint8Array): NodeData => {
  try {
    const r = new Reader(bytes)
    r.expect(0xa2, 0x61, KEY.e)
    const count = r.head(4)
    const e: NodeEntry[] = []
    for (let i = 0; i < count; i++) {
      r.expect(0xa4, 0x61, KEY.k)
      const k = r.bytes()
      r.expect(0x61, KEY.p)
      const p = r.head(0)
      r.expect(0x61, KEY.t)
      const t = r.linkOrNull()
      r.expect(0x61, KEY.v)
      const v = r.linkOrNull()
      if (v === null) throw new Malformed()
      e.push({ p, k, v, t })
    }
    r.expect(0x61, KEY.l)
    const l = r.linkOrNull()
    if (r.pos !== bytes.length) throw new Malformed()
    return { l, e }
  } catch (err) {
    if (err instanceof Malformed) {
      throw new Error('not an MST node in canonical DAG-CBOR', { cause: err })
    }
    throw err
  }
}
