import type { HoldClient } from './client.ts'

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
  /** Positional arguments as shown in the usage line, e.g. "<did> [<repo>]". */
  args: string
  minArgs: number
  maxArgs: number
  summary: string
  /** Paragraphs shown by --help after the usage line. */
  help?: string
  options?: Record<string, OptionSpec>
  run: (a: RunArgs) => Promise<void>
}
