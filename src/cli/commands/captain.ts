import type { Command } from '../command.ts'
import { UsageError } from '../errors.ts'
import { json } from '../format.ts'

export const captainSet: Command = {
  name: 'captain set',
  args: '',
  summary: 'make the hold public or private, open or close its crew (admin)',
  help:
    'Updates the io.atcr.hold.captain record in one commit. The change survives restarts, ' +
    'unless HOLD_PUBLIC or HOLD_ALLOW_ALL_CREW is set on the hold: a variable that is set is ' +
    'applied again at every start (the command warns when that is so).',
  options: {
    public: { type: 'boolean', description: 'anyone may read blobs' },
    private: {
      type: 'boolean',
      description: 'only the owner and crew may read blobs',
    },
    'allow-all-crew': {
      type: 'boolean',
      negatable: true,
      description:
        'any authenticated DID may join the crew (--no-allow-all-crew: not)',
    },
  },
  json: true,
  run: async ({ io, opts, client }) => {
    if (opts.public && opts.private) {
      throw new UsageError('give --public or --private, not both')
    }
    const body: { public?: boolean; allowAllCrew?: boolean } = {}
    if (opts.public) body.public = true
    if (opts.private) body.public = false
    if (opts['allow-all-crew'] !== undefined) {
      body.allowAllCrew = opts['allow-all-crew'] as boolean
    }
    if (Object.keys(body).length === 0) {
      throw new UsageError(
        'nothing to set: give --public or --private, and/or --allow-all-crew or --no-allow-all-crew',
      )
    }
    const r = await client().adminPost<{
      changed: boolean
      rev?: string
      public: boolean
      allowAllCrew: boolean
      warnings: string[]
    }>('captain', body)
    for (const w of r.warnings) io.err(`warning: ${w}`)
    if (opts.json) return io.out(json(r))
    io.out(
      `${r.changed ? `captain updated (rev ${r.rev})` : 'captain unchanged'}: public ${r.public ? 'yes' : 'no'}, allow all crew ${r.allowAllCrew ? 'yes' : 'no'}`,
    )
  },
}
