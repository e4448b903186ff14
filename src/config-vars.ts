/** Reading one environment variable: the parse helpers every part of the configuration uses. */

/** A configuration problem: the message names the variable and is meant to be shown as is. */
export class ConfigError extends Error {}

export const nonEmpty = (value: string | undefined): string | undefined => {
  const trimmed = value?.trim()
  return trimmed ? trimmed : undefined
}

export const parseIntVar = (
  name: string,
  raw: string | undefined,
  def: number,
  min: number,
  max: number,
): number => {
  const value = nonEmpty(raw)
  if (value === undefined) return def
  if (!/^\d+$/.test(value)) {
    throw new ConfigError(`${name} must be a whole number, got "${value}"`)
  }
  const n = Number(value)
  if (n < min || n > max) {
    throw new ConfigError(
      `${name} must be between ${min} and ${max}, got ${value}`,
    )
  }
  return n
}

export const parseBoolVar = (
  name: string,
  raw: string | undefined,
): boolean | undefined => {
  const value = nonEmpty(raw)?.toLowerCase()
  if (value === undefined) return undefined
  if (['true', '1', 'yes', 'on'].includes(value)) return true
  if (['false', '0', 'no', 'off'].includes(value)) return false
  throw new ConfigError(`${name} must be true or false, got "${raw}"`)
}

/** The one value two alternative variables give, with the name that gave it. */
export const oneOf = <N extends string>(
  ...vars: Array<[N, string | undefined]>
): [N, string] | [undefined, undefined] => {
  const set = vars
    .map(([name, raw]) => [name, nonEmpty(raw)] as const)
    .filter((v): v is readonly [N, string] => v[1] !== undefined)
  if (set.length > 1 && set.some(([, value]) => value !== set[0][1])) {
    throw new ConfigError(
      `${set.map(([name]) => name).join(' and ')} disagree (${set.map(([, v]) => `"${v}"`).join(' and ')}); set one of them`,
    )
  }
  return set.length > 0 ? [set[0][0], set[0][1]] : [undefined, undefined]
}

/** An http(s) origin, as S3 endpoints and CDNs are named. */
export const parseOrigin = (name: string, raw: string): string => {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(
      `${name} must be an absolute URL such as https://fly.storage.tigris.dev, got "${raw}"`,
    )
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`${name} must use http or https, got "${raw}"`)
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username) {
    throw new ConfigError(
      `${name} must be a bare origin with no path, query or credentials, got "${raw}"`,
    )
  }
  return url.origin
}
