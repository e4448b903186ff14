import { createRequire } from 'node:module'
import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger }

/** Fields never written to a log, wherever they appear in the first two levels of an object. */
export const REDACTED_PATHS = [
  'authorization',
  'cookie',
  'password',
  'adminPassword',
  'token',
  'secret',
  'secrets',
  'signingKey',
  'signingKeyHex',
  'sig',
  '*.authorization',
  '*.cookie',
  '*.password',
  '*.token',
  '*.sig',
  'req.headers.authorization',
  'req.headers.cookie',
]

/** Query parameters whose values are credentials: the signed-URL signature and any token. */
const SECRET_PARAMS = /(&(?:sig|token|access_token|password|secret)=)[^&]*/gi

/** A query string (without `?`) as it may be logged: credentials replaced by `[redacted]`. */
export const redactQuery = (query: string): string =>
  `&${query}`.replace(SECRET_PARAMS, '$1[redacted]').slice(1)

export type LoggerOptions = {
  /** Human-readable lines through pino-pretty (when installed); default: stdout is a terminal. */
  pretty?: boolean
  /** Where lines go; default stdout. */
  destination?: DestinationStream
}

/**
 * The root logger: JSON lines (one object per line, for log shippers), or pino-pretty on a
 * terminal. pino-pretty is a dev dependency, so the production image always logs JSON.
 */
export const createRootLogger = (
  level: string,
  opts: LoggerOptions = {},
): Logger => {
  const options = {
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  }
  const pretty = opts.pretty ?? process.stdout.isTTY === true
  const prettyStream = pretty ? loadPretty(opts.destination) : undefined
  const destination = prettyStream ?? opts.destination
  return destination ? pino(options, destination) : pino(options)
}

type PrettyFactory = (opts: Record<string, unknown>) => DestinationStream

const loadPretty = (
  destination: DestinationStream | undefined,
): DestinationStream | undefined => {
  let factory: PrettyFactory
  try {
    const mod = createRequire(import.meta.url)('pino-pretty') as
      PrettyFactory | { default: PrettyFactory }
    factory = typeof mod === 'function' ? mod : mod.default
  } catch {
    return undefined
  }
  return factory({
    // Synchronous, like pino's own stdout, so the last lines before exit are not lost.
    sync: true,
    colorize: destination === undefined,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
    ...(destination ? { destination } : {}),
  })
}
