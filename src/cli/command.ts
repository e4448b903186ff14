import { isValidDid } from '@atproto/syntax'
import { isValidRepository } from '../stats/rkey.ts'
import type { HoldClient } from './client.ts'
import { UsageError } from './errors.ts'

export type Io = {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  stdin: NodeJS.ReadableStream & { isTTY?: boolean }
  out: (line?: string) => void
  err: (line?: string) => void
}

export type OptionSpec = {
  type: 'string' | 'boolean'
  short?: string
  /** For --help: the value's name (strings) and what the option does. */
  value?: string
  description: string
  /** --no-<name> is accepted as false. */
  negatable?: boolean
}

export type RunArgs = {
  io: Io
  args: string[]
  opts: Record<string, string | boolean | undefined>
  /** Created on first use: commands that never call the hold work without HOLD_URL. */
  client: () => HoldClient
}

export type Command = {
  /** Words after `atcr-hold`, e.g. "stats get". */
  name: string
  /**
   * Positional arguments as shown in the usage line, e.g. "<did> [<repo>]": how many it takes,
   * and which are DIDs and repositories, is read from it (checkArgs).
   */
  args: string
  summary: string
  /** Paragraphs shown by --help after the usage line. */
  help?: string
  options?: Record<string, OptionSpec>
  /** Whether `--json` prints the answer as JSON instead of text. */
  json?: boolean
  run: (a: RunArgs) => Promise<void>
}

const NAME = /<([^>]+)>/g

/** Checks of positional arguments, by their name in the usage line. */
const ARG_CHECKS: Record<string, (value: string) => string | undefined> = {
  did: (v) => (isValidDid(v) ? undefined : `invalid DID "${v}"`),
  repo: (v) =>
    isValidRepository(v)
      ? undefined
      : `invalid repository "${v}": an OCI name (lowercase letters, digits, . _ - separators, components joined by /)`,
}

/**
 * Checks positional arguments against the command's usage line: one for each `<name>`, those in
 * `[...]` optional, and a `<did>` or `<repo>` by its syntax.
 */
export const checkArgs = (cmd: Command, args: string[]): void => {
  const all = [...cmd.args.matchAll(NAME)].map((m) => m[1])
  const required = [...cmd.args.replace(/\[[^\]]*\]/g, '').matchAll(NAME)]
  if (args.length < required.length || args.length > all.length) {
    throw new UsageError(
      `${cmd.name} takes ${cmd.args || 'no arguments'}, got ${args.length === 0 ? 'none' : args.map((a) => `"${a}"`).join(' ')}`,
    )
  }
  args.forEach((value, i) => {
    const problem = ARG_CHECKS[all[i]]?.(value)
    if (problem) throw new UsageError(problem)
  })
}

/** A command's options, `--json` last where it has it. */
export const optionsOf = (cmd: Command): Record<string, OptionSpec> =>
  cmd.json
    ? { ...cmd.options, json: { type: 'boolean', description: 'print JSON' } }
    : (cmd.options ?? {})
