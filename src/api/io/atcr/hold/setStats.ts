import { isValidDid } from '@atproto/syntax'
import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { normalizeTimestamp } from '../../../../stats/baseline.ts'
import {
  isValidRepository,
  MAX_RKEY_LENGTH,
  statsRecordKeyLength,
} from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrProcedure } from '../../../xrpc.ts'

type SetStatsInput = {
  ownerDid: string
  repository: string
  pullCount?: number
  pushCount?: number
  lastPull?: string
  lastPush?: string
}

/** Absolute counts for one pair, by the owner or a crew:admin member (migration, corrections). */
export const register: Register = (app, ctx) => {
  atcrProcedure<unknown, SetStatsInput>(app, ctx.lexicons, ids.HoldSetStats, {
    auth: async (c) => {
      const caller = await ctx.access.authorize(
        c,
        'crew:admin',
        ids.HoldSetStats,
      )
      c.set('caller', caller)
      return caller
    },
    handler: (c, { input }) => {
      const { ownerDid: did, repository } = input
      if (!isValidDid(did)) {
        throw new InvalidRequestError(
          `ownerDid must be a DID, got ${JSON.stringify(did.slice(0, 64))}`,
          'InvalidOwner',
        )
      }
      if (
        !isValidRepository(repository) ||
        statsRecordKeyLength(did, repository) > MAX_RKEY_LENGTH
      ) {
        throw new InvalidRequestError(
          `repository must be an OCI repository name whose stats record key fits ${MAX_RKEY_LENGTH} characters`,
          'InvalidRepository',
        )
      }
      const time = (name: 'lastPull' | 'lastPush') => {
        const t = normalizeTimestamp(input[name])
        if (t instanceof Error) {
          throw new InvalidRequestError(`${name} ${t.message}`)
        }
        return t
      }
      ctx.stats.setStats({
        did,
        repository,
        pullCount: input.pullCount,
        pushCount: input.pushCount,
        lastPull: time('lastPull'),
        lastPush: time('lastPush'),
      })
      return c.json({ success: true })
    },
  })
}
