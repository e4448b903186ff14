import { prepareAll, type Database, type Statements } from '../db.ts'

/** One io.atcr.hold.layer record as the index keeps it. */
export type LayerRow = {
  rkey: string
  userDid: string
  repository: string
  manifestDigest: string
  digest: string
  size: number
}

/** What a user's layer records name, each digest once (getQuota). */
export type Usage = { uniqueBlobs: number; totalSize: number }

const SQL = {
  has: `SELECT rkey FROM layer_index
    WHERE user_did = ? AND repository = ? AND manifest_digest = ? AND digest = ?`,
  usage: 'SELECT unique_blobs, total_size FROM user_usage WHERE user_did = ?',
  userBlob: 'SELECT 1 FROM user_blob WHERE user_did = ? AND digest = ?',
  insert: `INSERT INTO layer_index (rkey, user_did, repository, manifest_digest, digest, size)
    VALUES (?, ?, ?, ?, ?, ?)`,
  delete: 'DELETE FROM layer_index WHERE rkey = ?',
  page: `SELECT rkey, user_did, repository, manifest_digest, digest, size FROM layer_index
    WHERE user_did = ? AND rkey > ? ORDER BY user_did, rkey LIMIT ?`,
  upsertBlob: `INSERT INTO manifest_blob (digest, user_did, repository, manifest_digest, private)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (digest, user_did, repository, manifest_digest)
    DO UPDATE SET private = excluded.private`,
  private: 'SELECT min(private) AS p FROM manifest_blob WHERE digest = ?',
  allPrivate:
    'SELECT digest FROM manifest_blob GROUP BY digest HAVING min(private) = 1',
  manifestBlobs: `SELECT digest, repository, manifest_digest, private FROM manifest_blob
    WHERE user_did = ? ORDER BY repository, manifest_digest, digest`,
  deleteManifestBlobs:
    'DELETE FROM manifest_blob WHERE user_did = ? RETURNING digest',
}

/**
 * The SQL side of the layer records: which (user, repository, manifest, layer) is recorded under
 * which key, each user's distinct blobs, and their totals (kept by triggers, so a quota is one
 * row), and which blobs each manifest names with its visibility. Written only inside the repo
 * writer's transactions, so it moves with the records.
 */
export class LayerIndex {
  private readonly database: Database
  private readonly sql: Statements<keyof typeof SQL>

  constructor(database: Database) {
    this.database = database
    this.sql = prepareAll(database.db, SQL)
  }

  /** The key of the record for this layer of this manifest, when there is one. */
  recorded(
    userDid: string,
    repository: string,
    manifestDigest: string,
    digest: string,
  ): string | undefined {
    const row = this.sql.has.get(
      userDid,
      repository,
      manifestDigest,
      digest,
    ) as { rkey: string } | undefined
    return row?.rkey
  }

  usage(userDid: string): Usage {
    const row = this.sql.usage.get(userDid) as
      { unique_blobs: number; total_size: number } | undefined
    return {
      uniqueBlobs: row?.unique_blobs ?? 0,
      totalSize: row?.total_size ?? 0,
    }
  }

  /** Bytes these blobs would add to userDid's total: those none of its records name yet. */
  addedBytes(userDid: string, blobs: Map<string, number>): number {
    let bytes = 0
    for (const [digest, size] of blobs) {
      if (!this.sql.userBlob.get(userDid, digest)) bytes += size
    }
    return bytes
  }

  /** Must run in the writer's transaction, with the records' commit. */
  insert(rows: LayerRow[]): void {
    for (const r of rows) {
      this.sql.insert.run(
        r.rkey,
        r.userDid,
        r.repository,
        r.manifestDigest,
        r.digest,
        r.size,
      )
    }
  }

  /** Must run in the writer's transaction, with the records' commit. */
  delete(rkeys: string[]): void {
    for (const rkey of rkeys) this.sql.delete.run(rkey)
  }

  /** userDid's layer rows in key order, after `cursor`. */
  page(userDid: string, cursor: string, limit: number): LayerRow[] {
    return (
      this.sql.page.all(userDid, cursor, limit) as {
        rkey: string
        user_did: string
        repository: string
        manifest_digest: string
        digest: string
        size: number
      }[]
    ).map((r) => ({
      rkey: r.rkey,
      userDid: r.user_did,
      repository: r.repository,
      manifestDigest: r.manifest_digest,
      digest: r.digest,
      size: r.size,
    }))
  }

  /** Records the blobs a manifest names and its visibility (in the writer's transaction). */
  setManifestBlobs(
    userDid: string,
    repository: string,
    manifestDigest: string,
    digests: Iterable<string>,
    isPrivate: boolean,
  ): void {
    this.database.transaction(() => {
      for (const digest of digests) {
        this.sql.upsertBlob.run(
          digest,
          userDid,
          repository,
          manifestDigest,
          isPrivate ? 1 : 0,
        )
      }
    })
  }

  /** Whether only private manifests name this digest. */
  isPrivate(digest: string): boolean {
    const row = this.sql.private.get(digest) as { p: number | null }
    return row.p === 1
  }

  /** Every digest only private manifests name. */
  privateDigests(): string[] {
    return (this.sql.allPrivate.all() as { digest: string }[]).map(
      (r) => r.digest,
    )
  }

  manifestBlobs(userDid: string): {
    digest: string
    repository: string
    manifestDigest: string
    private: boolean
  }[] {
    return (
      this.sql.manifestBlobs.all(userDid) as {
        digest: string
        repository: string
        manifest_digest: string
        private: number
      }[]
    ).map((r) => ({
      digest: r.digest,
      repository: r.repository,
      manifestDigest: r.manifest_digest,
      private: r.private === 1,
    }))
  }

  /**
   * Drops the rows of layer records the repo no longer has (a repair lost their blocks), so
   * quotas stop counting them and notifying their manifest again records them anew.
   */
  dropLost(lost: string[]): number {
    return this.database.transaction(() => {
      let n = 0
      for (const rkey of lost) n += Number(this.sql.delete.run(rkey).changes)
      return n
    })
  }

  /** Forgets what userDid's manifests name; returns those digests (in a transaction). */
  deleteManifestBlobs(userDid: string): string[] {
    return this.database.transaction(() =>
      (this.sql.deleteManifestBlobs.all(userDid) as { digest: string }[]).map(
        (r) => r.digest,
      ),
    )
  }
}
