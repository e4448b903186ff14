// npm run lexgen: regenerates src/generated/lexicons from lexicons/ (commit the result).
import { build } from '@atproto/lex-builder'
import { GENERATED_DIR, LEX_BUILD_OPTIONS } from './lexgen-options.ts'

await build({ ...LEX_BUILD_OPTIONS, out: GENERATED_DIR, clear: true })
