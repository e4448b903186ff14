import {
  isPermission,
  PERMISSIONS,
  type CrewRecord,
} from '../../auth/crew-rules.ts'
import { ids } from '../../ids.ts'
import type { Command } from '../command.ts'
import { UsageError } from '../errors.ts'
import { json, table } from '../format.ts'

export const crewAdd: Command = {
  name: 'crew add',
  args: '<did>',
  summary: 'add a crew member, or change one (admin)',
  help:
    'Writes the io.atcr.hold.crew record of <did>. A new member gets blob:read,blob:write ' +
    'unless --permissions says otherwise, and a role named after its strongest permission ' +
    '(admin, write or read) unless --role is given. For an existing member, only what is ' +
    'given changes.',
  options: {
    permissions: {
      type: 'string',
      value: 'LIST',
      description: `comma-separated: ${PERMISSIONS.join(', ')}`,
    },
    role: {
      type: 'string',
      value: 'ROLE',
      description: 'owner, admin, write, read, ...',
    },
  },
  json: true,
  run: async ({ io, args: [did], opts, client }) => {
    let permissions: string[] | undefined
    if (opts.permissions !== undefined) {
      permissions = String(opts.permissions)
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)
      const unknown = permissions.filter((p) => !isPermission(p))
      if (permissions.length === 0 || unknown.length > 0) {
        throw new UsageError(
          `--permissions takes a comma-separated list of ${PERMISSIONS.join(', ')}${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
        )
      }
    }
    const r = await client().adminPost<{
      status: string
      rev?: string
      member: CrewRecord
    }>('crew/add', { did, role: opts.role, permissions })
    if (opts.json) return io.out(json(r))
    io.out(
      `${r.status} ${did}: role ${r.member.role}, permissions ${r.member.permissions.join(',')}`,
    )
  },
}

export const crewRemove: Command = {
  name: 'crew remove',
  args: '<did>',
  summary: 'remove a crew member (admin)',
  json: true,
  run: async ({ io, args: [did], opts, client }) => {
    const r = await client().adminPost<{ status: string; rev?: string }>(
      'crew/remove',
      { did },
    )
    if (opts.json) return io.out(json(r))
    io.out(`removed ${did} from the crew`)
  },
}

export const crewList: Command = {
  name: 'crew list',
  args: '',
  summary:
    'the crew: members, roles, permissions (public io.atcr.hold.crew records)',
  json: true,
  run: async ({ io, opts, client }) => {
    const { did } = await client().xrpc<{ did: string }>(
      ids.ServerDescribeServer,
    )
    const crew: (CrewRecord & { rkey: string })[] = []
    let cursor: string | undefined
    do {
      const page = await client().xrpc<{
        records: { uri: string; value: CrewRecord }[]
        cursor?: string
      }>(ids.RepoListRecords, {
        repo: did,
        collection: ids.HoldCrew,
        limit: 100,
        reverse: 'true',
        cursor,
      })
      for (const r of page.records) {
        crew.push({ ...r.value, rkey: r.uri.slice(r.uri.lastIndexOf('/') + 1) })
      }
      cursor = page.cursor
    } while (cursor)
    if (opts.json) return io.out(json({ crew }))
    if (crew.length === 0) return io.out('no crew members')
    for (const line of table(
      ['member', 'role', 'permissions', 'added'],
      crew.map((m) => [m.member, m.role, m.permissions.join(','), m.addedAt]),
    )) {
      io.out(line)
    }
  },
}
