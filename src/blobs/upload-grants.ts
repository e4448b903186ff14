import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'

/** Why an upload URL cannot be used: it stored its blob already, or another upload holds it. */
export class UploadUrlUsedError extends Error {}

/** How often used URLs past their expiry are deleted. */
const PRUNE_EVERY_MS = 60_000

/**
 * Upload URLs are used once: the first upload through a URL that stores its blob uses the
 * URL up, in the `upload_url_used` table, so neither a replay nor a restart lets it store or
 * count again. An upload that fails (digest mismatch, too large, cut off) leaves the URL
 * unused, so the client can retry with it. While an upload runs, its URL is held in memory and
 * a second upload through it is refused at once, so of two at the same time exactly one wins.
 * A row is kept until the URL has expired (a URL past its expiry is refused anyway), then
 * pruned.
 */
export class UploadGrants {
  private readonly inUse = new Set<string>()
  private readonly usedStmt: StatementSync
  private readonly useStmt: StatementSync
  private readonly pruneStmt: StatementSync
  private prunedAt = 0

  constructor(database: Database) {
    const { db } = database
    this.usedStmt = db.prepare('SELECT 1 FROM upload_url_used WHERE sig = ?')
    this.useStmt = db.prepare(
      'INSERT INTO upload_url_used (sig, expires_at) VALUES (?, ?)',
    )
    this.pruneStmt = db.prepare(
      'DELETE FROM upload_url_used WHERE expires_at < ?',
    )
  }

  /** Holds the URL `sig` for one upload; UploadUrlUsedError when it is used or held. */
  claim(sig: string, now = Date.now()): void {
    if (now - this.prunedAt >= PRUNE_EVERY_MS) {
      this.prunedAt = now
      this.pruneStmt.run(Math.floor(now / 1000) - 60)
    }
    if (this.inUse.has(sig)) {
      throw new UploadUrlUsedError(
        'this upload URL is in use by another upload',
      )
    }
    if (this.usedStmt.get(sig)) {
      throw new UploadUrlUsedError(
        'this upload URL has stored its blob already; ask getBlob for a new one',
      )
    }
    this.inUse.add(sig)
  }

  /** The upload through a claimed URL stored its blob: the URL is used up, for good. */
  use(sig: string, exp: number): void {
    try {
      this.useStmt.run(sig, exp)
    } finally {
      this.inUse.delete(sig)
    }
  }

  /** The upload through a claimed URL failed: the URL may be used again. */
  release(sig: string): void {
    this.inUse.delete(sig)
  }
}
