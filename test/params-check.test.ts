import { describe, expect, it } from 'vitest'
import { paramsCheck } from '../src/api/xrpc.ts'
import {
  ids,
  loadLexiconDocs,
  loadLexicons,
  type AtcrNsid,
} from '../src/lexicons.ts'

type Prop = {
  type: string
  default?: unknown
  minimum?: number
  maximum?: number
  maxLength?: number
  enum?: string[]
  knownValues?: string[]
}
type Route = {
  nsid: AtcrNsid
  type: 'query' | 'procedure'
  properties: Record<string, Prop>
}

const lexicons = loadLexicons()
const routes: Route[] = loadLexiconDocs().flatMap((doc) => {
  const main = doc.defs.main as
    | { type: string; parameters?: { properties?: Record<string, Prop> } }
    | undefined
  if (
    !doc.id.startsWith('io.atcr.') ||
    (main?.type !== 'query' && main?.type !== 'procedure') ||
    !main.parameters?.properties
  ) {
    return []
  }
  return [
    {
      nsid: doc.id as AtcrNsid,
      type: main.type,
      properties: main.parameters.properties,
    },
  ]
})

/** Values a call might give a parameter: good ones, and ones each kind of check refuses. */
const candidates = (prop: Prop): unknown[] => {
  if (prop.type === 'integer') {
    return [
      0,
      1,
      25,
      -7,
      10 ** 9,
      ...(prop.minimum !== undefined ? [prop.minimum, prop.minimum - 1] : []),
      ...(prop.maximum !== undefined ? [prop.maximum, prop.maximum + 1] : []),
      'seven',
    ]
  }
  if (prop.type === 'boolean') return [true, false, 'yes']
  return [
    'x',
    'did:plc:ewvi7nxzyoun6zhxrhs64oiz',
    'did:web:hold.example.com',
    'not a did',
    'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
    'sha256:' + 'ab'.repeat(32),
    '2026-11-30T12:00:00.000Z',
    'alice/app',
    'latest',
    'a'.repeat((prop.maxLength ?? 2000) + 1),
    7,
    ...(prop.enum ?? []),
    ...(prop.knownValues ?? []),
  ]
}

/** A small deterministic generator, so a failure names a case that comes back. */
const rng = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed / 2 ** 31
}

type Outcome = { ok: Record<string, unknown> } | { error: string }
const outcome = (run: () => unknown): Outcome => {
  try {
    return { ok: { ...(run() as Record<string, unknown>) } }
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` }
  }
}

describe('parameter checks against a cut of the lexicon', () => {
  it('cover the routes with parameters, the stats queries among them', () => {
    expect(routes.map((r) => r.nsid)).toEqual(
      expect.arrayContaining([ids.HoldGetStats, ids.HoldListStats]),
    )
  })

  it('answer as the reference validator does for every io.atcr route: values, defaults, refusals and their messages', () => {
    const random = rng(17)
    let refused = 0
    let passed = 0
    let cases = 0
    for (const route of routes) {
      const check = paramsCheck(lexicons, route.nsid, route.type)
      const names = Object.keys(route.properties)
      const sets: Record<string, unknown>[] = [{}]
      // Each parameter alone with each of its candidates, then random mixes (absent included).
      for (const name of names) {
        for (const v of candidates(route.properties[name])) {
          sets.push({ [name]: v })
        }
      }
      for (let k = 0; k < 200; k++) {
        const value: Record<string, unknown> = {}
        for (const name of names) {
          const options = candidates(route.properties[name])
          const pick = Math.floor(random() * (options.length + 2))
          if (pick < options.length) value[name] = options[pick]
        }
        sets.push(value)
      }
      for (const value of sets) {
        const expected = outcome(() =>
          lexicons.assertValidXrpcParams(route.nsid, { ...value }),
        )
        const got = outcome(() => check({ ...value }))
        expect(got, `${route.nsid} ${JSON.stringify(value)}`).toEqual(expected)
        cases++
        if ('error' in expected) refused++
        else passed++
      }
    }
    // Both ways were exercised, on every route's parameters.
    expect(cases).toBeGreaterThan(routes.length * 200)
    expect(routes.length).toBeGreaterThan(1)
    expect(refused).toBeGreaterThan(cases / 10)
    expect(passed).toBeGreaterThan(cases / 10)
  })

  it('apply defaults the call left out', () => {
    const route = routes.find((r) =>
      Object.values(r.properties).some((p) => p.default !== undefined),
    )!
    const [name, prop] = Object.entries(route.properties).find(
      ([, p]) => p.default !== undefined,
    )!
    const check = paramsCheck(lexicons, route.nsid, route.type)
    const required = Object.fromEntries(
      (
        (
          lexicons.getDefOrThrow(route.nsid) as {
            parameters?: { required?: string[] }
          }
        ).parameters?.required ?? []
      ).map((r) => [r, 'did:plc:ewvi7nxzyoun6zhxrhs64oiz']),
    )
    expect(check(required)[name]).toEqual(prop.default)
  })
})
