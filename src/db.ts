import { DatabaseSync } from 'node:sqlite'
import { Worker } from 'node:worker_threads'

/**
 * The hold's SQLite database. One connection does every write; readers that need a consistent
 * snapshot over several statements (a streamed CAR) open their own with `openReader()`.
 */
export class Database {
  readonly path: string
  readonly db: DatabaseSync
  private depth = 0
  private checkpointer: Worker | undefined

  constructor(path: string) {
    this.path = path
    this.db = new DatabaseSync(path)
    this.db.exec('PRAGMA journal_mode = WAL')
    this.db.exec('PRAGMA synchronous = NORMAL')
    this.db.exec('PRAGMA busy_timeout = 5000')
    this.db.exec('PRAGMA foreign_keys = ON')
    // Repo blocks are written and removed at random across a large table: 16 MiB of page cache
    // instead of SQLite's 2 MiB keeps the B-tree's inner pages and recent leaves in memory.
    // The MST's nodes are read from the writer's own cache (NodeCache), not through this one.
    this.db.exec('PRAGMA cache_size = -16384')
    migrate(this.db)
  }

  /**
   * Moves WAL checkpoints (which copy the WAL into the database and fsync it: ~300 ms after a
   * large commit here) off the event loop, into a worker thread with its own connection.
   * Without it SQLite checkpoints inside whichever COMMIT crosses 1000 pages, stalling every
   * request for that long.
   */
  startCheckpointer(intervalMs = 1000, onError?: (err: Error) => void): void {
    if (this.checkpointer) return
    this.db.exec('PRAGMA wal_autocheckpoint = 0')
    const worker = new Worker(CHECKPOINT_WORKER, {
      eval: true,
      workerData: { path: this.path, intervalMs },
    })
    worker.unref()
    worker.on('error', (err: Error) => {
      // Fall back to SQLite's own checkpoints rather than let the WAL grow.
      this.checkpointer = undefined
      if (this.db.isOpen) this.db.exec('PRAGMA wal_autocheckpoint = 1000')
      onError?.(err)
    })
    this.checkpointer = worker
  }

  /** Checkpoints the whole WAL now (used at stop, so a stopped hold leaves one file). */
  checkpoint(): void {
    this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
  }

  /** Runs fn in one IMMEDIATE transaction; nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    if (this.depth > 0) return fn()
    this.db.exec('BEGIN IMMEDIATE')
    this.depth++
    try {
      const result = fn()
      this.db.exec('COMMIT')
      return result
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    } finally {
      this.depth--
    }
  }

  openReader(): DatabaseSync {
    const reader = new DatabaseSync(this.path, { readOnly: true })
    reader.exec('PRAGMA busy_timeout = 5000')
    return reader
  }

  async close(): Promise<void> {
    const worker = this.checkpointer
    this.checkpointer = undefined
    if (worker) await worker.terminate()
    if (this.db.isOpen) {
      try {
        this.checkpoint()
      } catch {
        // A reader still open elsewhere; SQLite checkpoints on the next open.
      }
      this.db.close()
    }
  }
}

const CHECKPOINT_WORKER = `
const { DatabaseSync } = require('node:sqlite')
const { workerData } = require('node:worker_threads')
const db = new DatabaseSync(workerData.path)
db.exec('PRAGMA busy_timeout = 0')
setInterval(() => {
  try {
    db.exec('PRAGMA wal_checkpoint(PASSIVE)')
  } catch {}
}, workerData.intervalMs)
`

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
  // stats flush replaces ~1,000 blocks spread over the whole index, a quarter of the pages a
  // flush dirties. A since= export now filters a scan of repo_block instead (~100 ms at 100k
  // records, a fraction of a full export).
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
  `,
]

const migrate = (db: DatabaseSync): void => {
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
      db.exec('ROLLBACK')
      throw err
    }
  }
}
