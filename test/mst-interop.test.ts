import { encode } from '@atproto/lex-cbor'
import { parseCid, type Cid } from '@atproto/lex-data'
import { describe, expect, it } from 'vitest'
import { cborCidBytes, cidString } from '../src/repo/cid.ts'
import { applyMstOps, layerOfKey, type MstOp } from '../src/repo/mst.ts'

// Our batched MST against the interop maps @atproto/repo pins its own MST to: the root CIDs
// are data copied from there, so the tree shape and node encoding are checked against an
// outside record, not only against the library as installed.

/** Our tree alone: the blocks applyMstOps made, from the empty node up. */
class OurTree {
  readonly blocks = new Map<string, Uint8Array>()
  root: Cid

  constructor() {
    const empty = encode({ e: [], l: null })
    this.root = parseCid(cidString(cborCidBytes(empty)))
    this.blocks.set(this.root.toString(), empty)
  }

  apply(ops: MstOp[]): string {
    const result = applyMstOps(
      { getBlockSync: (cid) => this.blocks.get(cid) ?? null },
      this.root,
      ops,
    )
    for (const [cid, bytes] of result.newBlocks) this.blocks.set(cid, bytes)
    this.root = parseCid(result.root.cid)
    return result.root.cid
  }
}

/**
 * The interop maps of bluesky-social/atproto, packages/repo/tests/mst.test.ts ("MST Interop
 * Known Maps" and "MST Interop Edge Cases"): keys with the layer the comments there give them,
 * every value the same CID, and the root CID after each step.
 */
const INTEROP_VALUE =
  'bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454'
const K = (rkey: string) => `com.example.record/${rkey}`
const INTEROP_LAYERS: [string, number][] = [
  [K('3jqfcqzm3fn2j'), 0],
  [K('3jqfcqzm3fo2j'), 0],
  [K('3jqfcqzm3fp2j'), 0],
  [K('3jqfcqzm3fr2j'), 0],
  [K('3jqfcqzm3fs2j'), 1],
  [K('3jqfcqzm3ft2j'), 0],
  [K('3jqfcqzm3fu2j'), 0],
  [K('3jqfcqzm3fx2j'), 2],
  [K('3jqfcqzm3fz2j'), 0],
  [K('3jqfcqzm4fc2j'), 0],
  [K('3jqfcqzm4fd2j'), 1],
  [K('3jqfcqzm4ff2j'), 0],
  [K('3jqfcqzm4fg2j'), 0],
  [K('3jqfcqzm4fh2j'), 0],
]
const INTEROP_MAPS: {
  name: string
  steps: { add?: string[]; remove?: string[]; root: string }[]
}[] = [
  {
    name: 'empty',
    steps: [
      {
        add: [K('3jqfcqzm3fo2j')],
        root: 'bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu',
      },
      {
        remove: [K('3jqfcqzm3fo2j')],
        root: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
      },
    ],
  },
  {
    name: 'trivial',
    steps: [
      {
        add: [K('3jqfcqzm3fo2j')],
        root: 'bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu',
      },
    ],
  },
  {
    name: 'singlelayer2',
    steps: [
      {
        add: [K('3jqfcqzm3fx2j')],
        root: 'bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai',
      },
    ],
  },
  {
    name: 'simple',
    steps: [
      {
        add: [
          '3jqfcqzm3fp2j',
          '3jqfcqzm3fr2j',
          '3jqfcqzm3fs2j',
          '3jqfcqzm3ft2j',
          '3jqfcqzm4fc2j',
        ].map(K),
        root: 'bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m',
      },
    ],
  },
  {
    name: 'trims top of tree on delete',
    steps: [
      {
        add: [
          '3jqfcqzm3fn2j',
          '3jqfcqzm3fo2j',
          '3jqfcqzm3fp2j',
          '3jqfcqzm3fs2j',
          '3jqfcqzm3ft2j',
          '3jqfcqzm3fu2j',
        ].map(K),
        root: 'bafyreifnqrwbk6ffmyaz5qtujqrzf5qmxf7cbxvgzktl4e3gabuxbtatv4',
      },
      {
        remove: [K('3jqfcqzm3fs2j')],
        root: 'bafyreie4kjuxbwkhzg2i5dljaswcroeih4dgiqq6pazcmunwt2byd725vi',
      },
    ],
  },
  {
    name: 'handles insertion that splits two layers down',
    steps: [
      {
        add: [
          '3jqfcqzm3fo2j',
          '3jqfcqzm3fp2j',
          '3jqfcqzm3fr2j',
          '3jqfcqzm3fs2j',
          '3jqfcqzm3ft2j',
          '3jqfcqzm3fz2j',
          '3jqfcqzm4fc2j',
          '3jqfcqzm4fd2j',
          '3jqfcqzm4ff2j',
          '3jqfcqzm4fg2j',
          '3jqfcqzm4fh2j',
        ].map(K),
        root: 'bafyreiettyludka6fpgp33stwxfuwhkzlur6chs4d2v4nkmq2j3ogpdjem',
      },
      {
        add: [K('3jqfcqzm3fx2j')],
        root: 'bafyreid2x5eqs4w4qxvc5jiwda4cien3gw2q6cshofxwnvv7iucrmfohpm',
      },
      {
        remove: [K('3jqfcqzm3fx2j')],
        root: 'bafyreiettyludka6fpgp33stwxfuwhkzlur6chs4d2v4nkmq2j3ogpdjem',
      },
    ],
  },
  {
    name: 'handles new layers that are two higher than existing',
    steps: [
      {
        add: [K('3jqfcqzm3ft2j'), K('3jqfcqzm3fz2j')],
        root: 'bafyreidfcktqnfmykz2ps3dbul35pepleq7kvv526g47xahuz3rqtptmky',
      },
      {
        add: [K('3jqfcqzm3fx2j')],
        root: 'bafyreiavxaxdz7o7rbvr3zg2liox2yww46t7g6hkehx4i4h3lwudly7dhy',
      },
      {
        remove: [K('3jqfcqzm3fx2j')],
        root: 'bafyreidfcktqnfmykz2ps3dbul35pepleq7kvv526g47xahuz3rqtptmky',
      },
      {
        add: [K('3jqfcqzm3fx2j'), K('3jqfcqzm4fd2j')],
        root: 'bafyreig4jv3vuajbsybhyvb7gggvpwh2zszwfyttjrj6qwvcsp24h6popu',
      },
      {
        remove: [K('3jqfcqzm4fd2j')],
        root: 'bafyreiavxaxdz7o7rbvr3zg2liox2yww46t7g6hkehx4i4h3lwudly7dhy',
      },
    ],
  },
]

describe('the interop maps of packages/repo', () => {
  it('gives each key the layer the interop tests give it', () => {
    for (const [key, layer] of INTEROP_LAYERS) {
      expect([key, layerOfKey(key)]).toEqual([key, layer])
    }
  })

  it('starts from the interop empty tree', () => {
    expect(new OurTree().root.toString()).toBe(
      'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
    )
  })

  it.each(INTEROP_MAPS)(
    '$name: the same root CID after each step, in one batch or key by key',
    ({ steps }) => {
      const value = parseCid(INTEROP_VALUE)
      const batched = new OurTree()
      const single = new OurTree()
      for (const step of steps) {
        const ops: MstOp[] = [
          ...(step.add ?? []).map((key) => ({
            action: 'create' as const,
            key,
            cid: value,
          })),
          ...(step.remove ?? []).map((key) => ({
            action: 'delete' as const,
            key,
          })),
        ]
        expect(batched.apply(ops)).toBe(step.root)
        let root = ''
        for (const op of ops) root = single.apply([op])
        expect(root).toBe(step.root)
      }
    },
  )
})
