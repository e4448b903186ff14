import { ids } from '../lexicons.ts'
import type { RecordReader } from '../repo/reader.ts'
import type { RepoWriter } from '../repo/writer.ts'

export type Captain = { owner: string; public: boolean; allowAllCrew: boolean }

export type CrewMember = {
  rkey: string
  member: string
  role: string
  permissions: Set<string>
}

/**
 * Captain and crew, answered from memory: read from the record index on first use and again
 * after a commit that touches them, so an access check never walks the repo.
 */
export class CrewIndex {
  private captainValue: Captain | undefined
  private byMember: Map<string, CrewMember> | undefined
  private readonly reader: RecordReader

  constructor(reader: RecordReader, writer: RepoWriter) {
    this.reader = reader
    writer.onCommit(({ ops }) => {
      if (ops.some((op) => op.collection === ids.HoldCaptain)) {
        this.captainValue = undefined
      }
      if (ops.some((op) => op.collection === ids.HoldCrew)) {
        this.byMember = undefined
      }
    })
  }

  get captain(): Captain {
    this.captainValue ??= this.loadCaptain()
    return this.captainValue
  }

  member(did: string): CrewMember | undefined {
    this.byMember ??= this.loadCrew()
    return this.byMember.get(did)
  }

  members(): CrewMember[] {
    this.byMember ??= this.loadCrew()
    return [...this.byMember.values()]
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

  private loadCrew(): Map<string, CrewMember> {
    const next = new Map<string, CrewMember>()
    let cursor: string | undefined
    for (;;) {
      const page = this.reader.list(ids.HoldCrew, {
        limit: 500,
        cursor,
        reverse: true,
      })
      for (const { rkey, value } of page) {
        const member = value.member as string
        next.set(member, {
          rkey,
          member,
          role: value.role as string,
          permissions: new Set(value.permissions as string[]),
        })
      }
      if (page.length < 500) break
      cursor = page[page.length - 1].rkey
    }
    return next
  }
}
