import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { sipHash32 } from './siphash.ts'

/** Index bits: 2^11 registers. */
const P = 11
const M = 1 << P
/** A register keeps the rank of the remaining 21 bits: at most 22. */
const MAX_RANK = 32 - P + 1
/** Serialized: a sparse sketch is 2 bytes a register set, a dense one a byte each. */
const SPARSE = 1
const DENSE = 2
/** Past this many registers set, a sketch is dense (the sparse form would be no smaller). */
const SPARSE_MAX = M / 2
const ALPHA = 0.7213 / (1 + 1.079 / M)

/**
 * The relative standard error of an estimate, 1.04 / sqrt(2^11). An estimate is within three of
 * these of the true count nearly always; up to a few hundred distinct clients the linear-counting
 * range is much closer (a handful is counted exactly).
 */
export const STANDARD_ERROR = 1.04 / Math.sqrt(M)

/**
 * A HyperLogLog sketch of distinct clients (Flajolet et al., with linear counting for small
 * counts), over 32-bit hashes: sparse (register → rank) while few registers are set, a byte per
 * register after that. Sketches merge by taking each register's larger rank, so a day's sketch
 * is built from the sketches of every persist.
 */
export class Sketch {
  private sparse: Map<number, number> | undefined = new Map()
  private dense: Uint8Array | undefined

  add(hash: number): void {
    const index = hash >>> (32 - P)
    const rank = Math.min(Math.clz32(hash << P) + 1, MAX_RANK)
    this.set(index, rank)
  }

  /** Raises a register; whether it changed. */
  private set(index: number, rank: number): boolean {
    if (this.dense) {
      if (rank <= this.dense[index]) return false
      this.dense[index] = rank
      return true
    }
    const sparse = this.sparse!
    const cur = sparse.get(index)
    if (cur !== undefined && cur >= rank) return false
    sparse.set(index, rank)
    if (sparse.size > SPARSE_MAX) {
      const dense = new Uint8Array(M)
      for (const [i, r] of sparse) dense[i] = r
      this.dense = dense
      this.sparse = undefined
    }
    return true
  }

  /** Takes in another sketch's registers; whether any of this one's changed. */
  merge(other: Sketch): boolean {
    let changed = false
    if (other.dense) {
      for (let i = 0; i < M; i++) {
        if (other.dense[i] > 0 && this.set(i, other.dense[i])) changed = true
      }
    } else {
      for (const [i, r] of other.sparse!) if (this.set(i, r)) changed = true
    }
    return changed
  }

  estimate(): number {
    if (this.dense) return denseEstimate(this.dense, 0)
    let sum = M - this.sparse!.size
    for (const r of this.sparse!.values()) sum += 2 ** -r
    return finish(sum, M - this.sparse!.size)
  }

  /** The estimate of a serialized sketch, read straight from its bytes; undefined if not one. */
  static estimateOf(bytes: Uint8Array): number | undefined {
    if (bytes[0] === DENSE && bytes.length === M + 1) {
      return denseEstimate(bytes, 1)
    }
    if (bytes[0] !== SPARSE || bytes.length % 2 !== 1) return undefined
    // Sparse entries are distinct registers (written from a Map).
    const set = (bytes.length - 1) / 2
    let sum = M - set
    for (let o = 1; o < bytes.length; o += 2) sum += 2 ** -(bytes[o + 1] & 0x1f)
    return finish(sum, M - set)
  }

  toBytes(): Uint8Array {
    if (this.dense) {
      const out = new Uint8Array(M + 1)
      out[0] = DENSE
      out.set(this.dense, 1)
      return out
    }
    const sparse = this.sparse!
    const out = new Uint8Array(1 + 2 * sparse.size)
    out[0] = SPARSE
    let o = 1
    for (const [i, r] of sparse) {
      const v = (i << 5) | r
      out[o++] = v >>> 8
      out[o++] = v & 0xff
    }
    return out
  }

  /** A serialized sketch; undefined when the bytes are not one. */
  static from(bytes: Uint8Array): Sketch | undefined {
    const s = new Sketch()
    if (bytes[0] === DENSE && bytes.length === M + 1) {
      s.sparse = undefined
      s.dense = bytes.slice(1)
      return s
    }
    if (bytes[0] !== SPARSE || bytes.length % 2 !== 1) return undefined
    for (let o = 1; o < bytes.length; o += 2) {
      const v = (bytes[o] << 8) | bytes[o + 1]
      s.set(v >>> 5, v & 0x1f)
    }
    return s
  }
}

const denseEstimate = (registers: Uint8Array, from: number): number => {
  let sum = 0
  let zeros = 0
  for (let i = from; i < from + M; i++) {
    const r = registers[i]
    sum += 2 ** -r
    if (r === 0) zeros++
  }
  return finish(sum, zeros)
}

/** HyperLogLog's raw estimate from the register sum, or linear counting while it is small. */
const finish = (sum: number, zeros: number): number => {
  const raw = (ALPHA * M * M) / sum
  if (raw <= 2.5 * M && zeros > 0) return Math.round(M * Math.log(M / zeros))
  return Math.round(raw)
}

/** A well-mixed 32-bit hash of a string (FNV-1a, then MurmurHash3's finalizer). */
export const hash32 = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const SEEN_MAX = 10_000

/**
 * What a unique-client sketch counts of a caller: its DID hashed, or for an anonymous caller
 * its address hashed under the hold's own key (SipHash-2-4, key in HOLD_DATA_DIR), so that
 * neither the sketches nor anything else the hold writes can be turned back into an address.
 */
export class ClientHasher {
  private readonly key: Uint8Array
  /** Hashes of the clients seen lately: most requests come from a client seen before. */
  private readonly seen = new Map<string, number>()

  constructor(key: Uint8Array) {
    this.key = key.subarray(0, 16)
  }

  /** A DID (`did:…`) is hashed as it is; anything else is an address, hashed under the key. */
  of(client: string): number {
    let h = this.seen.get(client)
    if (h === undefined) {
      h = client.startsWith('did:')
        ? hash32(client)
        : sipHash32(this.key, client)
      // Emptied rather than evicted one by one: cheap, and bounded.
      if (this.seen.size >= SEEN_MAX) this.seen.clear()
      this.seen.set(client, h)
    }
    return h
  }
}

/** In the data dir: the key client addresses are hashed under. */
export const CLIENT_KEY_FILE = 'stats-client.key'

/** The hold's key for client addresses: read from `path`, or made (32 random bytes) once. */
export const loadClientKey = (path: string): Buffer => {
  try {
    const key = readFileSync(path)
    if (key.length >= 32) return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = randomBytes(32)
  writeFileSync(path, key, { mode: 0o600 })
  return key
}
