import type { AppContext } from '../context.ts'
import type { Ctx } from './util.ts'

/**
 * The client a count is charged to for HOLD_STATS_MAX_PER_MINUTE: the caller's DID when
 * authenticated, else the client address (from HOLD_TRUSTED_PROXY_HEADER when configured,
 * since behind a proxy every socket is the proxy's).
 */
export const clientKey = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
): string => {
  if (callerDid) return callerDid
  const header = ctx.cfg.trustedProxyHeader
  if (header) {
    const value = c.req.header(header)?.split(',')[0].trim()
    if (value) return `ip:${value}`
  }
  return `ip:${c.env?.incoming?.socket?.remoteAddress ?? 'unknown'}`
}

export const countPull = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
): void | Promise<void> => {
  // The client key is only worked out when a limit is set (the socket address is a syscall).
  if (!ctx.limiter.enabled || ctx.limiter.allow(clientKey(ctx, c, callerDid))) {
    return ctx.counter.countPull(did, repo)
  }
}

export const countPush = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
): void | Promise<void> => {
  if (!ctx.limiter.enabled || ctx.limiter.allow(clientKey(ctx, c, callerDid))) {
    return ctx.counter.countPush(did, repo)
  }
}
