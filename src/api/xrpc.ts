import {
  Lexicons as LexiconSet,
  ValidationError,
  type LexiconDoc,
} from '@atproto/lexicon'
import { InvalidRequestError } from '../errors.ts'
import type { AtcrNsid, AtprotoNsid, Lexicons, Nsid } from '../lexicons.ts'
import { Params, readJsonBody, type App, type Ctx } from './util.ts'

type Reply = Response | Promise<Response>

export const xrpcPath = <N extends Nsid>(nsid: N): `/xrpc/${N}` =>
  `/xrpc/${nsid}`

type AtprotoRoute = (
  app: App,
  nsid: AtprotoNsid,
  handler: (c: Ctx) => Reply,
) => void

/**
 * A query of Bluesky's (com.atproto.*). The hold does not ship its lexicon: the handler reads
 * its parameters through Params, which refuses repeated ones, control characters and long
 * query strings. Registered as given, so getBlob pays nothing for the helper.
 */
export const atprotoQuery: AtprotoRoute = (app, nsid, handler) => {
  app.get(xrpcPath(nsid), handler)
}

/** A procedure of Bluesky's (com.atproto.*): the handler reads its own body, after auth. */
export const atprotoProcedure: AtprotoRoute = (app, nsid, handler) => {
  app.post(xrpcPath(nsid), handler)
}

/**
 * A query of ours (io.atcr.*): its parameters are read under Params' rules, decoded by the types
 * its lexicon gives them, and checked against that lexicon (required, limits, formats,
 * defaults) before the handler sees them.
 */
export const atcrQuery = <P extends object>(
  app: App,
  lexicons: Lexicons,
  nsid: AtcrNsid,
  handler: (c: Ctx, params: P) => Reply,
): void => {
  const read = paramsReader(lexicons, nsid, 'query')
  app.get(xrpcPath(nsid), (c) => handler(c, read(c) as P))
}

/** A procedure's `auth`, run before any body is read, and its handler, given what auth returned. */
type AtcrRoute<A, R = unknown> = {
  auth: (c: Ctx) => A | Promise<A>
  handler: (
    c: Ctx,
    req: { auth: A; params: Record<string, unknown> } & R,
  ) => Reply
}

/**
 * A procedure of ours (io.atcr.*): parameters as atcrQuery, then `auth` (before any body is
 * read), then the JSON body checked against the lexicon's input. A call without a body is
 * checked as `{}`.
 */
export const atcrProcedure = <A, I extends object>(
  app: App,
  lexicons: Lexicons,
  nsid: AtcrNsid,
  route: AtcrRoute<A, { input: I }>,
): void => {
  const read = paramsReader(lexicons, nsid, 'procedure')
  app.post(xrpcPath(nsid), async (c) => {
    const params = read(c)
    const auth = await route.auth(c)
    const body = hasBody(c) ? await readJsonBody(c) : {}
    const input = lexiconChecked(() =>
      lexicons.assertValidXrpcInput(nsid, body),
    ) as I
    return route.handler(c, { auth, params, input })
  })
}

/**
 * A procedure of ours whose input is not JSON (uploadPart's raw bytes): parameters as
 * atcrQuery, then `auth`, then the handler, which reads the body itself.
 */
export const atcrRawProcedure = <A>(
  app: App,
  lexicons: Lexicons,
  nsid: AtcrNsid,
  route: AtcrRoute<A>,
): void => {
  const def = lexicons.getDefOrThrow(nsid, ['procedure'])
  if (def.input?.encoding === 'application/json') {
    throw new Error(
      `${nsid}: its input is JSON; register it with atcrProcedure`,
    )
  }
  const read = paramsReader(lexicons, nsid, 'procedure')
  app.post(xrpcPath(nsid), async (c) => {
    const params = read(c)
    const auth = await route.auth(c)
    return route.handler(c, { auth, params })
  })
}

type ParamType = 'string' | 'integer' | 'boolean'

const paramsReader = (
  lexicons: Lexicons,
  nsid: AtcrNsid,
  type: 'query' | 'procedure',
): ((c: Ctx) => Record<string, unknown>) => {
  const def = lexicons.getDefOrThrow(nsid, [type])
  const props = Object.entries(def.parameters?.properties ?? {}).map(
    ([name, prop]): [string, ParamType] => {
      if (
        prop.type !== 'string' &&
        prop.type !== 'integer' &&
        prop.type !== 'boolean'
      ) {
        throw new Error(
          `${nsid}: parameter ${name} is of type ${prop.type}, which routes do not decode`,
        )
      }
      return [name, prop.type]
    },
  )
  const check = paramsCheck(lexicons, nsid, type)
  return (c) => {
    const params = new Params(c)
    const value: Record<string, unknown> = {}
    for (const [name, type] of props) {
      // Empty is absent, as for every parameter the hold reads.
      const v =
        type === 'integer'
          ? params.integer(name)
          : type === 'boolean'
            ? params.boolean(name)
            : params.string(name) || undefined
      if (v !== undefined) value[name] = v
    }
    return lexiconChecked(() => check(value))
  }
}

/**
 * Checks a call's parameters against the lexicon of `nsid`, as its `assertValidXrpcParams`
 * does (same checks, defaults and messages; throws its ValidationError), and returns them with
 * the defaults applied. The reference validator checks every parameter a lexicon declares, and
 * for each optional one left out builds a ValidationError (an Error, with its stack trace) that
 * it then drops: little in the compiled hold, about a third of getStats from the TypeScript
 * sources (as `npm start` runs it; BENCHMARKS.md). So each set of parameters given
 * is checked against the lexicon cut down to those, the required ones and those with a default
 * (one cut per set, made at its first call).
 */
export const paramsCheck = (
  lexicons: Lexicons,
  nsid: AtcrNsid,
  type: 'query' | 'procedure',
): ((value: Record<string, unknown>) => Record<string, unknown>) => {
  const def = lexicons.getDefOrThrow(nsid, [type])
  const names = Object.keys(def.parameters?.properties ?? {})
  if (names.length > 30) {
    throw new Error(`${nsid}: more parameters than a cut's key can name`)
  }
  const cuts = new Map<number, LexiconSet>()
  return (value) => {
    let given = 0
    for (let i = 0; i < names.length; i++) {
      if (value[names[i]] !== undefined) given |= 1 << i
    }
    let cut = cuts.get(given)
    if (!cut) {
      cut = paramsCut(nsid, type, def, given)
      cuts.set(given, cut)
    }
    return (cut.assertValidXrpcParams(nsid, value) ?? value) as Record<
      string,
      unknown
    >
  }
}

/** A lexicon set of one: `nsid` with only the parameters `given` names, required or defaulted. */
const paramsCut = (
  nsid: AtcrNsid,
  type: 'query' | 'procedure',
  def: { parameters?: { properties?: object; required?: string[] } },
  given: number,
): LexiconSet => {
  const required = new Set(def.parameters?.required ?? [])
  const properties = Object.fromEntries(
    Object.entries(def.parameters?.properties ?? {}).filter(
      ([name, prop], i) =>
        (given & (1 << i)) !== 0 ||
        required.has(name) ||
        (prop as { default?: unknown }).default !== undefined,
    ),
  )
  return new LexiconSet([
    {
      lexicon: 1,
      id: nsid,
      defs: {
        main: {
          type,
          parameters: { ...def.parameters, type: 'params', properties },
        },
      },
    } as LexiconDoc,
  ])
}

/** A lexicon's refusal is the caller's error: 400 InvalidRequest with the validator's message. */
const lexiconChecked = <T>(check: () => T): T => {
  try {
    return check()
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new InvalidRequestError(err.message)
    }
    throw err
  }
}

/** A chunked body has no content-length, and is still a body. */
const hasBody = (c: Ctx): boolean => {
  const length = c.req.header('content-length')
  return length === undefined
    ? c.req.header('transfer-encoding') !== undefined
    : Number(length) > 0
}
