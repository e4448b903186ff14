import { randomBytes } from 'node:crypto'
import { IdResolver } from '@atproto/identity'
import { Secp256k1Keypair } from '@atproto/crypto'
import { Firehose, type Event } from '@atproto/sync'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/lexicons.ts'
import { pathsOf, statsPuts } from './_evented-repo.ts'
import { startFirehose } from './_firehose.ts'
import { freePort, removeDir, startHold, tempDir, waitFor } from './_util.ts'

// Consumers nobody here wrote: @atproto/sync's Firehose, validating (every commit's signature
// against the key the hold's did.json publishes, every op against the commit's MST proof,
// every event against the lexicon), reads the real hold across captain, crew and stats
// changes, a key rotation and a restart.

const keyHex = () => randomBytes(32).toString('hex')

/** A validating Firehose from `cursor`, resuming where it left off when it reconnects. */
const consume = (port: number, cursor = 0) => {
  const events: Event[] = []
  const errors: Error[] = []
  let last = cursor
  const firehose = new Firehose({
    service: `ws://localhost:${port}`,
    // The default fetch refuses http: and loopback; a did:web on localhost needs a plain one.
    idResolver: new IdResolver({ fetch: globalThis.fetch }),
    getCursor: () => last,
    handleEvent: (evt) => {
      events.push(evt)
      last = Math.max(last, evt.seq)
    },
    onError: (err) => errors.push(err),
    subscriptionReconnectDelay: 100,
  })
  void firehose.start()
  const count = (kind: Event['event']) =>
    events.filter((e) => e.event === kind).length
  const ops = () => count('create') + count('update') + count('delete')
  return { firehose, events, errors, count, ops }
}

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

describe('a validating @atproto/sync Firehose', () => {
  it('consumes captain, crew and stats changes, a key rotation and a restart without an error', async () => {
    const dataDir = await tempDir()
    const port = await freePort()
    const env = { HOLD_STATS_FLUSH_MS: '3600000', HOLD_SIGNING_KEY: keyHex() }
    let h = await startHold({ dataDir, port, env })
    cleanup.push(async () => {
      await h.stop()
      await removeDir(dataDir)
    })
    const consumer = consume(port)
    cleanup.unshift(() => consumer.firehose.destroy())
    const w = () => h.hold.ctx.writer
    // The captain (and the owner's crew record) came from bootstrap; a crew member joins,
    // stats are created, updated and deleted.
    const crew = {
      collection: ids.HoldCrew,
      rkey: 'did:plc:crewmember00000000000001',
      record: {
        $type: ids.HoldCrew,
        member: 'did:plc:crewmember00000000000001',
        role: 'read',
        permissions: ['blob:read'],
        addedAt: new Date().toISOString(),
      },
    }
    await w().putRecords([crew])
    await w().putRecords(statsPuts(0, 200))
    await w().putRecords(statsPuts(0, 200, 2))
    await w().putRecords(statsPuts(200, 150))
    await w().deleteRecords(pathsOf([crew]))
    await w().deleteRecords(pathsOf(statsPuts(100, 120)))
    const before = 1 + 200 + 200 + 150 + 1 + 120
    await waitFor(() => consumer.ops() >= before + 1, 30_000)

    // The same data dir under a new key, after a restart.
    await h.stop()
    h = await startHold({
      dataDir,
      port,
      env: { ...env, HOLD_SIGNING_KEY: keyHex() },
    })
    await h.hold.ctx.writer.putRecords(statsPuts(400, 10))
    await waitFor(() => consumer.ops() >= before + 11, 30_000)

    expect(consumer.errors.map(String)).toEqual([])
    const { count } = consumer
    // Bootstrap's captain (and crew) creates, then ours.
    const bootCreates = count('create') - (1 + 200 + 150 + 10)
    expect(bootCreates).toBeGreaterThanOrEqual(1)
    expect(count('update')).toBe(200)
    expect(count('delete')).toBe(121)
    // A new repo: identity, account, sync; the new key: identity, sync.
    expect(count('identity')).toBe(2)
    expect(count('account')).toBe(1)
    expect(count('sync')).toBe(2)
    expect(consumer.events.slice(0, 3).map((e) => e.event)).toEqual([
      'identity',
      'account',
      'sync',
    ])
    const seqs = [...new Set(consumer.events.map((e) => e.seq))]
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    expect(seqs.at(-1)).toBe(h.hold.ctx.writer.sequencer.current())
  })

  it('reports commits signed by a key the DID does not publish (the check can fail)', async () => {
    const other = await Secp256k1Keypair.create()
    const host = await startFirehose({ publishKey: other.did() })
    cleanup.push(() => host.destroy())
    const consumer = consume(host.port)
    cleanup.unshift(() => consumer.firehose.destroy())
    await host.repo.put(statsPuts(0, 5))
    await waitFor(() => consumer.errors.length > 0, 20_000)
    expect(consumer.count('create')).toBe(0)
    expect(
      String((consumer.errors[0] as Error & { cause?: unknown }).cause),
    ).toMatch(/signature/i)
  })
})
