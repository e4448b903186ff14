import type { CrewSource } from '../auth/crew.ts'
import type { LayerIndex } from '../layers/layer-index.ts'
import { formatBytes, type TierConfig } from './tiers.ts'

export type Limit = { tier?: string; limit?: number }

export type QuotaView = {
  userDid: string
  uniqueBlobs: number
  totalSize: number
  limit?: number
  tier?: string
}

export type TierView = {
  name: string
  quotaBytes: number
  quotaFormatted: string
  scanOnPush: boolean
}

/**
 * Who may store how much: the owner without limit; a crew member by its record's tier (the
 * default tier when it names none, or one the file does not have); anyone else by the default
 * tier. Without HOLD_QUOTAS_FILE nobody has a limit.
 */
export class Quotas {
  private readonly tierConfig: () => TierConfig | undefined
  private readonly crew: CrewSource
  private readonly index: LayerIndex

  constructor(
    config: TierConfig | undefined | (() => TierConfig | undefined),
    crew: CrewSource,
    index: LayerIndex,
  ) {
    this.tierConfig = typeof config === 'function' ? config : () => config
    this.crew = crew
    this.index = index
  }

  /** HOLD_QUOTAS_FILE's tiers: the writer's own, or on a frontend the copy it published. */
  private get config(): TierConfig | undefined {
    return this.tierConfig()
  }

  get enabled(): boolean {
    return this.config !== undefined
  }

  limitFor(did: string): Limit {
    const config = this.config
    if (!config || did === this.crew.captain.owner) return {}
    this.crew.assertCurrent()
    const named = this.crew.member(did)?.tier
    const tier =
      (named !== undefined && config.tiers.get(named)) ||
      config.tiers.get(config.defaultTier)!
    return { tier: tier.name, limit: tier.quotaBytes }
  }

  /** From the per-user totals the layer index keeps: one row, whatever the user stores. */
  quota(did: string): QuotaView {
    const usage = this.index.usage(did)
    return { userDid: did, ...usage, ...this.limitFor(did) }
  }

  tiers(): TierView[] {
    return [...(this.config?.tiers.values() ?? [])].map((t) => ({
      name: t.name,
      quotaBytes: t.quotaBytes,
      quotaFormatted: formatBytes(t.quotaBytes),
      scanOnPush: t.scanOnPush,
    }))
  }
}
