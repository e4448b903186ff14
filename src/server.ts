import { readFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import type { Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import { createApp, type Extend } from './app.ts'
import type { App } from './api/util.ts'
import { proxyUpgrades } from './cluster/route.ts'
import type { ServerConfig, ServerSecrets } from './config.ts'
import { AppContext, type AppContextOverrides } from './context.ts'
import { asDataDirError } from './data-dir.ts'
import { bootstrapRecords } from './repo/bootstrap.ts'

/** How long a starting frontend waits for the writer's access policy before it listens. */
const POLICY_WAIT_MS = 5000

export const packageVersion = (): string =>
  (
    JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string }
  ).version

/**
 * What a caller may change in a hold: the context's overrides (tests), and `extend`, which
 * installs middleware or routes before the hold's own routes, so a script can add behaviour
 * around them without the hold's types knowing (scripts/bench-server.ts adds one signed commit
 * per count this way).
 */
export type HoldOptions = AppContextOverrides & { extend?: Extend }

/** The hold: create (open data, bootstrap records), start (listen), destroy (drain, close). */
export class HoldServer {
  private server: Server | undefined
  /** Open connections, so a stop can close the ones that never sent a byte. */
  private readonly sockets = new Set<Socket>()
  /** How long in-flight requests may run after a stop begins. */
  drainGraceMs = 20_000
  private destroying: Promise<void> | undefined

  readonly ctx: AppContext
  readonly app: App

  private constructor(ctx: AppContext, app: App) {
    this.ctx = ctx
    this.app = app
  }

  static async create(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    opts: HoldOptions = {},
  ): Promise<HoldServer> {
    const { extend, ...overrides } = opts
    const ctx = await AppContext.fromConfig(cfg, secrets, overrides)
    try {
      await asDataDirError(cfg.dataDir, () =>
        bootstrapRecords({
          cfg,
          reader: ctx.reader,
          writer: ctx.writer,
          log: ctx.log.repo,
        }),
      )
    } catch (err) {
      await ctx.destroy().catch(() => undefined)
      throw err
    }
    return new HoldServer(ctx, createApp(ctx, extend))
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0
  }

  async start(): Promise<this> {
    const { cfg } = this.ctx
    const server = createAdaptorServer({ fetch: this.app.fetch }) as Server
    // Slow clients: headers must arrive within 30 s; a whole request may take as long as a
    // large layer upload needs, but a connection that moves no bytes for 2 minutes (a stalled
    // body, a reader that stopped reading) is closed, and an unfinished upload stores nothing.
    server.headersTimeout = 30_000
    server.requestTimeout = 0
    server.timeout = 120_000
    server.keepAliveTimeout = 65_000
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
    this.server = server
    // A frontend answers access questions from the writer's policy: wait a little for it.
    await this.ctx.cluster?.loadPolicy(POLICY_WAIT_MS)
    const writer = this.ctx.cluster?.cfg.writer
    if (this.ctx.cluster?.role !== 'frontend') this.ctx.firehose.attach(server)
    else if (writer?.via === 'proxy') proxyUpgrades(server, writer.url)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(cfg.port, cfg.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.ctx.start()
    this.ctx.log.server.info(
      {
        did: cfg.did,
        url: cfg.publicUrl,
        port: this.port,
        version: cfg.version,
      },
      'hold started',
    )
    return this
  }

  /** Stops accepting, lets in-flight requests finish, drains every count, closes the database. */
  destroy(): Promise<void> {
    this.destroying ??= this.destroyNow()
    return this.destroying
  }

  private async destroyNow(): Promise<void> {
    const logger = this.ctx.log.server
    const server = this.server
    this.ctx.crawlers.stop()
    // Upgraded sockets outlive server.close(): the subscribers go first, or the stop waits on them.
    await this.ctx.firehose.close()
    if (server) {
      const closed = new Promise<void>((resolve) =>
        server.close(() => resolve()),
      )
      // Node's closeIdleConnections() leaves a connection that has not sent a request yet (a
      // proxy's or browser's pre-opened one) as if it were busy, which held every stop for the
      // whole grace period: those are closed here. One that has sent part of a request is not
      // idle, and gets the grace period.
      const closeIdle = () => {
        server.closeIdleConnections()
        for (const socket of this.sockets) {
          if (socket.bytesRead === 0) socket.destroy()
        }
      }
      closeIdle()
      // A keep-alive connection busy at close() becomes idle when its response ends; close it
      // then, not after keepAliveTimeout (65 s), or a stop with requests in flight hangs.
      const sweep = setInterval(closeIdle, 50)
      // A client that never finishes (a stalled download or upload) must not hold the stop
      // past the platform's kill timeout: after the grace period its connection is cut, and an
      // unfinished upload stores nothing.
      const deadline = setTimeout(() => {
        logger.warn(
          { graceMs: this.drainGraceMs },
          'closing connections still open after the grace period',
        )
        server.closeAllConnections()
      }, this.drainGraceMs)
      await closed
      clearInterval(sweep)
      clearTimeout(deadline)
    }
    // Stats drain into the table and the repo, then the writer, the database, the data dir.
    const flushed = await this.ctx.destroy()
    logger.info(flushed ?? {}, 'hold stopped')
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
