import type { AppContext } from '../context.ts'
import { clientAddress } from './client-address.ts'
import type { Ctx } from './util.ts'

/**
 * The client a per-client limit charges: the caller's DID when authenticated, else the client
 * address (from HOLD_TRUSTED_PROXY_HEADER when configured, since behind a proxy every socket is
 * the proxy's).
 */
export const clientKey = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
): string => callerDid || clientAddress(ctx, c)

/**
 * Counts a pull or a push for (did, repo), charged to the client for HOLD_STATS_MAX_PER_MINUTE.
 * The client key is only worked out when a limit is set (the socket address is a syscall).
 */
const count = (
  kind: 'countPull' | 'countPush',
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
): void | Promise<void> => {
  if (!ctx.limiter.enabled || ctx.limiter.allow(clientKey(ctx, c, callerDid))) {
    return ctx.counter[kind](did, repo)
  }
}

export const countPull = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
) => count('countPull', ctx, c, callerDid, did, repo)

export const countPush = (
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
) => count('countPush', ctx, c, callerDid, did, repo)
