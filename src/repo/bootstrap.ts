import {
  crewRecord,
  crewRecordKey,
  memberProblem,
  PERMISSIONS,
} from '../auth/crew-rules.ts'
import { ConfigError, type ServerConfig } from '../config.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import type { RecordReader } from './reader.ts'
import type { RecordPut, RepoWriter } from './writer.ts'

/**
 * Makes the captain record (and the owner's crew record) match the configuration, in one
 * commit, or no commit when they already do. HOLD_PUBLIC and HOLD_ALLOW_ALL_CREW apply only when
 * set, so a change made to the record at run time survives a restart.
 */
export const bootstrapRecords = async (opts: {
  cfg: ServerConfig
  reader: RecordReader
  writer: RepoWriter
  log: Logger
  now?: Date
}): Promise<void> => {
  const { cfg, reader, writer, log } = opts
  const now = (opts.now ?? new Date()).toISOString()
  const current = reader.get(ids.HoldCaptain, 'self')?.value
  // Unset HOLD_OWNER_DID keeps the owner the captain has, as HOLD_PUBLIC keeps its flag: a
  // restart that lost the variable must not hand the hold to itself.
  const stored = current?.owner as string | undefined
  const owner = cfg.ownerDid ?? stored ?? cfg.did
  if (owner === cfg.did) {
    log.warn(
      { did: cfg.did },
      'HOLD_OWNER_DID is not set: the captain names the hold itself as owner, and nobody can push',
    )
  } else if (!cfg.ownerDid) {
    log.info(
      { owner },
      'HOLD_OWNER_DID is not set: keeping the owner the captain record names',
    )
  }
  const captain = {
    $type: ids.HoldCaptain,
    owner,
    public: cfg.public ?? (current?.public as boolean | undefined) ?? true,
    allowAllCrew:
      cfg.allowAllCrew ??
      (current?.allowAllCrew as boolean | undefined) ??
      false,
    enableBlueskyPosts:
      (current?.enableBlueskyPosts as boolean | undefined) ?? false,
    deployedAt: (current?.deployedAt as string | undefined) ?? now,
  }
  const puts: RecordPut[] = [
    { collection: ids.HoldCaptain, rkey: 'self', record: captain },
  ]
  if (cfg.ownerDid) {
    const problem = memberProblem(cfg.ownerDid)
    if (problem) throw new ConfigError(`HOLD_OWNER_DID: ${problem}`)
    const rkey = crewRecordKey(cfg.ownerDid)
    if (!reader.get(ids.HoldCrew, rkey)) {
      puts.push({
        collection: ids.HoldCrew,
        rkey,
        record: crewRecord({
          member: cfg.ownerDid,
          role: 'owner',
          permissions: PERMISSIONS,
          addedAt: now,
        }),
      })
    }
  }
  const commit = await writer.putRecords(puts)
  if (commit) {
    log.info(
      { rev: commit.rev, owner, public: captain.public },
      current ? 'updated captain record' : 'created captain record',
    )
  }
}
