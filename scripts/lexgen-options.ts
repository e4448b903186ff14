// The one set of codegen options, shared by `npm run lexgen` and the staleness test.
export const LEX_BUILD_OPTIONS = {
  lexicons: 'lexicons',
  // lex-schema alone keeps the client's runtime free of yargs, ts-morph and prettier.
  lib: '@atproto/lex-schema',
  importExt: '.ts',
  indexFile: true,
  pretty: true,
} as const

export const GENERATED_DIR = 'src/generated/lexicons'
