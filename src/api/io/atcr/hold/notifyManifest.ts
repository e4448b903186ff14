import {
  ForbiddenError,
  InvalidRequestError,
  XRPCError,
} from '../../../../errors.ts'
import type { AppContext } from '../../../../context.ts'
import { ids } from '../../../../lexicons.ts'
import {
  LayerSizeError,
  QuotaExceededError,
} from '../../../../layers/service.ts'
import { countPull, countPush } from '../../../../stats/counting.ts'
import { serviceDid, type Register } from '../../../util.ts'
import { atcrProcedure } from '../../../xrpc.ts'
import { checkManifest, type NotifyInput } from './manifest-input.ts'

export const register: Register = (app, ctx) => {
  atcrProcedure<string, NotifyInput>(
    app,
    ctx.lexicons,
    ids.HoldNotifyManifest,
    {
      auth: (c) =>
        serviceDid(
          ctx,
          c,
          ids.HoldNotifyManifest,
          'notifyManifest needs a service token from userDid',
        ),
      handler: async (c, { auth: did, input }) => {
        if (input.userDid !== did) {
          throw new ForbiddenError(
            `userDid ${input.userDid} is not the token's issuer ${did}`,
            'UserMismatch',
          )
        }
        const operation = input.operation
        if (operation !== 'push' && operation !== 'pull') {
          throw new InvalidRequestError(
            `operation must be push or pull, got ${JSON.stringify(operation.slice(0, 16))}`,
            'InvalidOperation',
          )
        }
        const manifest = checkManifest(input)
        const need = operation === 'push' ? 'blob:write' : 'blob:read'
        if (need === 'blob:write' || !ctx.crew.captain.public) {
          const missing = ctx.access.missing(did, need)
          if (missing) {
            throw new ForbiddenError(`access denied for ${need}: ${missing}`)
          }
        }
        // Only the source HOLD_COUNT_SOURCE names counts: one unit per field.
        const counts = ctx.cfg.countSource === 'manifest'
        if (operation === 'pull') {
          const statsUpdated =
            counts && countPull(ctx, c, did, did, manifest.repository)
          if (statsUpdated) countRefs(ctx, 'pull', input)
          return c.json({ success: true, operation, statsUpdated })
        }
        try {
          const result = await ctx.layers.recordPush(
            manifest,
            ctx.quotas.limitFor(did).limit,
          )
          const statsUpdated =
            counts && countPush(ctx, c, did, did, manifest.repository)
          if (statsUpdated) countRefs(ctx, 'push', input)
          return c.json({
            success: true,
            operation,
            statsUpdated,
            layersCreated: result.created,
            ...(result.missing.length > 0
              ? { missingLayers: result.missing }
              : {}),
          })
        } catch (err) {
          if (err instanceof QuotaExceededError) {
            throw new XRPCError(403, err.message, 'QuotaExceeded')
          }
          if (err instanceof LayerSizeError) {
            throw new InvalidRequestError(err.message)
          }
          throw err
        }
      },
    },
  )
}

/** The tag (when named) and the manifest a counted notification was about. */
const countRefs = (
  ctx: AppContext,
  op: 'pull' | 'push',
  input: NotifyInput,
): void => {
  const { userDid, repository, tag, manifestDigest } = input
  if (tag) ctx.stats.countRef(op, userDid, repository, 'tag', tag)
  ctx.stats.countRef(op, userDid, repository, 'digest', manifestDigest)
}
