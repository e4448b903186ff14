// A frontend's unique-client sketches travel in its counts entries, so the writer's estimate
// includes clients only frontends saw.
import { describe, expect, it } from 'vitest'
import type { Delta } from '../src/stats/counter-store.ts'
import { hash32, Sketch } from '../src/stats/hll.ts'
import { dayOf } from '../src/stats/days.ts'
import {
  BadEntryError,
  decodeEntry,
  encodeEntry,
} from '../src/stats/stream-entry.ts'

const NOW = Date.UTC(2026, 10, 30, 0, 0, 1)

const sketchOf = (n: number, prefix: string) => {
  const s = new Sketch()
  for (let i = 0; i < n; i++) s.add(hash32(`did:plc:${prefix}${i}`))
  return s
}

const delta = (over: Partial<Delta> = {}): Delta => ({
  did: 'did:plc:streamclients000000000000',
  repository: 'app',
  pulls: 5,
  pushes: 0,
  lastPull: NOW,
  lastPush: 0,
  first: NOW - 10_000,
  day: dayOf(NOW),
  ...over,
})

const roundTrip = (d: Delta) =>
  decodeEntry(encodeEntry({ producer: 'p1', seq: 1, deltas: [d] })).deltas[0]

describe("a counts entry's unique-client sketches", () => {
  it("carry the day's sketch, sparse and dense, to the same registers", () => {
    for (const n of [3, 5000]) {
      const clients = sketchOf(n, 'day')
      const back = roundTrip(delta({ clients }))
      expect(back.clients).toBeInstanceOf(Sketch)
      expect(back.clients!.toBytes()).toEqual(clients.toBytes())
      expect(back.earlier).toBeUndefined()
    }
  })

  it("carry an earlier day's sketch when a batch spans a midnight", () => {
    const yesterday = sketchOf(4, 'yesterday')
    const today = sketchOf(2, 'today')
    const d = delta({
      earlier: [
        { day: dayOf(NOW) - 1, pulls: 2, pushes: 0, clients: yesterday },
      ],
      clients: today,
    })
    const back = roundTrip(d)
    expect(back.earlier![0].clients!.estimate()).toBe(4)
    expect(back.clients!.estimate()).toBe(2)
    expect(back.pulls).toBe(5)
  })

  it('leave a delta without clients as it was', () => {
    const d = delta()
    expect(roundTrip(d)).toEqual(d)
    const [, body] = encodeEntry({ producer: 'p1', seq: 1, deltas: [d] })
    expect((JSON.parse(body) as { d: unknown[][] }).d[0]).toHaveLength(8)
  })

  it('refuse an entry whose sketch is not one', () => {
    const day = dayOf(NOW)
    const row = ['did:plc:x', 'app', 1, 0, NOW, 0, NOW, day, []]
    for (const bad of [
      'not base64 of a sketch!',
      42,
      Buffer.from([9, 1, 2]).toString('base64'),
      'A'.repeat(5000),
    ]) {
      const fields = [
        'c',
        JSON.stringify({ p: 'p1', s: 1, d: [[...row, bad]] }),
      ]
      expect(() => decodeEntry(fields), String(bad)).toThrow(BadEntryError)
    }
    const earlier = [[day - 1, 1, 0, 'nope']]
    const fields = [
      'c',
      JSON.stringify({
        p: 'p1',
        s: 1,
        d: [['did:plc:x', 'app', 2, 0, NOW, 0, NOW, day, earlier]],
      }),
    ]
    expect(() => decodeEntry(fields)).toThrow(BadEntryError)
  })
})
