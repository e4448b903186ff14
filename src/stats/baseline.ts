import { isValidDid } from '@atproto/syntax'
import { XRPCError } from '../errors.ts'
import type { StatsView } from './counter-row.ts'
import {
  isValidRepository,
  MAX_REPOSITORY_LENGTH,
  parseRepoParam,
} from './rkey.ts'

/**
 * Counts imported from elsewhere (the AppView's `repository_stats`) for one (DID, repository):
 * added to what the hold counts itself. Timestamps are ISO 8601 with milliseconds and `Z`.
 */
export type Baseline = StatsView

export type BaselineCheck =
  { ok: true; baseline: Baseline } | { ok: false; reason: string }

/** Timestamps more than this far in the future are refused: they would win every max(). */
const FUTURE_SLACK_MS = 24 * 3600 * 1000

// RFC 3339 (Go's RFC3339Nano), and what Go's SQLite drivers write ('2025-01-15
// 10:00:00.123456789+00:00', also without fraction or zone), and time.Time.String():
// '... +0000 UTC', a zone without a name written as its offset ('+0300 +03'), and the monotonic
// clock reading it adds (' m=+0.000123456'), which says nothing about the wall time. No zone
// means UTC, as SQLite's CURRENT_TIMESTAMP writes it.
const TIMESTAMP_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?: ?([Zz]|[+-]\d{2}(?::?\d{2})?)(?: (?:[A-Z]{2,5}|[+-]\d{2}(?:\d{2})?))?)?(?: m=[+-]\d+\.\d{1,9})?$/

/**
 * A timestamp as ISO 8601 with milliseconds and Z (fractions past the millisecond are cut, not
 * rounded); `undefined` for none (null, empty, Go's zero time); an Error saying why otherwise.
 */
export const normalizeTimestamp = (
  raw: unknown,
  now = Date.now(),
): string | undefined | Error => {
  if (raw === null || raw === undefined || raw === '') return undefined
  if (typeof raw !== 'string') {
    return new Error(`is not a timestamp string: ${show(raw)}`)
  }
  const m = TIMESTAMP_RE.exec(raw.trim())
  if (!m) {
    return new Error(
      `is not an RFC 3339 or SQLite timestamp: ${show(raw)} (expected e.g. 2025-01-15T10:00:00Z or 2025-01-15 10:00:00.123+00:00)`,
    )
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(
    Number,
  )
  const ms = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3))
  // Go writes an unset time.Time as its zero value.
  if (y === 1 && mo === 1 && d === 1 && h === 0 && mi === 0 && s === 0) {
    return undefined
  }
  let offsetMin = 0
  const zone = m[8]
  if (zone && zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '')
    const oh = Number(digits.slice(0, 2))
    const om = Number(digits.slice(2) || '0')
    if (oh > 23 || om > 59) return new Error(`has a bad offset: ${show(raw)}`)
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const date = new Date(0)
  date.setUTCFullYear(y, mo - 1, d)
  date.setUTCHours(h, mi, s, ms)
  if (
    date.getUTCFullYear() !== y ||
    date.getUTCMonth() !== mo - 1 ||
    date.getUTCDate() !== d ||
    h > 23 ||
    mi > 59 ||
    s > 59
  ) {
    return new Error(`is not a real date and time: ${show(raw)}`)
  }
  const t = date.getTime() - offsetMin * 60_000
  if (t < 0) return new Error(`is before 1970: ${show(raw)}`)
  if (t > now + FUTURE_SLACK_MS) {
    return new Error(`is in the future: ${show(raw)}`)
  }
  return new Date(t).toISOString()
}

/** A count: a whole number >= 0 (digits in a string are fine); missing, null or empty is 0. */
export const parseCount = (raw: unknown): number | Error => {
  if (raw === null || raw === undefined || raw === '') return 0
  let n: number
  if (typeof raw === 'number') n = raw
  else if (typeof raw === 'bigint') {
    if (raw < 0n) return new Error(`is negative: ${raw}`)
    if (raw > BigInt(Number.MAX_SAFE_INTEGER)) {
      return new Error(`is too large: ${raw}`)
    }
    return Number(raw)
  } else if (typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw)) {
    n = Number(raw)
  } else return new Error(`is not a whole number: ${show(raw)}`)
  if (!Number.isInteger(n)) return new Error(`is not a whole number: ${n}`)
  if (n < 0) return new Error(`is negative: ${n}`)
  if (n > Number.MAX_SAFE_INTEGER) return new Error(`is too large: ${n}`)
  return n
}

/** Checks one row's fields (already named did, repository, pullCount, ...) and normalises them. */
export const checkBaseline = (
  fields: Record<keyof Baseline, unknown>,
  now = Date.now(),
): BaselineCheck => {
  const { did, repository } = fields
  if (typeof did !== 'string' || did === '') {
    return { ok: false, reason: 'did is missing' }
  }
  if (!isValidDid(did)) {
    return { ok: false, reason: `did is not a DID: ${show(did)}` }
  }
  if (typeof repository !== 'string' || repository === '') {
    return { ok: false, reason: 'repository is missing' }
  }
  if (repository.length > MAX_REPOSITORY_LENGTH) {
    return {
      ok: false,
      reason: `repository is longer than ${MAX_REPOSITORY_LENGTH} characters: ${show(repository)}`,
    }
  }
  if (!isValidRepository(repository)) {
    return {
      ok: false,
      reason: `repository is not an OCI repository name (lowercase letters and digits, separated by . _ - and /): ${show(repository)}`,
    }
  }
  try {
    parseRepoParam(did, repository)
  } catch (err) {
    if (!(err instanceof XRPCError)) throw err
    return { ok: false, reason: err.message }
  }
  const baseline: Baseline = { did, repository, pullCount: 0, pushCount: 0 }
  for (const [key, name] of [
    ['pullCount', 'pull_count'],
    ['pushCount', 'push_count'],
  ] as const) {
    const n = parseCount(fields[key])
    if (n instanceof Error) return { ok: false, reason: `${name} ${n.message}` }
    baseline[key] = n
  }
  for (const [key, name] of [
    ['lastPull', 'last_pull'],
    ['lastPush', 'last_push'],
  ] as const) {
    const t = normalizeTimestamp(fields[key], now)
    if (t instanceof Error) return { ok: false, reason: `${name} ${t.message}` }
    if (t !== undefined) baseline[key] = t
  }
  return { ok: true, baseline }
}

/** A value for a message: strings quoted, long ones cut. */
const show = (value: unknown): string => {
  if (typeof value === 'bigint') return String(value)
  if (typeof value !== 'string') return String(JSON.stringify(value) ?? value)
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
}
