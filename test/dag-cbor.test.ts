import { createHash } from 'node:crypto'
import { encode } from '@atproto/lex-cbor'
import { createCid, type Cid } from '@atproto/lex-data'
import { MessageFrame } from '@atproto/xrpc-server'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { encodeDagCbor } from '../src/repo/dag-cbor.ts'
import {
  accountEvent,
  eventFrame,
  identityEvent,
  syncEvent,
  type RepoEvent,
} from '../src/repo/events.ts'
import { toRecord } from '../src/stats/counter-row.ts'

// The hold's own DAG-CBOR encoder against @atproto/lex-cbor's: byte for byte, for random
// values of every kind it handles and of the kinds it hands back to the library, and for the
// records and firehose frames the hold writes.

const cidOf = (seed: string): Cid =>
  createCid(0x71, 0x12, createHash('sha256').update(seed).digest())

/** The library's result, or its error message. */
const libraryBytes = (value: unknown): Buffer | string => {
  try {
    return Buffer.from(encode(value as never))
  } catch (err) {
    return (err as Error).message
  }
}

const ourBytes = (value: unknown): Buffer | string => {
  try {
    return Buffer.from(encodeDagCbor(value))
  } catch (err) {
    return (err as Error).message
  }
}

const key = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom('$type', 'a', 'b', 'aa', 'é', 'ab', 'ba', '', 'multihash'),
)

const leaf = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ minLength: 200, maxLength: 70_000 }),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.maxSafeNat(),
  fc.constantFrom(
    0,
    -0,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2 ** 32 - 1,
    2 ** 32,
    -24,
    -25,
    -(2 ** 32),
    -(2 ** 32) - 1,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    1.5,
    NaN,
    Infinity,
  ),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 300 }),
  fc.string().map(cidOf),
)

const value = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(key, tie('value'), { maxKeys: 8 }),
  ),
})).value

describe('encodeDagCbor', () => {
  it('writes the bytes @atproto/lex-cbor writes, or fails as it fails', () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(ourBytes(v)).toEqual(libraryBytes(v))
      }),
      { numRuns: 3000 },
    )
  })

  it('writes maps in canonical key order (length first, then bytes)', () => {
    const v = { bb: 1, a: 2, ab: 3, b: 4, $type: 'x', aaa: [true, false] }
    expect(ourBytes(v)).toEqual(libraryBytes(v))
    expect([...encodeDagCbor({})]).toEqual([0xa0])
  })

  it('writes the records a flush writes as the library does', () => {
    fc.assert(
      fc.property(
        fc.record({
          did: fc.constantFrom('did:plc:abc', 'did:web:example.com'),
          repository: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,60}$/),
          pull_count: fc.maxSafeNat(),
          push_count: fc.nat(),
          base_pull: fc.option(fc.nat(), { nil: null }),
          base_push: fc.option(fc.nat(), { nil: null }),
          last_pull: fc.option(fc.constant('2026-11-30T21:00:00.000Z'), {
            nil: null,
          }),
          last_push: fc.option(fc.constant('2026-11-29T01:02:03.456Z'), {
            nil: null,
          }),
          created_at: fc.constant('2026-01-01T00:00:00.000Z'),
          updated_at: fc.constant('2026-11-30T21:00:00.000Z'),
        }),
        (row) => {
          const record = toRecord({
            ...row,
            base_last_pull: null,
            base_last_push: null,
          } as never)
          expect(record.$type).toBe(ids.HoldStats)
          expect(ourBytes(record)).toEqual(libraryBytes(record))
        },
      ),
      { numRuns: 300 },
    )
  })

  it('writes each kind of firehose frame as MessageFrame.toBytes does', () => {
    const did = 'did:web:hold.example.com'
    const events: RepoEvent[] = [
      identityEvent(did, 'hold.example.com'),
      accountEvent(did),
      syncEvent(did, {
        cid: cidOf('commit'),
        rev: '3lbxyz',
        block: new Uint8Array(300).fill(7),
      }),
      {
        type: 'commit',
        body: {
          repo: did,
          commit: cidOf('c'),
          rev: '3lbxyz2',
          since: '3lbxyz',
          blocks: new Uint8Array(600_000).fill(9),
          ops: [
            { action: 'create', path: 'a/b', cid: cidOf('1') },
            {
              action: 'update',
              path: 'a/c',
              cid: cidOf('2'),
              prev: cidOf('3'),
            },
            { action: 'delete', path: 'a/d', cid: null, prev: cidOf('4') },
          ],
          prevData: cidOf('d'),
          blobs: [],
          rebase: false,
          tooBig: false,
        },
      },
    ]
    for (const event of events) {
      const time = '2026-11-30T21:00:00.000Z'
      const expected = new MessageFrame(
        { ...event.body, seq: 123456, time } as never,
        { type: `#${event.type}` },
      ).toBytes()
      expect(Buffer.from(eventFrame(event, 123456, time))).toEqual(
        Buffer.from(expected),
      )
    }
  })

  it('writes a frame whose body it does not handle through the library, header included', () => {
    // A non-ASCII key: the body goes to the library, the header is still written here.
    const event = {
      type: 'identity',
      body: { did: 'did:web:hold.example.com', é: [1, 'x'] },
    } as unknown as RepoEvent
    const time = '2026-11-30T21:00:00.000Z'
    const expected = new MessageFrame(
      { ...event.body, seq: 9, time } as never,
      {
        type: '#identity',
      },
    ).toBytes()
    expect(Buffer.from(eventFrame(event, 9, time))).toEqual(
      Buffer.from(expected),
    )
  })
})
