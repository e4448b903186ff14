import { cidForLex } from '@atproto/lex-cbor'
import { WriteOpAction, type RecordWriteOp } from '@atproto/repo'
import { ids, type Lexicons } from '../lexicons.ts'
import type { RecordReader, StoredRecord } from '../repo/reader.ts'
import type { RepoWriter } from '../repo/writer.ts'

export type Captain = { owner: string; public: boolean; allowAllCrew: boolean }

export type CrewMember = {
  rkey: string
  member: string
  role: string
  permissions: Set<string>
  /** The quota tier the record names (HOLD_QUOTAS_FILE), if any. */
  tier: string | undefined
}

/**
 * Who the captain and the crew are, as access decisions ask: the writer's CrewIndex, or a
 * frontend's copy of it (PolicyMirror).
 */
export interface CrewSource {
  readonly captain: Captain
  member(did: string): CrewMember | undefined
  /** Throws (503) when the crew answers may be out of date; a no-op on the writer. */
  assertCurrent(): void
}

type Crew = {
  byMember: Map<string, CrewMember>
  byRkey: Map<string, CrewMember>
  /** How many records name each member (more than one only in a repo written by hand). */
  records: Map<string, number>
}

/**
 * Captain and crew, answered from memory: read from the record index on first use, and kept
 * up to date from each commit's operations after that, so an access check never walks the repo
 * and a join does not read the whole crew again.
 */
export class CrewIndex implements CrewSource {
  private captainValue: Captain | undefined
  private crew: Crew | undefined
  private readonly reader: RecordReader

  constructor(reader: RecordReader, writer: RepoWriter) {
    this.reader = reader
    writer.onCommit(({ ops }) => {
      if (ops.some((op) => op.collection === ids.HoldCaptain)) {
        this.captainValue = undefined
      }
      for (const op of ops) {
        if (op.collection === ids.HoldCrew) this.apply(op)
      }
    })
  }

  get captain(): Captain {
    this.captainValue ??= this.loadCaptain()
    return this.captainValue
  }

  assertCurrent(): void {}

  member(did: string): CrewMember | undefined {
    this.crew ??= this.loadCrew()
    return this.crew.byMember.get(did)
  }

  members(): CrewMember[] {
    this.crew ??= this.loadCrew()
    return [...this.crew.byMember.values()]
  }

  private apply(op: RecordWriteOp): void {
    const crew = this.crew
    // Not read yet: the first access reads the crew as it is then.
    if (!crew) return
    try {
      const prev = crew.byRkey.get(op.rkey)
      const next =
        op.action === WriteOpAction.Delete
          ? undefined
          : toMember(op.rkey, op.record as Record<string, unknown>)
      if (prev) {
        crew.byRkey.delete(op.rkey)
        crew.records.set(prev.member, (crew.records.get(prev.member) ?? 1) - 1)
      }
      if (next) {
        crew.byRkey.set(op.rkey, next)
        crew.records.set(next.member, (crew.records.get(next.member) ?? 0) + 1)
      }
      const count = (member: string) => crew.records.get(member) ?? 0
      // Two records naming one member: which one counts is the full read's rule, so read again.
      if (
        (next && count(next.member) > 1) ||
        (prev && prev.member !== next?.member && count(prev.member) > 0)
      ) {
        this.crew = undefined
        return
      }
      if (prev && count(prev.member) === 0) {
        crew.byMember.delete(prev.member)
        crew.records.delete(prev.member)
      }
      if (next) crew.byMember.set(next.member, next)
    } catch {
      this.crew = undefined
    }
  }

  private loadCaptain(): Captain {
    const value = this.reader.get(ids.HoldCaptain, 'self')?.value
    if (!value) throw new Error('the captain record is missing')
    return {
      owner: value.owner as string,
      public: value.public as boolean,
      allowAllCrew: value.allowAllCrew as boolean,
    }
  }

  private loadCrew(): Crew {
    const crew: Crew = {
      byMember: new Map(),
      byRkey: new Map(),
      records: new Map(),
    }
    for (const { rkey, value } of crewRecords(this.reader)) {
      const m = toMember(rkey, value)
      // Keys ascend, so of two records naming one member the later key counts.
      crew.byMember.set(m.member, m)
      crew.byRkey.set(rkey, m)
      crew.records.set(m.member, (crew.records.get(m.member) ?? 0) + 1)
    }
    return crew
  }
}

const toMember = (
  rkey: string,
  value: Record<string, unknown>,
): CrewMember => ({
  rkey,
  member: value.member as string,
  role: value.role as string,
  permissions: new Set(value.permissions as string[]),
  tier: typeof value.tier === 'string' ? value.tier : undefined,
})

const PAGE = 500

/** Every crew record, in ascending key order, read page by page from the record index. */
export function* crewRecords(reader: RecordReader): Generator<StoredRecord> {
  let cursor: string | undefined
  for (;;) {
    const page = reader.list(ids.HoldCrew, {
      limit: PAGE,
      cursor,
      reverse: true,
    })
    yield* page
    if (page.length < PAGE) return
    cursor = page[page.length - 1].rkey
  }
}

/**
 * Every crew record naming `did`, whatever its key: records written by other tools (an AppView
 * calling createRecord) may not use the member's DID as key. Crews are small, so a scan is fine.
 */
export const crewRecordsOf = (
  reader: RecordReader,
  did: string,
): StoredRecord[] =>
  Array.from(crewRecords(reader)).filter((rec) => rec.value.member === did)

/**
 * Why `value` is not a crew record the hold can store, or undefined: it must pass the
 * io.atcr.hold.crew lexicon and be AT data (valid JSON may hold floats or unsafe integers,
 * which no record can encode).
 */
export const crewRecordProblem = async (
  lexicons: Lexicons,
  value: Record<string, unknown>,
): Promise<string | undefined> => {
  try {
    lexicons.assertValidRecord(ids.HoldCrew, value)
    await cidForLex(value as never)
    return undefined
  } catch (err) {
    return `record is not a valid ${ids.HoldCrew}: ${(err as Error).message}`
  }
}
