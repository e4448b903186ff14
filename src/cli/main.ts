#!/usr/bin/env node
import { enableCompileCache } from 'node:module'

// Compiled (and type-stripped) modules are cached in the OS temp dir across runs, so a command
// starts without compiling the CLI again. Set before the CLI's modules load.
enableCompileCache()
const { runCli } = await import('./cli.ts')

// A closed pipe (`atcr-hold stats list did:... | head`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
  })
}

const line =
  (stream: NodeJS.WriteStream) =>
  (text = '') =>
    void stream.write(`${text}\n`)

process.exitCode = await runCli(
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    out: line(process.stdout),
    err: line(process.stderr),
  },
  process.env,
)
