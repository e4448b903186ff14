import { describe, expect, it } from 'vitest'
import { parseVariant, roundOrder } from '../scripts/lib.ts'

describe("the benchmarks' round order", () => {
  const cases = ['bare', 'url', 'url+repo', 'bytes', 'getStats']

  it('runs every case once a round, never one case twice in a row, and the same for the same round', () => {
    let last: string | undefined
    const firsts = new Set<string>()
    const seq: string[] = []
    for (let round = 1; round <= 40; round++) {
      const order = roundOrder(cases, round, last)
      expect([...order].sort()).toEqual([...cases].sort())
      expect(order[0]).not.toBe(last)
      expect(roundOrder(cases, round, last)).toEqual(order)
      firsts.add(order[0])
      last = order[order.length - 1]
      seq.push(...order)
    }
    for (let i = 1; i < seq.length; i++) expect(seq[i]).not.toBe(seq[i - 1])
    // Every case opens some round: no case always pays for what ran before it.
    expect([...firsts].sort()).toEqual([...cases].sort())
  })

  it('keeps two cases alternating without a repeat', () => {
    let last: string | undefined
    const seq: string[] = []
    for (let round = 1; round <= 10; round++) {
      const order = roundOrder(['a', 'b'], round, last)
      last = order[1]
      seq.push(...order)
    }
    for (let i = 1; i < seq.length; i++) expect(seq[i]).not.toBe(seq[i - 1])
  })
})

describe("the benchmarks' --variant", () => {
  it('reads a label and the variables to set', () => {
    expect(
      parseVariant('window 250:HOLD_STATS_PERSIST_MS=250,LOG_LEVEL=a=b'),
    ).toEqual({
      label: 'window 250',
      env: { HOLD_STATS_PERSIST_MS: '250', LOG_LEVEL: 'a=b' },
    })
    expect(parseVariant('as shipped')).toEqual({ label: 'as shipped', env: {} })
    expect(parseVariant('as shipped:')).toEqual({
      label: 'as shipped',
      env: {},
    })
  })

  it('refuses a variant without a label or with a variable without a name', () => {
    for (const bad of ['', ':A=1', 'x:A', 'x:=1', 'x:A=1,B']) {
      expect(() => parseVariant(bad), bad).toThrow(/LABEL:KEY=VALUE/)
    }
  })
})
