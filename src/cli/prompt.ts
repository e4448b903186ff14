import { createInterface } from 'node:readline/promises'
import type { Io } from './command.ts'
import { CliError, UsageError } from './errors.ts'

/** Asks yes/no on a terminal; without one, refuses and names the flag that skips the question. */
export const confirm = async (io: Io, question: string): Promise<void> => {
  if (!io.stdin.isTTY) {
    throw new UsageError(`${question} Not a terminal: add --yes to confirm`)
  }
  const rl = createInterface({ input: io.stdin, output: io.stderr })
  try {
    const answer = await rl.question(`${question} [y/N] `)
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('cancelled')
  } finally {
    rl.close()
  }
}
