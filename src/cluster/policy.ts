import type { Redis } from 'ioredis'
import type { Captain, CrewMember, CrewSource } from '../auth/crew.ts'
import { XRPCError } from '../errors.ts'
import { ids } from '../ids.ts'
import type { Logger } from '../logger.ts'
import type { Tier, TierConfig } from '../quota/tiers.ts'
import type { RepoWriter } from '../repo/writer.ts'
import type { ClusterKeys } from './redis.ts'

/**
 * What access needs, as the writer publishes it for frontends: the captain, the crew with
 * their permissions and tiers, the blobs only private manifests name, and the quota tiers.
 * Frontends decide with the same functions as the writer (HoldAccess, Quotas, the private-blob
 * check), over this copy instead of the writer's database.
 */
export type PolicyBody = {
  format: 1
  captain: Captain
  crew: { member: string; permissions: string[]; tier?: string }[]
  privateHex: string[]
  tiers: { defaultTier: string; tiers: Tier[] } | null
}

/** How often a frontend asks Redis whether its copy is still the writer's latest. */
export const POLICY_POLL_MS = 1000
/** A frontend whose copy Redis has not confirmed for this long refuses what needs the crew. */
export const POLICY_MAX_AGE_MS = 10_000
/** How often the writer tries again to publish after Redis failed it. */
const PUBLISH_RETRY_MS = 1000

/** A crew, tier or private-blob decision a frontend cannot make now (503, never a guess). */
export class PolicyUnavailableError extends XRPCError {
  constructor(message: string) {
    super(503, message, 'PolicyUnavailable', {
      headers: { 'retry-after': '1' },
    })
  }
}

const noCopy = () =>
  new PolicyUnavailableError(
    'this frontend has no copy of the access policy from the hold writer yet (Redis or the writer is not reachable); try again shortly',
  )

/** Where the writer's layers report changes (LayerService), for quota usage. */
export type LayerChanges = {
  onChange(listener: (userDid: string, digests: string[]) => void): void
}

/**
 * HOLD_ROLE=writer: writes the policy body to Redis whenever the crew, the captain, a blob's
 * visibility or a crew member's usage changes, and at start. The body and a version are one
 * hash written in one MULTI, with each crew member's stored bytes in the usage hash, and a
 * message on the policy channel tells frontends to read it at once. A failed write is tried
 * again every second until Redis takes it.
 */
export class PolicyPublisher {
  private readonly redis: Redis
  private readonly keys: ClusterKeys
  private readonly crew: CrewSource & { members(): CrewMember[] }
  private readonly privateHex: () => Iterable<string>
  private readonly tiers: TierConfig | undefined
  private readonly usage: (did: string) => number
  private readonly log: Logger
  /** Digests now charged in records, by user: their reservations are dropped. */
  private charged = new Map<string, Set<string>>()
  private lastBody: string | undefined
  private scheduled = false
  private running: Promise<void> | undefined
  private retry: NodeJS.Timeout | undefined
  private stopped = false
  private failing = false

  constructor(opts: {
    redis: Redis
    keys: ClusterKeys
    crew: CrewSource & { members(): CrewMember[] }
    privateHex: () => Iterable<string>
    tiers: TierConfig | undefined
    usage: (did: string) => number
    writer: RepoWriter
    layers: LayerChanges
    log: Logger
  }) {
    this.redis = opts.redis
    this.keys = opts.keys
    this.crew = opts.crew
    this.privateHex = opts.privateHex
    this.tiers = opts.tiers
    this.usage = opts.usage
    this.log = opts.log
    opts.writer.onCommit(({ ops }) => {
      if (
        ops.some(
          (op) =>
            op.collection === ids.HoldCrew || op.collection === ids.HoldCaptain,
        )
      ) {
        this.schedule()
      }
    })
    opts.layers.onChange((userDid, digests) => {
      let set = this.charged.get(userDid)
      if (!set) this.charged.set(userDid, (set = new Set()))
      for (const d of digests) set.add(d.slice('sha256:'.length))
      this.schedule()
    })
    // Redis back after an outage: all of it again (Redis may have come back empty).
    this.redis.on('ready', () => {
      this.lastBody = undefined
      this.schedule()
    })
  }

  start(): void {
    this.schedule()
  }

  /** Waits for a publish under way; publishes nothing more. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.retry)
    await this.running
  }

  /** Publishes on a later turn: the commits of one burst go out as one body. */
  private schedule(): void {
    if (this.scheduled || this.stopped) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (this.running) {
        void this.running.then(() => this.schedule())
        return
      }
      this.running = this.publish().finally(() => (this.running = undefined))
    })
  }

  private async publish(): Promise<void> {
    clearTimeout(this.retry)
    const charged = this.charged
    this.charged = new Map()
    try {
      const members = this.crew.members()
      const body = JSON.stringify({
        format: 1,
        captain: this.crew.captain,
        crew: members.map((m) => ({
          member: m.member,
          permissions: [...m.permissions].sort(),
          ...(m.tier !== undefined ? { tier: m.tier } : {}),
        })),
        privateHex: [...this.privateHex()].sort(),
        tiers: this.tiers
          ? {
              defaultTier: this.tiers.defaultTier,
              tiers: [...this.tiers.tiers.values()],
            }
          : null,
      } satisfies PolicyBody)
      const k = this.keys
      const multi = this.redis.multi()
      const usage: string[] = []
      for (const m of members) {
        usage.push(m.member, String(this.usage(m.member)))
      }
      if (usage.length > 0) multi.hset(k.usage, ...usage)
      for (const [did, hexes] of charged) {
        multi.hdel(k.reserved(did), ...hexes)
      }
      if (body !== this.lastBody) {
        multi.hincrby(k.policy, 'version', 1)
        multi.hset(k.policy, 'body', body)
        multi.publish(k.policyChannel, 'changed')
      }
      await multi.exec()
      this.lastBody = body
      if (this.failing) this.log.info('access policy published to Redis again')
      this.failing = false
    } catch (err) {
      // Kept for the next try, merged with what changed since.
      for (const [did, hexes] of charged) {
        const set = this.charged.get(did) ?? new Set()
        for (const h of hexes) set.add(h)
        this.charged.set(did, set)
      }
      if (!this.failing) {
        this.log.warn(
          { err: (err as Error).message },
          'publishing the access policy to Redis failed; trying again every second',
        )
      }
      this.failing = true
      if (!this.stopped) {
        this.retry = setTimeout(() => this.schedule(), PUBLISH_RETRY_MS)
        this.retry.unref()
      }
    }
  }
}

/**
 * HOLD_ROLE=frontend: the writer's policy in memory, answering access questions as the
 * writer's CrewIndex and BlobVisibility do. It reads the body at start, again on each message
 * on the policy channel, and asks Redis for the version every second. Until it has a copy it
 * answers nothing (503); once Redis has not confirmed its copy for POLICY_MAX_AGE_MS, it still
 * serves public blobs and the owner (the captain comes from the writer's configuration), but
 * refuses with 503 what needs the crew or a quota.
 */
export class PolicyMirror implements CrewSource {
  private readonly redis: Redis
  private readonly sub: Redis
  private readonly keys: ClusterKeys
  private readonly log: Logger
  private version: string | undefined
  private unreadable: string | undefined
  private captainValue: Captain | undefined
  private members = new Map<string, CrewMember>()
  private privateSet = new Set<string>()
  private tierConfig: TierConfig | undefined
  private confirmedAt = 0
  private current = false
  private timer: NodeJS.Timeout | undefined
  private reading: Promise<void> | undefined
  private again = false

  constructor(opts: {
    redis: Redis
    sub: Redis
    keys: ClusterKeys
    log: Logger
  }) {
    this.redis = opts.redis
    this.sub = opts.sub
    this.keys = opts.keys
    this.log = opts.log
    this.sub.on('message', () => this.refresh())
    this.sub.on('ready', () => {
      this.sub.subscribe(this.keys.policyChannel).catch(() => undefined)
      // Messages sent while unsubscribed are lost: read now.
      this.refresh()
    })
  }

  /** Starts following the writer; resolves once a copy is in, or after waitMs without one. */
  async start(waitMs: number): Promise<void> {
    this.timer = setInterval(() => {
      this.refresh()
      this.checkAge()
    }, POLICY_POLL_MS)
    this.timer.unref()
    const until = Date.now() + waitMs
    while (!this.captainValue && Date.now() < until) {
      this.refresh()
      await this.reading
      if (!this.captainValue) await new Promise((r) => setTimeout(r, 100))
    }
    if (!this.captainValue) {
      this.log.warn(
        'no access policy from the writer in Redis yet (is the writer running on HOLD_REDIS_URL?); answering 503 until it comes',
      )
    }
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Whether this frontend has a copy Redis confirmed within POLICY_MAX_AGE_MS. */
  get isCurrent(): boolean {
    return this.current
  }

  get tiers(): TierConfig | undefined {
    return this.tierConfig
  }

  get captain(): Captain {
    const captain = this.captainValue
    if (!captain) throw noCopy()
    return captain
  }

  member(did: string): CrewMember | undefined {
    return this.members.get(did)
  }

  assertCurrent(): void {
    if (this.current) return
    if (!this.captainValue) throw noCopy()
    throw new PolicyUnavailableError(
      `this frontend's copy of the crew and quotas is older than ${POLICY_MAX_AGE_MS / 1000} s (Redis is not reachable); try again shortly`,
    )
  }

  isPrivate(hex: string): boolean {
    return this.privateSet.size > 0 && this.privateSet.has(hex)
  }

  private checkAge(): void {
    if (this.current && Date.now() - this.confirmedAt > POLICY_MAX_AGE_MS) {
      this.current = false
      this.log.warn(
        'the access policy copy is out of date (Redis not reachable): refusing crew and quota decisions with 503 until it is back',
      )
    }
  }

  /** Reads the version, and the body when it changed; one read at a time. */
  private refresh(): void {
    if (this.reading) {
      this.again = true
      return
    }
    this.reading = this.read()
      .catch(() => undefined)
      .finally(() => {
        this.reading = undefined
        if (this.again) {
          this.again = false
          this.refresh()
        }
      })
  }

  private async read(): Promise<void> {
    const k = this.keys
    const version = await this.redis.hget(k.policy, 'version')
    if (version === null) return
    // A body this frontend cannot read is not read again until the writer writes another.
    if (version === this.unreadable) return
    if (version !== this.version) {
      const [v, body] = await this.redis.hmget(k.policy, 'version', 'body')
      if (v === null || body === null) return
      if (!this.install(v, body)) return
    }
    this.confirmedAt = Date.now()
    if (!this.current) {
      this.current = true
      this.log.info({ version: this.version }, 'access policy copy current')
    }
  }

  private install(version: string, text: string): boolean {
    let body: PolicyBody
    try {
      body = JSON.parse(text) as PolicyBody
      if (body.format !== 1) throw new Error(`format ${String(body.format)}`)
    } catch (err) {
      this.unreadable = version
      this.log.error(
        { err: (err as Error).message },
        'the access policy in Redis is not one this frontend reads (run the same version as the writer)',
      )
      return false
    }
    const members = new Map<string, CrewMember>()
    for (const m of body.crew) {
      members.set(m.member, {
        rkey: '',
        member: m.member,
        role: '',
        permissions: new Set(m.permissions),
        tier: m.tier,
      })
    }
    this.members = members
    this.privateSet = new Set(body.privateHex)
    this.tierConfig = body.tiers
      ? {
          defaultTier: body.tiers.defaultTier,
          tiers: new Map(body.tiers.tiers.map((t) => [t.name, t])),
        }
      : undefined
    this.captainValue = body.captain
    this.version = version
    return true
  }
}

/**
 * Reserves `size` bytes of did's quota for an upload of `hex`, atomically across every
 * machine: the bytes its records name (published by the writer) plus its live reservations
 * (uploads accepted but not yet named by a pushed manifest) plus this one must not pass
 * `limit`. A reservation lasts until a manifest names the blob or `ttlMs` passes.
 */
const RESERVE = `
local usage = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local now = tonumber(ARGV[5])
local pending = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  local bytes = tonumber(string.sub(v, 1, sep - 1))
  local expires = tonumber(string.sub(v, sep + 1))
  if expires <= now then
    redis.call('HDEL', KEYS[2], all[i])
  elseif all[i] ~= ARGV[2] then
    pending = pending + bytes
  end
end
local size = tonumber(ARGV[3])
if usage + pending + size > tonumber(ARGV[4]) then
  return {0, usage, pending}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. (now + tonumber(ARGV[6])))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, usage, pending}
`

export type Reservation = { ok: boolean; usage: number; pending: number }

export const reserveQuota = async (
  redis: Redis,
  keys: ClusterKeys,
  r: { did: string; hex: string; size: number; limit: number; ttlMs: number },
): Promise<Reservation> => {
  let reply: [number, number, number]
  try {
    reply = (await redis.eval(
      RESERVE,
      2,
      keys.usage,
      keys.reserved(r.did),
      r.did,
      r.hex,
      String(r.size),
      String(r.limit),
      String(Date.now()),
      String(r.ttlMs),
    )) as [number, number, number]
  } catch {
    throw new PolicyUnavailableError(
      'the quota cannot be checked now (Redis is not reachable); try the upload again shortly',
    )
  }
  return { ok: reply[0] === 1, usage: reply[1], pending: reply[2] }
}

/** Gives a reservation back after its upload failed (best effort: it expires anyway). */
export const releaseQuota = (
  redis: Redis,
  keys: ClusterKeys,
  did: string,
  hex: string,
): void => {
  redis.hdel(keys.reserved(did), hex).catch(() => undefined)
}
