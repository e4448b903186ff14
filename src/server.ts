import { readFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import type { Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import { createApp } from './app.ts'
import type { App } from './api/util.ts'
import type { ServerConfig, ServerSecrets } from './config.ts'
import { AppContext, type AppContextOverrides } from './context.ts'
import { asDataDirError } from './data-dir.ts'
import type { Logger } from './logger.ts'
import { bootstrapRecords } from './repo/bootstrap.ts'

export const packageVersion = (): string =>
  (
    JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string }
  ).version

/** The hold: create (open data, bootstrap records), start (listen), destroy (drain, close). */
export class HoldServer {
  private server: Server | undefined
  /** Open connections, so a stop can close the ones that never sent a byte. */
  private readonly sockets = new Set<Socket>()
  /** How long in-flight requests may run after a stop begins. */
  drainGraceMs = 20_000
  private destroying: Promise<void> | undefined
  private sweeper: NodeJS.Timeout | undefined
  private sweeping: Promise<unknown> | undefined

  readonly ctx: AppContext
  readonly app: App

  private constructor(ctx: AppContext, app: App) {
    this.ctx = ctx
    this.app = app
  }

  static async create(
    cfg: ServerConfig,
    secrets: ServerSecrets,
    overrides?: AppContextOverrides,
  ): Promise<HoldServer> {
    const ctx = await AppContext.fromConfig(cfg, secrets, overrides)
    try {
      await asDataDirError(cfg.dataDir, () =>
        bootstrapRecords({
          cfg,
          reader: ctx.reader,
          writer: ctx.writer,
          log: ctx.logger.child({ name: 'hold:repo' }),
        }),
      )
    } catch (err) {
      await ctx.close()
      throw err
    }
    return new HoldServer(ctx, createApp(ctx))
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0
  }

  async start(): Promise<this> {
    const { cfg, stats } = this.ctx
    const logger = this.ctx.logger.child({ name: 'hold:server' })
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
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(cfg.port, cfg.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.ctx.db.startCheckpointer((err) =>
      logger.error(
        { err },
        'WAL checkpoint worker failed; SQLite checkpoints inline',
      ),
    )
    stats.start()
    this.startSweeper(logger)
    // The MST's nodes into memory in the background, so early flushes find their paths there.
    const warmStarted = performance.now()
    this.ctx.writer
      .warm({ stopped: () => this.destroying !== undefined })
      .then((nodes) =>
        logger.debug(
          {
            nodes,
            ms: Math.round(performance.now() - warmStarted),
            cacheMb: +(this.ctx.writer.nodes.usedBytes / 2 ** 20).toFixed(1),
          },
          'repo tree read into memory',
        ),
      )
      .catch((err) => logger.warn({ err }, 'reading the repo tree failed'))
    // Counters a crash left behind in the table reach the repo now, not at the first flush.
    stats
      .flush()
      .catch((err) =>
        logger.error({ err }, 'initial stats flush failed; will retry'),
      )
    logger.info(
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

  /**
   * Aborts multipart uploads older than HOLD_UPLOAD_TTL_HOURS, and what crashed uploads left in
   * the store: at start, then every quarter of the TTL (at most every 15 minutes).
   */
  private startSweeper(logger: Logger): void {
    const sweep = () => {
      if (this.sweeping || this.destroying) return
      this.sweeping = this.ctx.uploads
        .sweep()
        .catch((err) => logger.warn({ err }, 'upload sweep failed; will retry'))
        .finally(() => (this.sweeping = undefined))
    }
    sweep()
    this.sweeper = setInterval(
      sweep,
      Math.min(this.ctx.cfg.uploadTtlMs / 4, 15 * 60 * 1000),
    )
    this.sweeper.unref()
  }

  /** Stops accepting, lets in-flight requests finish, drains every count, closes the database. */
  destroy(): Promise<void> {
    this.destroying ??= this.destroyNow()
    return this.destroying
  }

  private async destroyNow(): Promise<void> {
    const { stats, writer } = this.ctx
    const logger = this.ctx.logger.child({ name: 'hold:server' })
    const server = this.server
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
    clearInterval(this.sweeper)
    await this.sweeping
    let flushed
    try {
      flushed = await stats.stop()
      await writer.drain()
    } finally {
      await this.ctx.close()
    }
    logger.info(flushed, 'hold stopped')
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
