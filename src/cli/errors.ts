/** A failure to report as one line on stderr, with this exit code (1: failed, 2: usage). */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.exitCode = exitCode
  }
}

/** Wrong arguments: exit code 2, and the message points at --help. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2)
  }
}
