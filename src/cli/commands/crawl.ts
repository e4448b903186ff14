import type { Command } from '../command.ts'
import { json } from '../format.ts'
import { relayLine, type RelayAnswer } from './status.ts'

export const crawl: Command = {
  name: 'crawl',
  args: '',
  summary: 'ask the relays of HOLD_CRAWLERS to crawl the hold now (admin)',
  help:
    'Sends com.atproto.sync.requestCrawl to every relay in HOLD_CRAWLERS, as the hold does at ' +
    'start, and prints each answer once it is in (failures are retried with backoff first).',
  json: true,
  run: async ({ io, opts, client }) => {
    const r = await client().adminPost<{ relays: RelayAnswer[] }>('crawl', {})
    if (opts.json) return io.out(json(r))
    for (const relay of r.relays) io.out(relayLine(relay))
  },
}
