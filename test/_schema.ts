import { DatabaseSync } from 'node:sqlite'
import { expect } from 'vitest'
import { MIGRATIONS } from '../src/migrations.ts'

/**
 * A database at `path` as a hold of an older version left it: every migration before the first
 * one whose SQL contains `marker`, and that schema version. Open it with the hold's `Database`
 * afterwards to run the upgrade under test. The caller fills it and closes it.
 */
export const schemaBefore = (path: string, marker: string): DatabaseSync => {
  const before = MIGRATIONS.findIndex((m) => m.includes(marker))
  expect(before, `a migration containing ${marker}`).toBeGreaterThan(0)
  const old = new DatabaseSync(path)
  for (const sql of MIGRATIONS.slice(0, before)) old.exec(sql)
  old.exec(`PRAGMA user_version = ${before}`)
  return old
}
