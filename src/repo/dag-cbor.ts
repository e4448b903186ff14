import { encode as libraryEncode } from '@atproto/lex-cbor'
import { ifCid } from '@atproto/lex-data'

/**
 * DAG-CBOR encoding of the values the hold writes (its records and firehose frames): the same
 * bytes as `@atproto/lex-cbor`'s `encode` (test/dag-cbor.test.ts), written straight into one
 * buffer. The library's encoder builds a token per value and sorts each map's keys through
 * them; for a stats flush that was a large part of the CPU time of building 200 records and
 * their event.
 *
 * Handled here: plain objects with ASCII keys, arrays, strings, safe integers, booleans, null,
 * byte arrays and CIDs (tag 42). Anything else (a float, undefined in an array, a Map, a
 * non-ASCII key, another class) makes the whole value go through the library's encoder, so
 * what it accepts, refuses and writes stays its own.
 */
export const encodeDagCbor = (value: unknown): Uint8Array => {
  const w = new Writer()
  if (!w.value(value, 0)) return libraryEncode(value as never)
  return w.copy()
}

/**
 * Values one after another in one array, as a firehose frame is (header, then body): the
 * bytes of each value's encodeDagCbor, written once.
 */
export const encodeDagCborSequence = (values: unknown[]): Uint8Array => {
  const w = new Writer()
  for (const value of values) {
    if (!w.value(value, 0)) return concat(values.map(encodeDagCbor))
  }
  return w.copy()
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let n = 0
  for (const part of parts) {
    out.set(part, n)
    n += part.byteLength
  }
  return out
}

/** Deeper values go through the library, whose own limits then apply. */
const MAX_DEPTH = 64

const SCRATCH_BYTES = 64 * 1024
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES)

const byCanonicalOrder = (a: string, b: string): number =>
  a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0

const isAscii = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return false
  }
  return true
}

/**
 * Writes a CBOR head (major type and argument `n`, a safe non-negative integer) in its shortest
 * form at `at`, which has room for nine bytes; returns the offset after it. The MST node codec
 * writes its heads with it too.
 */
export const writeHead = (
  b: Uint8Array,
  at: number,
  major: number,
  n: number,
): number => {
  const m = major << 5
  if (n < 24) {
    b[at++] = m | n
  } else if (n < 0x100) {
    b[at++] = m | 24
    b[at++] = n
  } else if (n < 0x10000) {
    b[at++] = m | 25
    b[at++] = n >>> 8
    b[at++] = n & 0xff
  } else if (n < 0x100000000) {
    b[at++] = m | 26
    b[at++] = n >>> 24
    b[at++] = (n >>> 16) & 0xff
    b[at++] = (n >>> 8) & 0xff
    b[at++] = n & 0xff
  } else {
    const high = Math.floor(n / 0x100000000)
    b[at++] = m | 27
    b[at++] = high >>> 24
    b[at++] = (high >>> 16) & 0xff
    b[at++] = (high >>> 8) & 0xff
    b[at++] = high & 0xff
    b[at++] = n >>> 24
    b[at++] = (n >>> 16) & 0xff
    b[at++] = (n >>> 8) & 0xff
    b[at++] = n & 0xff
  }
  return at
}

class Writer {
  buf: Buffer = scratch
  len = 0

  room(n: number): void {
    if (this.len + n <= this.buf.length) return
    // A value that outgrows the scratch (a frame with its CAR) is written to a buffer of its
    // own, dropped once copied out: kept as the next value's scratch, it would stay in memory
    // for good. Room for a large byte string at once, not by doublings that are each garbage.
    const size = Math.max(this.buf.length * 2, this.len + n + SCRATCH_BYTES)
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }

  /**
   * The bytes written, in an ArrayBuffer of their own and of their size: not a view of the
   * scratch (the next value's), of a larger grown buffer, or of Node's shared Buffer pool,
   * whose slabs the node cache's blocks keep alive.
   */
  copy(): Uint8Array {
    return new Uint8Array(this.buf.subarray(0, this.len))
  }

  /** A head in its shortest form; `n` a safe non-negative integer. */
  head(major: number, n: number): void {
    this.room(9)
    this.len = writeHead(this.buf, this.len, major, n)
  }

  string(text: string): void {
    if (text.length < 64) {
      // Short strings (keys, DIDs, dates) byte by byte: cheaper than a call into the runtime.
      const start = this.len
      this.room(text.length + 2)
      const b = this.buf
      let n = start + 1
      let ascii = true
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i)
        if (c > 0x7f) {
          ascii = false
          break
        }
        b[n++] = c
      }
      if (ascii) {
        b[start] = 0x60 | text.length
        if (text.length >= 24) {
          // A one-byte length: the head is two bytes, so the text moves up one.
          b.copy(b, start + 2, start + 1, n)
          b[start] = 0x78
          b[start + 1] = text.length
          n++
        }
        this.len = n
        return
      }
    }
    if (isAscii(text)) {
      this.head(3, text.length)
      this.room(text.length)
      this.len += this.buf.write(text, this.len, 'latin1')
      return
    }
    const n = Buffer.byteLength(text, 'utf8')
    this.head(3, n)
    this.room(n)
    this.len += this.buf.write(text, this.len, 'utf8')
  }

  bytes(bytes: Uint8Array, prefix: boolean): void {
    const n = bytes.byteLength + (prefix ? 1 : 0)
    this.head(2, n)
    this.room(n)
    if (prefix) this.buf[this.len++] = 0
    this.buf.set(bytes, this.len)
    this.len += bytes.byteLength
  }

  /** False when the value is not one this writer handles (the caller falls back). */
  value(v: unknown, depth: number): boolean {
    if (depth > MAX_DEPTH) return false
    switch (typeof v) {
      case 'string':
        this.string(v)
        return true
      case 'number':
        if (!Number.isSafeInteger(v) || Object.is(v, -0)) return false
        if (v >= 0) this.head(0, v)
        else this.head(1, -1 - v)
        return true
      case 'boolean':
        this.room(1)
        this.buf[this.len++] = v ? 0xf5 : 0xf4
        return true
      case 'object':
        break
      default:
        return false
    }
    if (v === null) {
      this.room(1)
      this.buf[this.len++] = 0xf6
      return true
    }
    if (Array.isArray(v)) {
      this.head(4, v.length)
      for (let i = 0; i < v.length; i++) {
        if (!(i in v) || !this.value(v[i], depth + 1)) return false
      }
      return true
    }
    if (v instanceof Uint8Array) {
      if (!Buffer.isBuffer(v) && v.constructor !== Uint8Array) return false
      this.bytes(v, false)
      return true
    }
    const proto = Object.getPrototypeOf(v) as unknown
    if (proto !== Object.prototype && proto !== null) {
      const cid = ifCid(v)
      if (!cid) return false
      this.room(2)
      this.buf[this.len++] = 0xd8 // tag(42)
      this.buf[this.len++] = 42
      this.bytes(cid.bytes, true)
      return true
    }
    const obj = v as Record<string, unknown>
    // The library takes a plain object shaped like a CID for one.
    if ('multihash' in obj) return false
    const keys: string[] = []
    for (const key of Object.keys(obj)) {
      if (obj[key] === undefined) continue
      if (!isAscii(key)) return false
      keys.push(key)
    }
    keys.sort(byCanonicalOrder)
    this.head(5, keys.length)
    for (const key of keys) {
      this.string(key)
      if (!this.value(obj[key], depth + 1)) return false
    }
    return true
  }
}
