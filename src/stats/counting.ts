import {
  clientKey,
  type ClientRequest,
  type TrustedProxy,
} from '../auth/client-address.ts'
import type { CounterStore } from './counter-store.ts'
import type { CountLimiter, TokenBuckets } from './limiter.ts'

/** What counting needs of the hold (the AppContext has it). */
export type CountingContext = TrustedProxy & {
  stats: { counters: CounterStore }
  /** HOLD_STATS_MAX_PER_MINUTE */
  limiter: CountLimiter
  /** HOLD_NEW_PAIRS_PER_HOUR */
  newPairs: TokenBuckets
  /** The captain and crew (on a frontend, the writer's copy). */
  policy: { captain: { owner: string }; member(did: string): unknown }
  /** On a frontend: whether the writer's table has a pair this frontend never counted. */
  cluster?:
    | {
        knownPairs:
          | {
              known(did: string, repo: string): Promise<boolean> | undefined
            }
          | undefined
      }
    | undefined
}

/**
 * Whether caller may start counting a pair of did's without the new-pair limit: the pair's own
 * owner, and the hold's owner and crew, are trusted with their own repositories and the hold's.
 */
const related = (
  ctx: CountingContext,
  callerDid: string | undefined,
  did: string,
): boolean =>
  callerDid !== undefined &&
  (callerDid === did ||
    callerDid === ctx.policy.captain.owner ||
    ctx.policy.member(callerDid) !== undefined)

/**
 * Counts a pull or a push for (did, repo), charged to the client for HOLD_STATS_MAX_PER_MINUTE,
 * and, when the pair has never been counted and the caller is not related to it, for
 * HOLD_NEW_PAIRS_PER_HOUR. A count over either limit is not taken (false); the call is served.
 * The client key is only worked out when a limit needs it (the socket address is a syscall);
 * whether the pair is new is answered from memory unless the pair was never seen. A frontend
 * asks the writer's table (through Redis) about a pair it never counted, and counts once it
 * has the answer, without holding the call.
 */
const count = (
  kind: 'pull' | 'push',
  ctx: CountingContext,
  c: ClientRequest,
  callerDid: string | undefined,
  did: string,
  repo: string,
): boolean => {
  const { counters } = ctx.stats
  let client: string | undefined
  if (ctx.limiter.enabled) {
    client = clientKey(ctx, c, callerDid)
    if (!ctx.limiter.allow(client)) return false
  }
  if (
    ctx.newPairs.enabled &&
    !counters.has(did, repo) &&
    !related(ctx, callerDid, did)
  ) {
    const key = client ?? clientKey(ctx, c, callerDid)
    const asking = ctx.cluster?.knownPairs?.known(did, repo)
    if (asking) {
      const who = counters.clients ? key : undefined
      void asking.then((known) => {
        if (known || counters.has(did, repo) || ctx.newPairs.take(key)) {
          counters.count(kind, did, repo, undefined, who)
        }
      })
      return true
    }
    if (!ctx.newPairs.take(key)) return false
    client = key
  }
  // Unique clients per day: the caller's DID, or its address (hashed under the hold's key).
  const who = counters.clients
    ? (client ?? clientKey(ctx, c, callerDid))
    : undefined
  counters.count(kind, did, repo, undefined, who)
  return true
}

export const countPull = (
  ctx: CountingContext,
  c: ClientRequest,
  callerDid: string | undefined,
  did: string,
  repo: string,
): boolean => count('pull', ctx, c, callerDid, did, repo)

export const countPush = (
  ctx: CountingContext,
  c: ClientRequest,
  callerDid: string | undefined,
  did: string,
  repo: string,
): boolean => count('push', ctx, c, callerDid, did, repo)
