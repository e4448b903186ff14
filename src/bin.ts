#!/usr/bin/env node
import { ConfigError, envToCfg, envToSecrets, readEnv } from './config.ts'
import { DataDirError } from './data-dir.ts'
import { RepoDamagedError, RepoIdentityError } from './repo/writer.ts'
import { HoldServer, packageVersion } from './server.ts'

const main = async (): Promise<void> => {
  let hold: HoldServer
  try {
    const env = readEnv()
    hold = await HoldServer.create(
      envToCfg(env, packageVersion()),
      envToSecrets(env),
    )
  } catch (err) {
    if (
      err instanceof ConfigError ||
      err instanceof RepoIdentityError ||
      err instanceof RepoDamagedError ||
      err instanceof DataDirError
    ) {
      console.error(`atcr-hold: ${err.message}`)
      process.exitCode = 1
      return
    }
    throw err
  }
  const stop = new AbortController()
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => stop.abort(signal))
  }
  stop.signal.addEventListener('abort', () => {
    hold.ctx.log.server.info({ signal: stop.signal.reason }, 'stopping')
    hold.destroy().then(
      () => {
        process.exitCode = 0
      },
      (err) => {
        hold.ctx.log.server.error({ err }, 'unclean stop')
        process.exitCode = 1
      },
    )
  })
  await hold.start()
}

await main()
