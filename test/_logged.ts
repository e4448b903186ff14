import { pino } from 'pino'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import { identity, testPlcUrl } from './_identity.ts'
import { freePort, TEST_OWNER, type TestHold } from './_util.ts'

export type LogLine = { msg: string; level: number; [k: string]: unknown }

export type LoggedHold = TestHold & {
  /** Every log line of this start, debug and up. */
  logs: LogLine[]
  /** The commits this start made, from the single writer's log. */
  commits: () => LogLine[]
  warnings: () => string[]
}

/**
 * Starts the real hold in this process, like startHold, with a logger whose lines the test reads.
 * Owned by TEST_OWNER unless `env` sets HOLD_OWNER_DID (even to ''); without HOLD_PUBLIC_URL it
 * is did:web:localhost:<port>. The caller stops it (or lets `running` be stopped after each test).
 */
export const startLogged = async (
  dataDir: string,
  env: Record<string, string> = {},
  opts: { port?: number; running?: HoldServer[] } = {},
): Promise<LoggedHold> => {
  const port = opts.port ?? (await freePort())
  const owner = env.HOLD_OWNER_DID ?? TEST_OWNER
  if (owner) await identity(owner)
  const raw = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: String(port),
    HOLD_DATA_DIR: dataDir,
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_OWNER_DID: owner,
    ...env,
  })
  const logs: LogLine[] = []
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line)) },
  )
  const hold = await HoldServer.create(
    envToCfg(raw, 'test'),
    envToSecrets(raw),
    { logger },
  )
  opts.running?.push(hold)
  await hold.start()
  return {
    hold,
    url: `http://127.0.0.1:${port}`,
    did: hold.ctx.cfg.did,
    dataDir,
    port,
    stop: async () => {
      await hold.destroy()
      const i = opts.running?.indexOf(hold) ?? -1
      if (i >= 0) opts.running!.splice(i, 1)
    },
    logs,
    commits: () => logs.filter((l) => l.msg === 'committed'),
    warnings: () => logs.filter((l) => l.level === 40).map((l) => l.msg),
  }
}
