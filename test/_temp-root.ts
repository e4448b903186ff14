/**
 * Vitest's global setup for every suite: the run's temp dirs (data dirs, spooled exports,
 * S3 test servers' files, the holds' child processes') go under one dir of their own, removed
 * when the run ends, so a test that stops early or a killed child leaves nothing behind in
 * the system's temp dir. Workers and the processes they start inherit `TMPDIR`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export default async function setup(): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), 'atcr-hold-run-'))
  process.env.TMPDIR = root
  return () => rm(root, { recursive: true, force: true })
}
