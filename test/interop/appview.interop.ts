// An AppView's whole path through atcr-hold/client, with code nobody here wrote on the other
// side: real PDS accounts own and use two holds, and every token is the PDS's own.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HoldClient, HoldError } from '../../src/client/index.ts'
import { blobDigest } from '../_shared.ts'
import { startHold, type TestHold } from '../_util.ts'
import {
  createAccount,
  pdsTokens,
  startNetwork,
  type Account,
  type Network,
} from './_network.ts'

const REPO = 'app'
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip'

let net: Network
let alice: Account
let bob: Account
let publicHold: TestHold
let privateHold: TestHold
let client: HoldClient
let tokens: ReturnType<typeof pdsTokens>
const layer = new Uint8Array(randomBytes(300_000))
const digest = blobDigest(layer)
const stopped = new Set<TestHold>()

beforeAll(async () => {
  net = await startNetwork()
  alice = await createAccount(net, 'alice')
  bob = await createAccount(net, 'bob')
  // Holds resolve the accounts' did:plc through the network's PLC, like any deployed hold.
  publicHold = await startHold({
    env: { HOLD_PLC_URL: net.plcUrl, HOLD_OWNER_DID: alice.did },
  })
  privateHold = await startHold({
    env: {
      HOLD_PLC_URL: net.plcUrl,
      HOLD_OWNER_DID: bob.did,
      HOLD_PUBLIC: 'false',
      HOLD_ALLOW_ALL_CREW: 'true',
    },
  })
  tokens = pdsTokens(net, alice)
  client = new HoldClient({
    getToken: tokens.getToken,
    allowHttpLocalhost: true,
  })
})

afterAll(async () => {
  for (const h of [publicHold, privateHold]) {
    if (h && !stopped.has(h)) await h.stop()
  }
  await net?.close()
})

describe('an AppView on a real PDS and PLC, through atcr-hold/client', () => {
  it('resolves both holds from their did:web documents', async () => {
    expect(await client.resolveHold(publicHold.did)).toBe(publicHold.url)
    expect(await client.resolveHold(privateHold.did)).toBe(privateHold.url)
  })

  it('a user pushes a layer to her hold in parts, with tokens from her PDS', async () => {
    const done = await client.pushBlob(publicHold.did, layer, {
      did: alice.did,
      repo: REPO,
      partSize: 100_000,
    })
    expect(done).toEqual({ status: 'completed', digest, size: layer.length })

    // One token per method, reused across the three parts; aud is the bare hold DID and
    // exp is asked for explicitly, so tokens outlive the PDS's 60 s default.
    const now = Date.now() / 1000
    expect(tokens.asked.map((t) => t.lxm).sort()).toEqual([
      'io.atcr.hold.completeUpload',
      'io.atcr.hold.initiateUpload',
      'io.atcr.hold.uploadPart',
    ])
    for (const t of tokens.asked) {
      expect(t.aud).toBe(publicHold.did)
      expect(t.exp).toBeGreaterThan(now + 60)
    }
  })

  it('she notifies the hold of the manifest that names the layer', async () => {
    const res = await client.notifyManifest(publicHold.did, {
      repository: REPO,
      userDid: alice.did,
      manifestDigest: blobDigest(new TextEncoder().encode('manifest')),
      operation: 'push',
      manifest: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        layers: [{ digest, size: layer.length, mediaType: LAYER_TYPE }],
      },
    })
    expect(res).toMatchObject({
      success: true,
      operation: 'push',
      layersCreated: 1,
    })
  })

  it('a private hold refuses her until she joins its crew with requestCrew', async () => {
    const refused = await client
      .pushBlob(privateHold.did, layer, { did: alice.did, repo: REPO })
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(HoldError)
    expect((refused as HoldError).status).toBe(403)
    expect((refused as HoldError).message).toMatch(/crew/)

    expect(await client.requestCrew(privateHold.did)).toMatchObject({
      status: 'created',
    })
    const done = await client.pushBlob(privateHold.did, layer, {
      did: alice.did,
      repo: REPO,
    })
    expect(done.digest).toBe(digest)
  })

  it('she pulls from both holds with repo, and each hold counts', async () => {
    const bytes = await client.getBlob(publicHold.did, {
      did: alice.did,
      cid: digest,
      repo: REPO,
    })
    expect(Buffer.from(bytes).equals(Buffer.from(layer))).toBe(true)

    // The private hold answers the anonymous try with 401; the client asks again with a token.
    const signed = await client.getBlobUrl(privateHold.did, {
      did: alice.did,
      cid: digest,
      method: 'GET',
      repo: REPO,
    })
    const res = await fetch(signed.url)
    expect(res.status).toBe(200)
    expect(
      Buffer.from(await res.arrayBuffer()).equals(Buffer.from(layer)),
    ).toBe(true)

    for (const h of [publicHold, privateHold]) {
      expect(
        await client.getStats(h.did, { did: alice.did, repo: REPO }),
      ).toMatchObject({ pullCount: 1, pushCount: 1 })
    }
  })

  it('aggregated stats are the sum over both holds', async () => {
    const per = await Promise.all(
      [publicHold, privateHold].map((h) =>
        client.getStats(h.did, { did: alice.did, repo: REPO }),
      ),
    )
    const agg = await client.getAggregatedStats(alice.did, REPO, [
      publicHold.did,
      privateHold.did,
    ])
    expect(agg.failed).toEqual([])
    expect(agg.pullCount).toBe(per[0]!.pullCount + per[1]!.pullCount)
    expect(agg.pushCount).toBe(per[0]!.pushCount + per[1]!.pushCount)
    expect(agg.pullCount).toBe(2)
    const latest = per
      .map((s) => s.lastPull!)
      .sort()
      .at(-1)
    expect(agg.lastPull).toBe(latest)
  })

  it('a hold stopped mid-suite gives a partial result, not an error', async () => {
    await publicHold.stop()
    stopped.add(publicHold)
    const agg = await client.getAggregatedStats(
      alice.did,
      REPO,
      [publicHold.did, privateHold.did],
      { fresh: true },
    )
    expect(agg.failed).toEqual([publicHold.did])
    const down = agg.holds.find((h) => h.hold === publicHold.did)!
    expect(down.ok).toBe(false)
    expect(down.ok === false && down.error.error).toBe('NetworkError')
    const up = await client.getStats(privateHold.did, {
      did: alice.did,
      repo: REPO,
    })
    expect(agg.pullCount).toBe(up.pullCount)
    expect(agg.pushCount).toBe(up.pushCount)
  })
})
