import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Lexicons as LexiconSet, type LexiconDoc } from '@atproto/lexicon'

export type Lexicons = LexiconSet

/** The lexicons/ directory: the contract this hold publishes. */
export const LEXICON_DIR = fileURLToPath(
  new URL('../lexicons/', import.meta.url),
)

export const loadLexiconDocs = (dir = LEXICON_DIR): LexiconDoc[] =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')))

export const loadLexicons = (dir = LEXICON_DIR): Lexicons =>
  new LexiconSet(loadLexiconDocs(dir))

export { ids, type AtcrNsid, type AtprotoNsid, type Nsid } from './ids.ts'
