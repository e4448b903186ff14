import type { Redis } from 'ioredis'
import type { ClusterKeys } from './redis.ts'

/** Questions to Redis in flight at most; past that a pair is new unless this frontend knows it. */
const MAX_IN_FLIGHT = 256

/**
 * HOLD_ROLE=frontend: whether a pair this frontend has not counted is in the writer's table,
 * as the writer publishes it (`<prefix>:view:<did>`), so HOLD_NEW_PAIRS_PER_HOUR spends a
 * token only on pairs no machine has counted. One question per pair at a time; an answer
 * Redis cannot give is "no" (the frontend's own view, as before). What this frontend then
 * counts it remembers itself, so a pair is asked about about once per process.
 */
export class KnownPairs {
  private readonly redis: Redis
  private readonly keys: ClusterKeys
  private readonly asking = new Map<string, Promise<boolean>>()

  constructor(redis: Redis, keys: ClusterKeys) {
    this.redis = redis
    this.keys = keys
  }

  /** The writer's answer, or undefined: too many questions in flight to ask another. */
  known(did: string, repository: string): Promise<boolean> | undefined {
    const key = `${did}\n${repository}`
    const pending = this.asking.get(key)
    if (pending) return pending
    if (this.asking.size >= MAX_IN_FLIGHT) return undefined
    const asked = this.redis
      .hexists(this.keys.view(did), repository)
      .then(
        (n) => n === 1,
        () => false,
      )
      .finally(() => this.asking.delete(key))
    this.asking.set(key, asked)
    return asked
  }
}
