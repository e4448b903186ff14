import type { Delta } from './counter-store.ts'
import { Sketch } from './hll.ts'
import { dayOf, type DayCounts } from './days.ts'

/**
 * One entry of the counts stream: a frontend's deltas of one batch window. `producer` names the
 * frontend process and `seq` numbers its entries from 1; an entry sent again after a lost reply
 * carries the same pair, so the writer applies each (producer, seq) once.
 */
export type StreamEntry = {
  producer: string
  seq: number
  deltas: Delta[]
}

/** The one field of a stream entry. */
const FIELD = 'c'

/**
 * A stream entry as XADD's field-value list. Every field a delta carries travels: a field added
 * to Delta is added here and in decodeEntry, and nowhere else.
 */
export const encodeEntry = (entry: StreamEntry): [string, string] => [
  FIELD,
  JSON.stringify({
    p: entry.producer,
    s: entry.seq,
    d: entry.deltas.map(encodeDelta),
  }),
]

/**
 * A delta as a JSON array, as the counts stream and the count journal (journal.ts) carry it;
 * decodeDelta reads it back.
 */
export const encodeDelta = (d: Delta): unknown[] => [
  d.did,
  d.repository,
  d.pulls,
  d.pushes,
  d.lastPull,
  d.lastPush,
  d.first,
  d.day,
  // Counts of earlier days when the delta spans a midnight, then the day's unique-client
  // sketch (serialized, base64) when clients are counted.
  ...(d.earlier?.length || d.clients ? [(d.earlier ?? []).map(encodeDay)] : []),
  ...(d.clients ? [sketchText(d.clients)] : []),
]

const sketchText = (s: Sketch): string =>
  Buffer.from(s.toBytes()).toString('base64')

const encodeDay = (e: DayCounts): (number | string)[] =>
  e.clients
    ? [e.day, e.pulls, e.pushes, sketchText(e.clients)]
    : [e.day, e.pulls, e.pushes]

const decodeSketch = (v: unknown): Sketch => {
  const sketch =
    typeof v === 'string' && v.length <= MAX_SKETCH_TEXT
      ? Sketch.from(Buffer.from(v, 'base64'))
      : undefined
  if (!sketch) throw new BadEntryError('a malformed unique-client sketch')
  return sketch
}

/** The base64 of the largest sketch (a dense one: a byte per register and the form's byte). */
const MAX_SKETCH_TEXT = 4 * Math.ceil(2049 / 3)

/** A malformed entry (not written by a hold of this version): skipped and acknowledged. */
export class BadEntryError extends Error {}

/** The entry XREADGROUP returned as its field-value list; BadEntryError when malformed. */
export const decodeEntry = (fields: string[]): StreamEntry => {
  const i = fields.indexOf(FIELD)
  if (i < 0 || i % 2 !== 0 || i + 1 >= fields.length) {
    throw new BadEntryError(`no "${FIELD}" field`)
  }
  let body: unknown
  try {
    body = JSON.parse(fields[i + 1])
  } catch {
    throw new BadEntryError('not JSON')
  }
  const { p, s, d } = (body ?? {}) as { p?: unknown; s?: unknown; d?: unknown }
  if (typeof p !== 'string' || p === '' || !isCount(s) || s < 1) {
    throw new BadEntryError('no producer and sequence number')
  }
  if (!Array.isArray(d)) throw new BadEntryError('no deltas')
  return { producer: p, seq: s, deltas: d.map(decodeDelta) }
}

/** A delta written by encodeDelta; BadEntryError when malformed. */
export const decodeDelta = (row: unknown): Delta => {
  if (
    !Array.isArray(row) ||
    row.length < 7 ||
    typeof row[0] !== 'string' ||
    typeof row[1] !== 'string' ||
    !row.slice(2, 7).every(isCount)
  ) {
    throw new BadEntryError('a malformed delta')
  }
  const [did, repository, pulls, pushes, lastPull, lastPush, first] = row as [
    string,
    string,
    number,
    number,
    number,
    number,
    number,
  ]
  const day = row.length > 7 ? row[7] : undefined
  if (day !== undefined && !isCount(day)) {
    throw new BadEntryError('a malformed day')
  }
  const delta: Delta = {
    did,
    repository,
    pulls,
    pushes,
    lastPull,
    lastPush,
    first,
    day: day ?? dayOf(Math.max(lastPull, lastPush, first)),
  }
  if (row.length > 8) {
    const earlier = decodeEarlier(row[8], delta)
    if (earlier.length > 0) delta.earlier = earlier
  }
  if (row.length > 9) delta.clients = decodeSketch(row[9])
  return delta
}

/** A delta's earlier days: [day, pulls, pushes] each, before its day, within its counts. */
const decodeEarlier = (v: unknown, d: Delta): DayCounts[] => {
  if (!Array.isArray(v)) throw new BadEntryError('malformed earlier days')
  let pulls = 0
  let pushes = 0
  const out = v.map((e: unknown): DayCounts => {
    if (
      !Array.isArray(e) ||
      (e.length !== 3 && e.length !== 4) ||
      !e.slice(0, 3).every(isCount) ||
      e[0] >= d.day
    ) {
      throw new BadEntryError('malformed earlier days')
    }
    pulls += e[1]
    pushes += e[2]
    const day: DayCounts = { day: e[0], pulls: e[1], pushes: e[2] }
    if (e.length === 4) day.clients = decodeSketch(e[3])
    return day
  })
  if (pulls > d.pulls || pushes > d.pushes) {
    throw new BadEntryError('earlier days over the delta')
  }
  return out
}

const isCount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
