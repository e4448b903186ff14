import type { Redis } from 'ioredis'
import type { ClusterKeys } from '../cluster/redis.ts'
import { XRPCError } from '../errors.ts'
import {
  iso,
  latest,
  type PendingCounts,
  type StatsView,
} from './counter-row.ts'
import type { StreamSink } from './stream-sink.ts'

/**
 * getStats and listStats on a frontend: the writer's table as it publishes it to Redis (a hash
 * per DID, written after each applied batch), plus what this process counted that the writer
 * has not applied yet. A count taken here shows here at once; one taken on another frontend
 * shows once the writer has applied it (its batch window plus the writer's read, normally well
 * under a second while Redis and the writer are up).
 */
export class FrontendStats {
  private readonly redis: Redis
  private readonly keys: ClusterKeys
  private readonly sink: StreamSink

  constructor(redis: Redis, keys: ClusterKeys, sink: StreamSink) {
    this.redis = redis
    this.keys = keys
    this.sink = sink
  }

  async get(did: string, repository: string): Promise<StatsView> {
    const [view, seq] = await this.read<string>((m) =>
      m.hget(this.keys.view(did), repository),
    )
    const published = view ? (JSON.parse(view) as StatsView) : undefined
    return withUnapplied(
      published,
      this.sink.unapplied(did, repository, seq),
      did,
      repository,
    )
  }

  async list(
    did: string,
    limit: number,
    after = '',
  ): Promise<{ stats: StatsView[]; cursor?: string }> {
    const [all, seq] = await this.read<Record<string, string>>((m) =>
      m.hgetall(this.keys.view(did)),
    )
    const views = new Map<string, StatsView>()
    for (const [repository, json] of Object.entries(all ?? {})) {
      if (repository > after) {
        views.set(repository, JSON.parse(json) as StatsView)
      }
    }
    const repositories = new Set(views.keys())
    for (const r of this.sink.unappliedRepositories(did)) {
      if (r > after) repositories.add(r)
    }
    const sorted = [...repositories].sort()
    const page = sorted.slice(0, limit)
    return {
      stats: page.map((r) =>
        withUnapplied(views.get(r), this.sink.unapplied(did, r, seq), did, r),
      ),
      cursor:
        sorted.length > limit && page.length > 0
          ? page[page.length - 1]
          : undefined,
    }
  }

  /** One read and this process's applied sequence number, in one MULTI (so they agree). */
  private async read<T>(
    cmd: (m: ReturnType<Redis['multi']>) => ReturnType<Redis['multi']>,
  ): Promise<[T | null, number]> {
    let res: [Error | null, unknown][] | null
    try {
      res = await cmd(this.redis.multi())
        .hget(this.keys.producers, this.sink.producer)
        .exec()
    } catch {
      res = null
    }
    if (!res || res.some(([err]) => err)) {
      throw new XRPCError(
        503,
        'stats are read from Redis, which cannot be reached now; counting goes on',
        'StatsUnavailable',
        { headers: { 'retry-after': '1' } },
      )
    }
    const seq = Number(res[1][1] ?? 0)
    this.sink.applied(seq)
    return [res[0][1] as T | null, seq]
  }
}

const withUnapplied = (
  view: StatsView | undefined,
  extra: PendingCounts | undefined,
  did: string,
  repository: string,
): StatsView => {
  const out: StatsView = {
    did,
    repository,
    pullCount: (view?.pullCount ?? 0) + (extra?.pulls ?? 0),
    pushCount: (view?.pushCount ?? 0) + (extra?.pushes ?? 0),
  }
  const lastPull = latest(
    view?.lastPull,
    extra?.lastPull ? iso(extra.lastPull) : undefined,
  )
  const lastPush = latest(
    view?.lastPush,
    extra?.lastPush ? iso(extra.lastPush) : undefined,
  )
  if (lastPull) out.lastPull = lastPull
  if (lastPush) out.lastPush = lastPush
  return out
}
