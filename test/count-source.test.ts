import { ids } from '../src/ids.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, envToCfg } from '../src/config.ts'
import {
  callAs,
  manifestBody,
  NOTIFY,
  pushLayers,
  type Layer,
} from './_appview.ts'
import { identity } from './_identity.ts'
import { startHold, TEST_OWNER, xrpc, type TestHold } from './_util.ts'

const STRANGER = 'did:plc:countsourcestranger0000000'

describe('HOLD_COUNT_SOURCE', () => {
  it('is blob by default, takes manifest, and refuses anything else naming the variable', () => {
    expect(envToCfg({}).countSource).toBe('blob')
    expect(envToCfg({ countSource: 'manifest' }).countSource).toBe('manifest')
    for (const bad of ['both', 'Blob', 'manifests']) {
      expect(() => envToCfg({ countSource: bad })).toThrow(ConfigError)
      expect(() => envToCfg({ countSource: bad })).toThrow(
        /^HOLD_COUNT_SOURCE must be "blob" .* or "manifest" .*, got/,
      )
    }
  })
})

describe('notifications refused under HOLD_COUNT_SOURCE=manifest', () => {
  let h: TestHold
  let layers: Layer[]

  beforeAll(async () => {
    await identity(STRANGER)
    h = await startHold({ env: { HOLD_COUNT_SOURCE: 'manifest' } })
    layers = await pushLayers(h.url, 2)
  })
  afterAll(() => h.stop())

  it('count nothing: another DID, an unknown operation, a bad digest, no token', async () => {
    const body = manifestBody(TEST_OWNER, layers, { repository: 'counted' })
    const refusals: [string | undefined, unknown, string][] = [
      [STRANGER, body, 'UserMismatch'],
      [TEST_OWNER, { ...body, operation: 'delete' }, 'InvalidOperation'],
      [
        TEST_OWNER,
        { ...body, operation: 'pull', manifestDigest: 'sha256:nope' },
        'InvalidRequest',
      ],
      [undefined, { ...body, operation: 'pull' }, 'AuthRequired'],
    ]
    for (const [as, b, error] of refusals) {
      const res = await callAs(h.url, NOTIFY, as, b)
      expect(res.body.error).toBe(error)
    }
    const stats = await xrpc(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'counted',
    })
    expect(stats.body).toMatchObject({ pullCount: 0, pushCount: 0 })
    const ok = await callAs(h.url, NOTIFY, TEST_OWNER, {
      ...body,
      operation: 'pull',
    })
    expect(ok.body.statsUpdated).toBe(true)
    const after = await xrpc(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'counted',
    })
    expect(after.body).toMatchObject({ pullCount: 1, pushCount: 0 })
  })
})
