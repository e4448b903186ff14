import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { HoldClient, readCliEnv } from './client.ts'
import { checkArgs, optionsOf, type Command, type Io } from './command.ts'
import { captainSet } from './commands/captain.ts'
import { crawl } from './commands/crawl.ts'
import { crewAdd, crewList, crewRemove } from './commands/crew.ts'
import { exportRepo } from './commands/export.ts'
import { statsExport, statsHistory, statsTrending } from './commands/history.ts'
import { importStats } from './commands/import-stats.ts'
import { keygen } from './commands/keygen.ts'
import { status } from './commands/status.ts'
import { statsGet, statsList, statsReset, statsTop } from './commands/stats.ts'
import { CliError, UsageError } from './errors.ts'

export const PROGRAM = 'atcr-hold'

export const COMMANDS: Command[] = [
  status,
  statsGet,
  statsList,
  statsTop,
  statsHistory,
  statsTrending,
  statsExport,
  statsReset,
  crewAdd,
  crewRemove,
  crewList,
  captainSet,
  crawl,
  exportRepo,
  importStats,
  keygen,
]

const ENVIRONMENT = [
  'Environment:',
  '  HOLD_URL             the running hold (default http://localhost:$HOLD_PORT)',
  '  HOLD_PORT            used by the default HOLD_URL (default 8080)',
  "  HOLD_ADMIN_PASSWORD  the hold's admin password, for commands marked (admin)",
]

const mainHelp = (): string =>
  [
    `Usage: ${PROGRAM} <command> [options]`,
    '',
    'Operates a running atcr-hold over HTTP (it never touches the data dir: the repo has one',
    'writer, the hold).',
    '',
    'Commands:',
    ...COMMANDS.map(
      (c) => `  ${`${c.name} ${c.args}`.trim().padEnd(30)} ${c.summary}`,
    ),
    '',
    ...ENVIRONMENT,
    '',
    `Run \`${PROGRAM} <command> --help\` for a command's options.`,
  ].join('\n')

const groupHelp = (group: string): string =>
  [
    `Usage: ${PROGRAM} ${group} <subcommand> ...`,
    '',
    'Subcommands:',
    ...COMMANDS.filter((c) => c.name.startsWith(`${group} `)).map(
      (c) => `  ${`${c.name} ${c.args}`.trim().padEnd(30)} ${c.summary}`,
    ),
  ].join('\n')

/** Fills paragraphs (separated by blank lines) to `width` columns. */
const wrap = (text: string, width = 88): string =>
  text
    .split(/\n\s*\n/)
    .map((para) => {
      const lines: string[] = []
      let line = ''
      for (const word of para.split(/\s+/).filter(Boolean)) {
        if (line && line.length + 1 + word.length > width) {
          lines.push(line)
          line = word
        } else line = line ? `${line} ${word}` : word
      }
      if (line) lines.push(line)
      return lines.join('\n')
    })
    .join('\n\n')

const optionLine = (flag: string, description: string): string =>
  flag.length > 28
    ? `  ${flag}\n  ${''.padEnd(28)} ${description}`
    : `  ${flag.padEnd(28)} ${description}`

const commandHelp = (cmd: Command): string => {
  const opts = Object.entries(optionsOf(cmd)).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` ${o.value}` : ''}`
    const neg = o.negatable ? `, --no-${name}` : ''
    return optionLine(flag + neg, o.description)
  })
  return [
    `Usage: ${PROGRAM} ${cmd.name}${cmd.args ? ` ${cmd.args}` : ''}${opts.length ? ' [options]' : ''}`,
    '',
    cmd.summary.charAt(0).toUpperCase() + cmd.summary.slice(1) + '.',
    ...(cmd.help ? ['', wrap(cmd.help)] : []),
    '',
    'Options:',
    ...opts,
    optionLine('-h, --help', 'show this help'),
    '',
    ...ENVIRONMENT,
  ].join('\n')
}

/** Finds the command named by the first one or two words. */
const findCommand = (
  argv: string[],
): { cmd?: Command; rest: string[]; group?: string } => {
  const two = argv.slice(0, 2).join(' ')
  const cmd2 = COMMANDS.find((c) => c.name === two)
  if (cmd2) return { cmd: cmd2, rest: argv.slice(2) }
  const cmd1 = COMMANDS.find((c) => c.name === argv[0])
  if (cmd1) return { cmd: cmd1, rest: argv.slice(1) }
  if (COMMANDS.some((c) => c.name.startsWith(`${argv[0]} `))) {
    return { rest: argv.slice(1), group: argv[0] }
  }
  return { rest: argv }
}

/** The command words of argv for a --help hint ("stats get "), or "" when unknown. */
const usageTopic = (argv: string[]): string => {
  const { cmd, group } = findCommand(argv)
  return cmd ? `${cmd.name} ` : group ? `${group} ` : ''
}

/** Runs the CLI; resolves to the exit code. Errors are one line on stderr. */
export const runCli = async (
  argv: string[],
  io: Io,
  env: NodeJS.ProcessEnv,
): Promise<number> => {
  try {
    if (argv.length === 0 || ['-h', '--help', 'help'].includes(argv[0])) {
      const topic = argv[0] === 'help' ? argv.slice(1) : []
      const found = topic.length ? findCommand(topic) : { rest: [] }
      if (found.cmd) io.out(commandHelp(found.cmd))
      else if (found.group) io.out(groupHelp(found.group))
      else io.out(mainHelp())
      return argv.length === 0 ? 2 : 0
    }
    const { cmd, rest, group } = findCommand(argv)
    if (!cmd) {
      if (group) {
        if (rest.length === 0 || rest[0] === '--help' || rest[0] === '-h') {
          io.out(groupHelp(group))
          return rest.length === 0 ? 2 : 0
        }
        throw new UsageError(`unknown command "${group} ${rest[0]}"`)
      }
      throw new UsageError(`unknown command "${argv[0]}"`)
    }
    const options: ParseArgsOptionsConfig = {
      help: { type: 'boolean', short: 'h' },
    }
    let allowNegative = false
    for (const [name, o] of Object.entries(optionsOf(cmd))) {
      options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}) }
      if (o.negatable) allowNegative = true
    }
    let parsed
    try {
      parsed = parseArgs({
        args: rest,
        options,
        allowPositionals: true,
        strict: true,
        allowNegative,
      })
    } catch (err) {
      // parseArgs goes on about positionals starting with '-'; its first sentence is the point.
      const first = (err as Error).message.split(/\.\s|\n/)[0]
      throw new UsageError(
        `${cmd.name}: ${first.charAt(0).toLowerCase()}${first.slice(1)}`,
      )
    }
    if (parsed.values.help) {
      io.out(commandHelp(cmd))
      return 0
    }
    // parseArgs accepts --no-x for every boolean once allowNegative is on; only negatable ones may.
    for (const arg of rest) {
      const m = /^--no-(.+)$/.exec(arg)
      if (m && !optionsOf(cmd)[m[1]]?.negatable) {
        throw new UsageError(`${cmd.name}: unknown option '${arg}'`)
      }
    }
    const args = parsed.positionals
    checkArgs(cmd, args)
    let client: HoldClient | undefined
    await cmd.run({
      io,
      args,
      opts: parsed.values as Record<string, string | boolean | undefined>,
      client: () => (client ??= new HoldClient(readCliEnv(env))),
    })
    return 0
  } catch (err) {
    if (err instanceof CliError) {
      const hint =
        err instanceof UsageError
          ? ` (see \`${PROGRAM} ${usageTopic(argv)}--help\`)`
          : ''
      io.err(`${PROGRAM}: ${err.message}${hint}`)
      return err.exitCode
    }
    io.err(`${PROGRAM}: unexpected error: ${(err as Error).message ?? err}`)
    return 1
  }
}
