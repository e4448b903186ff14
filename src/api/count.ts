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
 * Whether caller may start counting a pair of did's without the new-pair limit: the pair's own
 * owner, and the hold's owner and crew, are trusted with their own repositories and the hold's.
 */
const related = (
  ctx: AppContext,
  callerDid: string | undefined,
  did: string,
): boolean =>
  callerDid !== undefined &&
  (callerDid === did ||
    callerDid === ctx.crew.captain.owner ||
    ctx.crew.member(callerDid) !== undefined)

/**
 * Counts a pull or a push for (did, repo), charged to the client for HOLD_STATS_MAX_PER_MINUTE,
 * and, when the pair has never been counted and the caller is not related to it, for
 * HOLD_NEW_PAIRS_PER_HOUR. A count over either limit is not taken; the call is served.
 * The client key is only worked out when a limit needs it (the socket address is a syscall);
 * whether the pair is new is answered from memory unless the pair was never seen.
 */
const count = (
  kind: 'countPull' | 'countPush',
  ctx: AppContext,
  c: Ctx,
  callerDid: string | undefined,
  did: string,
  repo: string,
): void | Promise<void> => {
  let client: string | undefined
  if (ctx.limiter.enabled) {
    client = clientKey(ctx, c, callerDid)
    if (!ctx.limiter.allow(client)) return
  }
  if (
    ctx.newPairs.enabled &&
    !ctx.counter.has(did, repo) &&
    !related(ctx, callerDid, did) &&
    !ctx.newPairs.take(client ?? clientKey(ctx, c, callerDid))
  ) {
    return
  }
  return ctx.counter[kind](did, repo)
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
