import { spawn } from 'node:child_process'
import { PassThrough } from 'node:stream'
import { runCli as runCliInProcess } from '../src/cli/cli.ts'
import { ROOT } from './_util.ts'

export type CliResult = { code: number | null; stdout: string; stderr: string }

/**
 * Runs the operator CLI (`node src/cli/main.ts`, what `npm run hold --` runs) as a child process
 * with only the given environment. Asynchronous, so a hold in this process keeps serving it.
 */
export const runCli = (
  args: string[],
  env: Record<string, string | undefined> = {},
  opts: { input?: string } = {},
): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d) => (stdout += d))
    proc.stderr.on('data', (d) => (stderr += d))
    proc.once('error', reject)
    proc.once('close', (code) => resolve({ code, stdout, stderr }))
    proc.stdin.end(opts.input ?? '')
  })

/** A CLI bound to one hold and password; `env` adds or overrides variables per call. */
export const cliFor =
  (url: string, password: string | undefined) =>
  (args: string[], env: Record<string, string | undefined> = {}) =>
    runCli(args, { HOLD_URL: url, HOLD_ADMIN_PASSWORD: password, ...env })

/** The lines of a stream's output, without the final empty one. */
export const lines = (text: string): string[] =>
  text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1)

/**
 * Runs the CLI's entry function in this process with captured output: the same code as the
 * binary minus process start-up, for checks of arguments and help that need no hold.
 */
export const callCli = async (
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<CliResult> => {
  let stdout = ''
  let stderr = ''
  const sink = (append: (text: string) => void) => {
    const stream = new PassThrough()
    stream.on('data', (d) => append(String(d)))
    return stream
  }
  const code = await runCliInProcess(
    args,
    {
      stdout: sink((t) => (stdout += t)),
      stderr: sink((t) => (stderr += t)),
      stdin: new PassThrough(),
      out: (line = '') => void (stdout += `${line}\n`),
      err: (line = '') => void (stderr += `${line}\n`),
    },
    env,
  )
  return { code, stdout, stderr }
}
