import type { DatabaseSync } from 'node:sqlite'

/**
 * The schema, as the migrations that build it: a database's `user_version` is how many it has
 * had. Migrations are only ever appended, so a data dir of any older version opens.
 */
export const MIGRATIONS: string[] = [
  `
  CREATE TABLE repo_root (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cid TEXT NOT NULL,
    rev TEXT NOT NULL,
    indexed_at TEXT NOT NULL
  );
  CREATE TABLE repo_block (
    cid TEXT PRIMARY KEY,
    repo_rev TEXT NOT NULL,
    size INTEGER NOT NULL,
    content BLOB NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX repo_block_rev_idx ON repo_block (repo_rev, cid);
  CREATE TABLE record (
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    cid TEXT NOT NULL,
    repo_rev TEXT NOT NULL,
    indexed_at TEXT NOT NULL,
    PRIMARY KEY (collection, rkey)
  ) WITHOUT ROWID;
  CREATE INDEX record_cid_idx ON record (cid);
  CREATE TABLE stats_counter (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    pull_count INTEGER NOT NULL DEFAULT 0,
    push_count INTEGER NOT NULL DEFAULT 0,
    last_pull TEXT,
    last_push TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    record_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (did, repository)
  ) WITHOUT ROWID;
  CREATE INDEX stats_counter_dirty_idx ON stats_counter (did, repository)
    WHERE version > record_version;
  `,
  // Counts imported from elsewhere (the AppView's repository_stats), added to what the hold
  // counts itself. Every baseline has a stats_counter row, so lists and flushes see it.
  `
  CREATE TABLE stats_baseline (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    pull_count INTEGER NOT NULL,
    push_count INTEGER NOT NULL,
    last_pull TEXT,
    last_push TEXT,
    imported_at TEXT NOT NULL,
    PRIMARY KEY (did, repository)
  ) WITHOUT ROWID;
  `,
  // Blocks by rev served getRepo?since= an ordered range, but every commit paid for it: a
  // stats flush replaces blocks spread over the whole index, so the index took a large share of
  // the pages a flush wrote. A since= export now filters a scan of repo_block instead, a
  // fraction of a full export (BENCHMARKS.md).
  `
  DROP INDEX IF EXISTS repo_block_rev_idx;
  `,
  // Upload URLs that stored their blob, so each stores and counts once, restarts included.
  // A row is pruned once its URL has expired.
  `
  CREATE TABLE upload_url_used (
    sig TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX upload_url_used_expires_idx ON upload_url_used (expires_at);
  `,
  // The hold's totals, kept by triggers so the status page need not sum the counter table; and
  // each counter row mirrors its baseline (triggers again), so a row's own plus imported counts
  // come out of the row itself when a persist writes it.
  `
  ALTER TABLE stats_counter ADD COLUMN baseline_pull INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE stats_counter ADD COLUMN baseline_push INTEGER NOT NULL DEFAULT 0;
  UPDATE stats_counter SET baseline_pull = b.pull_count, baseline_push = b.push_count
    FROM stats_baseline b
    WHERE b.did = stats_counter.did AND b.repository = stats_counter.repository;
  CREATE TRIGGER stats_baseline_mirror_insert AFTER INSERT ON stats_baseline BEGIN
    UPDATE stats_counter SET baseline_pull = new.pull_count, baseline_push = new.push_count
      WHERE did = new.did AND repository = new.repository;
  END;
  CREATE TRIGGER stats_baseline_mirror_update AFTER UPDATE OF pull_count, push_count
    ON stats_baseline BEGIN
    UPDATE stats_counter SET baseline_pull = new.pull_count, baseline_push = new.push_count
      WHERE did = new.did AND repository = new.repository;
  END;
  CREATE TRIGGER stats_baseline_mirror_delete AFTER DELETE ON stats_baseline BEGIN
    UPDATE stats_counter SET baseline_pull = 0, baseline_push = 0
      WHERE did = old.did AND repository = old.repository;
  END;
  CREATE TRIGGER stats_counter_mirror_baseline AFTER INSERT ON stats_counter
    WHEN EXISTS (SELECT 1 FROM stats_baseline WHERE did = new.did AND repository = new.repository)
  BEGIN
    UPDATE stats_counter SET (baseline_pull, baseline_push) = (
      SELECT pull_count, push_count FROM stats_baseline
      WHERE did = new.did AND repository = new.repository)
    WHERE did = new.did AND repository = new.repository;
  END;

  CREATE TABLE stats_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pairs INTEGER NOT NULL,
    pulls INTEGER NOT NULL,
    pushes INTEGER NOT NULL
  );
  INSERT INTO stats_total (id, pairs, pulls, pushes)
    SELECT 1, count(*), coalesce(sum(pull_count + baseline_pull), 0),
           coalesce(sum(push_count + baseline_push), 0)
    FROM stats_counter;
  CREATE TRIGGER stats_counter_total_insert AFTER INSERT ON stats_counter BEGIN
    UPDATE stats_total SET pairs = pairs + 1,
      pulls = pulls + new.pull_count + new.baseline_pull,
      pushes = pushes + new.push_count + new.baseline_push;
  END;
  CREATE TRIGGER stats_counter_total_update
    AFTER UPDATE OF pull_count, push_count, baseline_pull, baseline_push ON stats_counter BEGIN
    UPDATE stats_total SET
      pulls = pulls + new.pull_count + new.baseline_pull - old.pull_count - old.baseline_pull,
      pushes = pushes + new.push_count + new.baseline_push - old.push_count - old.baseline_push;
  END;
  CREATE TRIGGER stats_counter_total_delete AFTER DELETE ON stats_counter BEGIN
    UPDATE stats_total SET pairs = pairs - 1,
      pulls = pulls - old.pull_count - old.baseline_pull,
      pushes = pushes - old.push_count - old.baseline_push;
  END;
  `, // Multipart uploads (ATCR's upload procedures), so a restart keeps them and the sweeper finds
  // those left unfinished. `assembled`: the store joined the parts, and a completion that failed
  // after that resumes from there. Parts are rows on disk stores only (an S3 store keeps its own):
  // `assembly_offset` is where a part sits in the upload's assembly file, null in a file of its own.
  `
  CREATE TABLE upload (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    hex TEXT NOT NULL,
    did TEXT,
    repo TEXT,
    store_id TEXT,
    assembled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX upload_created_idx ON upload (created_at);
  CREATE TABLE upload_part (
    upload_id TEXT NOT NULL REFERENCES upload (id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    assembly_offset INTEGER,
    PRIMARY KEY (upload_id, part_number)
  ) WITHOUT ROWID;
  `,
  // The subscribeRepos event log (src/repo/sequencer.ts), each event's whole frame. With
  // AUTOINCREMENT a seq is never given twice, also once pruning has emptied the table: a relay
  // stops following a host whose sequence goes back. time comes before frame, so reading it
  // (pruning) touches no overflow pages.
  `
  CREATE TABLE firehose_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    frame BLOB NOT NULL
  );
  `,
  // What notifyManifest recorded: one row per io.atcr.hold.layer record (the unique index makes
  // a repeated notification write nothing), each user's distinct blobs with how many records
  // name them, and per-user totals kept by triggers so getQuota reads one row. manifest_blob is
  // every blob a manifest names with its visibility: a blob is private while only private
  // manifests name it.
  `
  CREATE TABLE layer_index (
    rkey TEXT PRIMARY KEY,
    user_did TEXT NOT NULL,
    repository TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX layer_index_manifest_idx
    ON layer_index (user_did, repository, manifest_digest, digest);
  CREATE TABLE user_blob (
    user_did TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL,
    PRIMARY KEY (user_did, digest)
  ) WITHOUT ROWID;
  CREATE TABLE user_usage (
    user_did TEXT PRIMARY KEY,
    unique_blobs INTEGER NOT NULL,
    total_size INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TRIGGER layer_index_insert AFTER INSERT ON layer_index BEGIN
    INSERT INTO user_blob (user_did, digest, size, refs)
      VALUES (new.user_did, new.digest, new.size, 1)
      ON CONFLICT (user_did, digest) DO UPDATE SET refs = refs + 1;
  END;
  CREATE TRIGGER layer_index_delete AFTER DELETE ON layer_index BEGIN
    UPDATE user_blob SET refs = refs - 1
      WHERE user_did = old.user_did AND digest = old.digest;
    DELETE FROM user_blob
      WHERE user_did = old.user_did AND digest = old.digest AND refs <= 0;
  END;
  CREATE TRIGGER user_blob_insert AFTER INSERT ON user_blob BEGIN
    INSERT INTO user_usage (user_did, unique_blobs, total_size)
      VALUES (new.user_did, 1, new.size)
      ON CONFLICT (user_did) DO UPDATE SET
        unique_blobs = unique_blobs + 1, total_size = total_size + new.size;
  END;
  CREATE TRIGGER user_blob_delete AFTER DELETE ON user_blob BEGIN
    UPDATE user_usage SET
      unique_blobs = unique_blobs - 1, total_size = total_size - old.size
      WHERE user_did = old.user_did;
    DELETE FROM user_usage WHERE user_did = old.user_did AND unique_blobs <= 0;
  END;
  CREATE TABLE manifest_blob (
    digest TEXT NOT NULL,
    user_did TEXT NOT NULL,
    repository TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    private INTEGER NOT NULL,
    PRIMARY KEY (digest, user_did, repository, manifest_digest)
  ) WITHOUT ROWID;
  CREATE INDEX manifest_blob_user_idx ON manifest_blob (user_did);
  `,
  // A clean stop leaves the head it stopped at, so the next start can skip the walk of the
  // whole tree; any removed or rewritten block since (an edit outside the hold) drops the mark.
  `
  CREATE TABLE repo_clean_stop (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    root TEXT NOT NULL,
    stopped_at TEXT NOT NULL
  );
  CREATE TRIGGER repo_block_delete_unmarks AFTER DELETE ON repo_block BEGIN
    DELETE FROM repo_clean_stop;
  END;
  CREATE TRIGGER repo_block_update_unmarks AFTER UPDATE OF content ON repo_block BEGIN
    DELETE FROM repo_clean_stop;
  END;
  `,
  // Per-day counts (src/stats/history.ts). What was counted before they were kept starts out
  // in stats_day_pruned, so a pair's days always add up to its own counts.
  `
  CREATE TABLE stats_day (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    day INTEGER NOT NULL,
    pulls INTEGER NOT NULL,
    pushes INTEGER NOT NULL,
    clients BLOB,
    PRIMARY KEY (did, repository, day)
  ) WITHOUT ROWID;
  CREATE INDEX stats_day_day_idx ON stats_day (day);
  CREATE TABLE stats_day_pruned (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    pulls INTEGER NOT NULL,
    pushes INTEGER NOT NULL,
    PRIMARY KEY (did, repository)
  ) WITHOUT ROWID;
  INSERT INTO stats_day_pruned (did, repository, pulls, pushes)
    SELECT did, repository, pull_count, push_count FROM stats_counter
    WHERE pull_count > 0 OR push_count > 0;
  CREATE TABLE stats_day_total (
    day INTEGER PRIMARY KEY,
    pulls INTEGER NOT NULL,
    pushes INTEGER NOT NULL
  );
  CREATE TABLE stats_ref (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    ref TEXT NOT NULL,
    pulls INTEGER NOT NULL,
    pushes INTEGER NOT NULL,
    last_pull TEXT,
    last_push TEXT,
    PRIMARY KEY (did, repository, kind, ref)
  ) WITHOUT ROWID;
  `,
  // HOLD_ROLE=writer: the Redis stream entries applied to stats_counter and not yet
  // acknowledged, and each frontend process's last applied sequence number (both written in
  // the transaction that applies the counts, so a replayed entry is skipped). HOLD_ROLE=frontend:
  // counts spilled while Redis was down, taken out of stats_counter and on their way to Redis.
  `
  CREATE TABLE stats_stream_applied (id TEXT PRIMARY KEY) WITHOUT ROWID;
  CREATE TABLE stats_stream_producer (
    producer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE stats_outbox (
    producer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (producer, seq)
  ) WITHOUT ROWID;
  `,
  // A persist writes one row per pair. The counts of a pair's latest day (its open day) ride
  // in its counter row and move to stats_day when a later day is first counted, so the day
  // rows are written once per pair and day rather than at every persist. stats_total follows
  // the persist's sums (one statement per persist) instead of a trigger per row. Unique-client
  // sketches leave the day rows: a range of days reads small rows, and each sketch keeps its
  // estimate (in an index, so a range reads no sketch at all; sketches moved here get theirs
  // at the first start, History).
  `
  ALTER TABLE stats_counter ADD COLUMN open_day INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE stats_counter ADD COLUMN open_pulls INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE stats_counter ADD COLUMN open_pushes INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX stats_counter_open_day_idx ON stats_counter (open_day);
  DROP TRIGGER stats_counter_total_insert;
  DROP TRIGGER stats_counter_total_update;
  CREATE TRIGGER stats_counter_total_insert AFTER INSERT ON stats_counter BEGIN
    UPDATE stats_total SET pairs = pairs + 1,
      pulls = pulls + new.baseline_pull, pushes = pushes + new.baseline_push;
  END;
  CREATE TRIGGER stats_counter_total_baseline
    AFTER UPDATE OF baseline_pull, baseline_push ON stats_counter BEGIN
    UPDATE stats_total SET
      pulls = pulls + new.baseline_pull - old.baseline_pull,
      pushes = pushes + new.baseline_push - old.baseline_push;
  END;
  CREATE TABLE stats_day_clients (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    day INTEGER NOT NULL,
    estimate INTEGER,
    sketch BLOB NOT NULL,
    UNIQUE (did, repository, day)
  );
  CREATE INDEX stats_day_clients_day_idx ON stats_day_clients (day);
  CREATE INDEX stats_day_clients_estimate_idx
    ON stats_day_clients (did, repository, day, estimate);
  INSERT INTO stats_day_clients (did, repository, day, sketch)
    SELECT did, repository, day, clients FROM stats_day WHERE clients IS NOT NULL;
  ALTER TABLE stats_day DROP COLUMN clients;
  `,
  // The record index's CIDs answer one question: does another record still name a block a
  // commit removed? A stats record can never share its block: its content holds its pair, its
  // key is made of the pair, and only the hold writes it, so stats records (nearly all of a
  // hold's records) leave this index, which every flush otherwise rewrote twice per record.
  `
  DROP INDEX record_cid_idx;
  CREATE INDEX record_shared_cid_idx ON record (cid)
    WHERE collection <> 'io.atcr.hold.stats';
  `,
  // Which counters' records are behind moves from a column of every counter row
  // (record_version) to a table of those pairs alone: marking a flushed pair deletes a row of a
  // small table instead of rewriting its counter's page, about 200 pages fewer per flush. The
  // triggers keep it for every writer of stats_counter (persists, imports, resets). Dropping
  // the column rewrites the counter table once (about 5 s at a million pairs).
  `
  CREATE TABLE stats_dirty (
    did TEXT NOT NULL,
    repository TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (did, repository)
  ) WITHOUT ROWID;
  INSERT INTO stats_dirty (did, repository, version)
    SELECT did, repository, version FROM stats_counter WHERE version > record_version;
  DROP INDEX stats_counter_dirty_idx;
  ALTER TABLE stats_counter DROP COLUMN record_version;
  CREATE TRIGGER stats_counter_dirty_insert AFTER INSERT ON stats_counter BEGIN
    INSERT INTO stats_dirty (did, repository, version)
      VALUES (new.did, new.repository, new.version)
      ON CONFLICT (did, repository) DO UPDATE SET version = excluded.version;
  END;
  CREATE TRIGGER stats_counter_dirty_update AFTER UPDATE OF version ON stats_counter
    WHEN new.version <> old.version BEGIN
    INSERT INTO stats_dirty (did, repository, version)
      VALUES (new.did, new.repository, new.version)
      ON CONFLICT (did, repository) DO UPDATE SET version = excluded.version;
  END;
  CREATE TRIGGER stats_counter_dirty_delete AFTER DELETE ON stats_counter BEGIN
    DELETE FROM stats_dirty WHERE did = old.did AND repository = old.repository;
  END;
  `,
  // Open days with counts, by day: the history's minute upkeep looks for those older than the
  // kept days, and the index on every counter's open day led it to each pair whose open day
  // is old, counts or not (closed ones keep their day): at a million pairs, most idle, a
  // second's scan every minute on the event loop. Only rows with counts are in this one.
  `
  DROP INDEX stats_counter_open_day_idx;
  CREATE INDEX stats_counter_open_idx ON stats_counter (open_day)
    WHERE open_pulls <> 0 OR open_pushes <> 0;
  `,
  // The count journal's last line whose counts the counter table holds (src/stats/journal.ts):
  // written in the transaction that takes them, so a start reads back only the lines after it.
  `
  CREATE TABLE stats_journal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    folded INTEGER NOT NULL
  );
  INSERT INTO stats_journal (id, folded) VALUES (1, 0);
  `,
]

/** Brings a database to the newest schema, one migration per transaction. */
export const migrate = (db: DatabaseSync): void => {
  const row = db.prepare('PRAGMA user_version').get() as {
    user_version: number
  }
  for (let v = row.user_version; v < MIGRATIONS.length; v++) {
    db.exec('BEGIN IMMEDIATE')
    try {
      db.exec(MIGRATIONS[v])
      db.exec(`PRAGMA user_version = ${v + 1}`)
      db.exec('COMMIT')
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK')
      throw err
    }
  }
}
