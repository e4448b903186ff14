import { readFileSync } from 'node:fs'
import { ConfigError } from '../config.ts'

export type Tier = { name: string; quotaBytes: number; scanOnPush: boolean }

/** The operator's quota tiers (HOLD_QUOTAS_FILE) and the one new crew members get. */
export type TierConfig = { tiers: Map<string, Tier>; defaultTier: string }

const TIER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/
const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/**
 * Reads HOLD_QUOTAS_FILE: JSON, or YAML (the block-mapping subset a tiers file needs):
 *
 *   tiers:
 *     deckhand:
 *       quota: 5GB
 *     bosun: { ... } or `bosun: 50GB`
 *   defaults:
 *     new_crew_tier: deckhand
 *
 * Every problem is a ConfigError naming the variable, the file and the line where there is one.
 */
export const loadTiers = (path: string): TierConfig => {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(
      `HOLD_QUOTAS_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    )
  }
  const fail = (msg: string) =>
    new ConfigError(`HOLD_QUOTAS_FILE (${path}): ${msg}`)
  let doc: unknown
  if (/^\s*\{/.test(text)) {
    try {
      doc = JSON.parse(text)
    } catch (err) {
      throw fail(`not valid JSON: ${(err as Error).message}`)
    }
  } else {
    doc = parseYamlMap(text, fail)
  }
  return tiersFrom(doc, fail)
}

export const tiersFrom = (
  doc: unknown,
  fail: (msg: string) => Error,
): TierConfig => {
  if (!isMap(doc) || !isMap(doc.tiers)) {
    throw fail('needs a "tiers" mapping of tier name to quota')
  }
  const tiers = new Map<string, Tier>()
  for (const [name, value] of Object.entries(doc.tiers)) {
    if (!TIER_NAME_RE.test(name)) {
      throw fail(
        `tier name "${name}" must be 1-32 letters, digits, - or _, starting with a letter or digit`,
      )
    }
    const spec = isMap(value) ? value : { quota: value }
    tiers.set(name, {
      name,
      quotaBytes: parseSize(spec.quota, `tiers.${name}.quota`, fail),
      scanOnPush: parseFlag(spec.scanOnPush ?? spec.scan_on_push, name, fail),
    })
  }
  if (tiers.size === 0) throw fail('"tiers" names no tier')
  const defaults = isMap(doc.defaults) ? doc.defaults : {}
  const named = defaults.new_crew_tier ?? defaults.newCrewTier
  const defaultTier =
    named === undefined && tiers.size === 1 ? [...tiers.keys()][0] : named
  if (typeof defaultTier !== 'string' || !tiers.has(defaultTier)) {
    throw fail(
      `defaults.new_crew_tier must name one of the tiers (${[...tiers.keys()].join(', ')})`,
    )
  }
  return { tiers, defaultTier }
}

const parseSize = (
  raw: unknown,
  field: string,
  fail: (msg: string) => Error,
): number => {
  if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0) {
    return raw
  }
  const m =
    typeof raw === 'string'
      ? /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(raw)
      : null
  const bytes = m
    ? Math.round(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()])
    : NaN
  if (!Number.isSafeInteger(bytes)) {
    throw fail(
      `${field} must be bytes, or a size such as 5GB or 512MiB, got ${JSON.stringify(raw)}`,
    )
  }
  return bytes
}

const parseFlag = (
  raw: unknown,
  tier: string,
  fail: (msg: string) => Error,
): boolean => {
  if (raw === undefined) return false
  if (typeof raw === 'boolean') return raw
  throw fail(`tiers.${tier}.scanOnPush must be true or false`)
}

/** 5000000000 → "5 GB" (decimal units, as the quotas are usually written). */
export const formatBytes = (bytes: number): string => {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  const text = unit === 0 ? String(value) : String(Number(value.toFixed(2)))
  return `${text} ${units[unit]}`
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

type YamlMap = Record<string, unknown>

/**
 * Nested block mappings of scalars, indented with spaces, with comments; anything else (lists,
 * anchors, flow collections, multi-line strings) is refused with its line.
 */
export const parseYamlMap = (
  text: string,
  fail: (msg: string) => Error,
): YamlMap => {
  const root: YamlMap = {}
  // Open mappings, innermost last, with the indent of their keys (-1: not known yet).
  const stack: { indent: number; map: YamlMap }[] = [{ indent: 0, map: root }]
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const at = (msg: string) => fail(`line ${i + 1}: ${msg}`)
    const line = stripComment(lines[i])
    if (line.trim() === '' || line.trim() === '---') continue
    if (/^\s*\t/.test(line)) throw at('indent with spaces, not tabs')
    const indent = line.length - line.trimStart().length
    const m = /^([A-Za-z0-9_.-]+|"[^"]*"|'[^']*')\s*:(?:\s+(.*))?$/.exec(
      line.trim(),
    )
    if (!m) throw at('expected "key: value" or "key:"')
    const key = unquote(m[1])
    let top = stack[stack.length - 1]
    if (top.indent === -1) {
      const parent = stack[stack.length - 2]
      if (indent <= parent.indent) {
        throw at(`"${Object.keys(parent.map).at(-1)}" has no value`)
      }
      top.indent = indent
    }
    while (indent < top.indent) {
      stack.pop()
      top = stack[stack.length - 1]
    }
    if (indent !== top.indent) throw at('indentation does not match')
    if (Object.hasOwn(top.map, key)) throw at(`"${key}" is given twice`)
    const value = m[2]?.trim()
    if (value === undefined || value === '') {
      const child: YamlMap = {}
      top.map[key] = child
      stack.push({ indent: -1, map: child })
    } else {
      top.map[key] = scalar(value, at)
    }
  }
  const last = stack[stack.length - 1]
  if (stack.length > 1 && last.indent === -1) {
    throw fail(
      `"${Object.keys(stack[stack.length - 2].map).at(-1)}" has no value`,
    )
  }
  return root
}

const stripComment = (line: string): string => {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]
    if (quote) {
      if (ch === quote) quote = undefined
    } else if (ch === '"' || ch === "'") {
      quote = ch
    } else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]))) {
      return line.slice(0, i).trimEnd()
    }
  }
  return line.trimEnd()
}

const unquote = (s: string): string =>
  /^(["']).*\1$/.test(s) ? s.slice(1, -1) : s

const scalar = (raw: string, at: (msg: string) => Error): unknown => {
  if (/^["']/.test(raw)) {
    if (!/^(["']).*\1$/.test(raw)) throw at('unterminated quoted string')
    return raw.slice(1, -1)
  }
  if (/^[[{&*!|>-]/.test(raw)) {
    throw at(
      'only plain values are read here (no lists, flow mappings, anchors or block strings)',
    )
  }
  if (raw === 'true') return true
  if (raw === 'false') return false
  if (/^\d+$/.test(raw)) return Number(raw)
  return raw
}
