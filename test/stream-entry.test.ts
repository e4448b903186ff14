// The counts stream's entries carry each delta's days: what the writer's daily history needs.
import { describe, expect, it } from 'vitest'
import type { Delta } from '../src/stats/counter-store.ts'
import { DAY_MS, dayOf } from '../src/stats/days.ts'
import {
  BadEntryError,
  decodeEntry,
  encodeEntry,
} from '../src/stats/stream-entry.ts'

const NOW = Date.UTC(2026, 10, 30, 0, 0, 1)
const delta = (over: Partial<Delta> = {}): Delta => ({
  did: 'did:plc:streamentry0000000000000',
  repository: 'app',
  pulls: 5,
  pushes: 1,
  lastPull: NOW,
  lastPush: NOW - 5000,
  first: NOW - 10_000,
  day: dayOf(NOW),
  ...over,
})

const roundTrip = (deltas: Delta[]) =>
  decodeEntry(encodeEntry({ producer: 'p1', seq: 3, deltas }))

const withBody = (d: unknown[]) => [
  'c',
  JSON.stringify({ p: 'p1', s: 1, d: [d] }),
]

describe('a counts stream entry', () => {
  it('carries a delta and its day', () => {
    const d = delta()
    expect(roundTrip([d])).toEqual({ producer: 'p1', seq: 3, deltas: [d] })
  })

  it('carries the earlier days of a batch that spans a midnight', () => {
    const d = delta({
      earlier: [{ day: dayOf(NOW) - 1, pulls: 2, pushes: 1 }],
    })
    expect(roundTrip([d]).deltas[0]).toEqual(d)
  })

  it('gives an entry without days (an older frontend) the day of its last count', () => {
    const [, body] = withBody(['did:plc:x', 'app', 1, 0, NOW, 0, NOW])
    expect(decodeEntry(['c', body]).deltas[0].day).toBe(
      Math.floor(NOW / DAY_MS),
    )
  })

  it.each([
    ['a day that is not a count', [-1]],
    ['earlier days that are not a list', [dayOf(NOW), 'x']],
    [
      'an earlier day after the delta’s own',
      [dayOf(NOW), [[dayOf(NOW) + 1, 1, 0]]],
    ],
    [
      'earlier days over the delta’s counts',
      [dayOf(NOW), [[dayOf(NOW) - 1, 9, 0]]],
    ],
  ])('refuses %s', (_, tail) => {
    const fields = withBody(['did:plc:x', 'app', 5, 1, NOW, 0, NOW, ...tail])
    expect(() => decodeEntry(fields)).toThrow(BadEntryError)
  })
})
