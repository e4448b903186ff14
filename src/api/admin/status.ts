import { ids } from '../../lexicons.ts'
import type { Register } from '../util.ts'
import { relayAnswers } from './crawl.ts'

export const register: Register = (app, ctx) => {
  app.get('/admin/status', (c) => {
    const root = ctx.storage.getRootSync()
    if (!root) throw new Error('repo has no root')
    const captain = ctx.reader.get(ids.HoldCaptain, 'self')?.value
    return c.json({
      did: ctx.cfg.did,
      handle: ctx.cfg.handle,
      publicUrl: ctx.cfg.publicUrl,
      version: ctx.cfg.version,
      owner: captain?.owner ?? null,
      public: captain?.public ?? null,
      allowAllCrew: captain?.allowAllCrew ?? null,
      head: { rev: root.rev, cid: root.cid.toString() },
      records: ctx.reader.counts(),
      stats: ctx.stats.summary(),
      firehose: {
        seq: ctx.writer.sequencer.current(),
        oldest: ctx.writer.sequencer.oldest(),
        subscribers: ctx.firehose.stats().subscribers,
        relays: relayAnswers(ctx),
      },
    })
  })
}
