import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  ClientHasher,
  STANDARD_ERROR,
  Sketch,
  hash32,
} from '../src/stats/hll.ts'
import { sipHashHex } from '../src/stats/siphash.ts'

/** Within three standard errors: the bound the README and the lexicon state. */
const BOUND = 3 * STANDARD_ERROR

const sketchOf = (clients: string[], hasher: ClientHasher) => {
  const s = new Sketch()
  for (const c of clients) s.add(hasher.of(c))
  return s
}

describe('unique-client sketches', () => {
  // A fixed key: the estimates below are then the same in every run (with a random key a
  // different pair of clients shares a register each time).
  const hasher = new ClientHasher(Buffer.alloc(32, 7))

  it('state a standard error of 2.3%', () => {
    expect(STANDARD_ERROR).toBeCloseTo(0.023, 3)
  })

  for (const n of [10, 1000, 100_000]) {
    it(`estimate ${n} distinct DIDs and ${n} distinct addresses within the bound, repeats ignored`, () => {
      const dids = Array.from({ length: n }, (_, i) => `did:plc:client${i}`)
      const addresses = Array.from(
        { length: n },
        (_, i) => `ip:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      )
      for (const clients of [dids, addresses]) {
        const s = sketchOf([...clients, ...clients.slice(0, n / 2)], hasher)
        const estimate = s.estimate()
        // Ten clients: linear counting is exact unless two of them share one of the 2,048
        // registers (about 2% of the time, 10 * 9 / 2 / 2048), which counts one less.
        if (n <= 10) expect(Math.abs(estimate - n)).toBeLessThanOrEqual(1)
        else expect(Math.abs(estimate - n) / n).toBeLessThanOrEqual(BOUND)
      }
    })
  }

  it('merge and round-trip through bytes to the same estimate as one sketch of all', () => {
    for (const n of [50, 5000]) {
      const all = Array.from({ length: n }, (_, i) => `did:web:c${i}.example`)
      const one = sketchOf(all, hasher)
      const a = sketchOf(all.slice(0, n / 3), hasher).toBytes()
      const b = sketchOf(all.slice(n / 4), hasher).toBytes()
      const merged = Sketch.from(a)!
      merged.merge(Sketch.from(b)!)
      expect(merged.estimate()).toBe(one.estimate())
      expect(Sketch.from(one.toBytes())!.estimate()).toBe(one.estimate())
    }
  })

  it('refuse bytes that are not a sketch, and say whether a merge changed them', () => {
    expect(Sketch.from(new Uint8Array([9, 1, 2]))).toBeUndefined()
    expect(Sketch.from(new Uint8Array([2, 1, 2]))).toBeUndefined()
    const a = sketchOf(['did:plc:a', 'did:plc:b'], hasher)
    expect(a.merge(sketchOf(['did:plc:a'], hasher))).toBe(false)
    expect(a.merge(sketchOf(['did:plc:c'], hasher))).toBe(true)
  })

  it('hash addresses under the key: another key gives other values', () => {
    const other = new ClientHasher(randomBytes(32))
    const address = 'ip:192.0.2.1'
    expect(hasher.of(address)).toBe(hasher.of(address))
    expect(hasher.of(address)).not.toBe(other.of(address))
    // A DID is public: hashed the same by every hold.
    expect(hasher.of('did:plc:x')).toBe(hash32('did:plc:x'))
  })
})

describe('SipHash-2-4', () => {
  it('gives the reference vectors (key 00..0f, input 00, 01, …)', () => {
    const key = Uint8Array.from({ length: 16 }, (_, i) => i)
    const input = (n: number) =>
      String.fromCharCode(...Array.from({ length: n }, (_, i) => i))
    expect(sipHashHex(key, input(0))).toBe('726fdb47dd0e0e31')
    expect(sipHashHex(key, input(7))).toBe('ab0200f58b01d137')
    expect(sipHashHex(key, input(8))).toBe('93f5f5799a932462')
    expect(sipHashHex(key, input(15))).toBe('a129ca6149be45e5')
    expect(sipHashHex(key, input(16))).toBe('3f2acc7f57c29bdb')
  })
})

describe('estimates read from bytes', () => {
  it("equal the sketch's own, sparse and dense", () => {
    // A fixed key: the estimates below are then the same in every run (with a random key a
    // different pair of clients shares a register each time).
    const hasher = new ClientHasher(Buffer.alloc(32, 7))
    for (const n of [1, 300, 5000]) {
      const s = new Sketch()
      for (let i = 0; i < n; i++) s.add(hasher.of(`did:plc:e${i}`))
      expect(Sketch.estimateOf(s.toBytes())).toBe(s.estimate())
    }
    expect(Sketch.estimateOf(new Uint8Array([7]))).toBeUndefined()
  })
})
