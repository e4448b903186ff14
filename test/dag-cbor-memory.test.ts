import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { encodeDagCbor } from '../src/repo/dag-cbor.ts'
import { accountEvent, eventFrame } from '../src/repo/events.ts'

// What the encoder's results keep in memory. Records sit in a commit's blocks and frames in
// the firehose's recent memory and socket buffers: their bytes must pin nothing beyond
// themselves, neither a slab of Node's shared Buffer pool (which any retained small Buffer of
// the hold, a cached MST node for one, keeps alive) nor the encoder's working buffer.

const record = {
  $type: ids.HoldStats,
  did: 'did:plc:abc',
  ownerDid: 'did:plc:abc',
  repository: 'image',
  pullCount: 3,
  pushCount: 1,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-11-30T21:00:00.000Z',
}

const ownsItsMemory = (bytes: Uint8Array) => {
  expect(bytes.byteOffset).toBe(0)
  expect(bytes.buffer.byteLength).toBe(bytes.byteLength)
}

describe('the DAG-CBOR encoder and memory', () => {
  it("gives a record's bytes an ArrayBuffer of their own size", () => {
    ownsItsMemory(encodeDagCbor(record))
  })

  it("gives a firehose frame's bytes an ArrayBuffer of their own size", () => {
    ownsItsMemory(
      eventFrame(
        accountEvent('did:web:hold.example.com'),
        7,
        '2026-11-30T21:00:00.000Z',
      ),
    )
  })

  it('keeps no buffer a large value grew once that value is gone', () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    // A second collection finishes the first one's freeing of ArrayBuffers, which V8 does
    // beside the program: after one, dead buffers can still be counted.
    const held = () => {
      gc()
      gc()
      return process.memoryUsage().arrayBuffers
    }
    const encodeLarge = () =>
      encodeDagCbor({ blocks: new Uint8Array(4 * 2 ** 20) }).byteLength
    const before = held()
    expect(encodeLarge()).toBeGreaterThan(4 * 2 ** 20)
    expect(held() - before).toBeLessThan(2 ** 20)
    // Small values still encode after a large one.
    expect(Buffer.from(encodeDagCbor({ a: 1 }))).toEqual(
      Buffer.from([0xa1, 0x61, 0x61, 0x01]),
    )
  })
})
