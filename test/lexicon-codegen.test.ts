import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { build } from '@atproto/lex-builder'
import { GENERATED_DIR, LEX_BUILD_OPTIONS } from '../scripts/lexgen-options.ts'
import { ROOT } from './_util.ts'

const files = async (dir: string): Promise<Map<string, string>> => {
  const out = new Map<string, string>()
  for (const e of await readdir(dir, {
    recursive: true,
    withFileTypes: true,
  })) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    out.set(relative(dir, path), await readFile(path, 'utf8'))
  }
  return out
}

let tmp: string | undefined
afterAll(() => tmp && rm(tmp, { recursive: true, force: true }))

it('the generated lexicon code is what lexicons/ gives (else run `npm run lexgen`)', async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lexgen-'))
  await build({
    ...LEX_BUILD_OPTIONS,
    lexicons: join(ROOT, LEX_BUILD_OPTIONS.lexicons),
    out: tmp,
    clear: true,
  })
  const fresh = await files(tmp)
  const committed = await files(join(ROOT, GENERATED_DIR))
  expect(fresh.size).toBeGreaterThan(10)
  expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort())
  for (const [name, text] of fresh) expect(committed.get(name), name).toBe(text)
})
