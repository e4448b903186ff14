import type { LexMap } from '@atproto/lex-data'
import { InvalidRequestError } from '../../errors.ts'
import { ids } from '../../lexicons.ts'
import type { Register } from '../util.ts'
import { bodyBool, readAdminBody } from './util.ts'

export const register: Register = (app, ctx) => {
  const log = ctx.log.admin

  // Read and written in one writer turn, so no other write can slip between.
  app.post('/admin/captain', async (c) => {
    const body = await readAdminBody(c)
    const isPublic = bodyBool(body, 'public')
    const allowAllCrew = bodyBool(body, 'allowAllCrew')
    if (isPublic === undefined && allowAllCrew === undefined) {
      throw new InvalidRequestError(
        'nothing to change: give public and/or allowAllCrew',
      )
    }
    let captain: LexMap = {}
    const commit = await ctx.writer.putRecordsFrom(() => {
      const current = ctx.reader.get(ids.HoldCaptain, 'self')?.value
      if (!current) throw new Error('the captain record is missing')
      captain = {
        ...current,
        public: isPublic ?? current.public,
        allowAllCrew: allowAllCrew ?? current.allowAllCrew,
      }
      return [{ collection: ids.HoldCaptain, rkey: 'self', record: captain }]
    })
    // The environment wins at the next start when it is set (DESIGN.md, Configuration).
    const warnings: string[] = []
    if (isPublic !== undefined && ctx.cfg.public !== undefined) {
      warnings.push(
        `HOLD_PUBLIC is set on the hold (${ctx.cfg.public}): its next start applies that again`,
      )
    }
    if (allowAllCrew !== undefined && ctx.cfg.allowAllCrew !== undefined) {
      warnings.push(
        `HOLD_ALLOW_ALL_CREW is set on the hold (${ctx.cfg.allowAllCrew}): its next start applies that again`,
      )
    }
    if (commit) {
      log.info(
        {
          rev: commit.rev,
          public: captain.public,
          allowAllCrew: captain.allowAllCrew,
        },
        'admin: updated captain record',
      )
    }
    return c.json({
      changed: commit !== null,
      rev: commit?.rev,
      owner: captain.owner,
      public: captain.public,
      allowAllCrew: captain.allowAllCrew,
      warnings,
    })
  })
}
