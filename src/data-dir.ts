import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

/** A problem with the data dir that stops a start: the message is one line, shown as is. */
export class DataDirError extends Error {}

const LOCK_FILE = 'hold.lock'
const HOLDER_FILE = 'hold.lock.json'

type Holder = { pid: number; host: string; startedAt: string }

/**
 * The data dir's owner: one hold process at a time. The lock is SQLite's own on a small database
 * of its own (`hold.lock`), taken exclusively and kept for the connection's life: a POSIX lock,
 * released by the OS however the process ends. Beside it, `hold.lock.json` names the holder
 * (pid, host, start time), so a second start can say who has the data dir.
 */
export class DataDirLock {
  private db: DatabaseSync | undefined
  private readonly holderPath: string

  private constructor(db: DatabaseSync, holderPath: string) {
    this.db = db
    this.holderPath = holderPath
  }

  /** Takes the lock, or throws a DataDirError naming the process that has it. */
  static acquire(dataDir: string): DataDirLock {
    const holderPath = join(dataDir, HOLDER_FILE)
    let db: DatabaseSync
    try {
      db = new DatabaseSync(join(dataDir, LOCK_FILE))
    } catch (err) {
      throw dataDirError(err, dataDir) ?? err
    }
    try {
      db.exec('PRAGMA busy_timeout = 0')
      db.exec('PRAGMA locking_mode = EXCLUSIVE')
      // An exclusive transaction takes the file's write lock; in this locking mode the
      // connection keeps it after the transaction ends.
      db.exec('BEGIN EXCLUSIVE')
      db.exec('COMMIT')
    } catch (err) {
      db.close()
      if (sqliteCode(err) === SQLITE_BUSY) {
        throw new DataDirError(
          `HOLD_DATA_DIR ${dataDir} is in use by another hold (${describeHolder(holderPath)}); stop that one first, or give this one a data dir of its own`,
        )
      }
      throw dataDirError(err, dataDir) ?? err
    }
    const holder: Holder = {
      pid: process.pid,
      host: hostname(),
      startedAt: new Date().toISOString(),
    }
    try {
      writeFileSync(holderPath, JSON.stringify(holder) + '\n')
    } catch (err) {
      db.close()
      throw dataDirError(err, dataDir) ?? err
    }
    return new DataDirLock(db, holderPath)
  }

  /** Gives the data dir up (the OS does as much when the process ends). */
  release(): void {
    const db = this.db
    if (!db) return
    this.db = undefined
    rmSync(this.holderPath, { force: true })
    db.close()
  }
}

const describeHolder = (path: string): string => {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Holder
    return `pid ${h.pid} on ${h.host}, started ${h.startedAt}`
  } catch {
    return 'a process that has not said which'
  }
}

const SQLITE_READONLY = 8
const SQLITE_BUSY = 5
const SQLITE_IOERR = 10
const SQLITE_FULL = 13
const SQLITE_CANTOPEN = 14

/** The primary SQLite result code of an error from node:sqlite, if it is one. */
export const sqliteCode = (err: unknown): number | undefined => {
  const code = (err as { errcode?: unknown } | null)?.errcode
  return typeof code === 'number' ? code & 0xff : undefined
}

/**
 * What a failed read or write of the data dir means for the operator, in one line naming
 * HOLD_DATA_DIR, or undefined for an error that is not about the disk or its permissions.
 */
export const describeStorageError = (
  err: unknown,
  dataDir: string,
): string | undefined => {
  const errno = (err as NodeJS.ErrnoException | null)?.code
  const sqlite = sqliteCode(err)
  const detail = (err as Error | null)?.message ?? String(err)
  if (errno === 'ENOSPC' || errno === 'EDQUOT' || sqlite === SQLITE_FULL) {
    return `HOLD_DATA_DIR ${dataDir} is full (${detail}): free space on it or give it a larger volume (fly volumes extend)`
  }
  if (
    errno === 'EACCES' ||
    errno === 'EPERM' ||
    errno === 'EROFS' ||
    sqlite === SQLITE_READONLY ||
    sqlite === SQLITE_CANTOPEN
  ) {
    const uid = process.getuid?.()
    return `HOLD_DATA_DIR ${dataDir} is not writable${uid === undefined ? '' : ` by uid ${uid}`} (${detail}): make it writable by the hold's user (in the image, uid 1000: chown -R 1000:1000 ${dataDir})`
  }
  if (errno === 'EIO' || sqlite === SQLITE_IOERR) {
    return `HOLD_DATA_DIR ${dataDir} failed an I/O operation (${detail}): check the disk or volume`
  }
  return undefined
}

const dataDirError = (
  err: unknown,
  dataDir: string,
): DataDirError | undefined => {
  const message = describeStorageError(err, dataDir)
  return message === undefined
    ? undefined
    : new DataDirError(message, { cause: err })
}

/** Runs fn, turning a disk or permission failure into a one-line DataDirError. */
export const asDataDirError = async <T>(
  dataDir: string,
  fn: () => Promise<T>,
): Promise<T> => {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof DataDirError) throw err
    throw dataDirError(err, dataDir) ?? err
  }
}
