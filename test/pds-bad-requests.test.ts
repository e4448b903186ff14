import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { startHold, type TestHold } from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew

describe('the embedded PDS', () => {
  let h: TestHold

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_OWNER_DID: OWNER } })
  })
  afterAll(() => h.stop())

  describe('bad requests', () => {
    const q = (nsid: string, query: string) => `/xrpc/${nsid}?${query}`
    const getRecord = ids.RepoGetRecord
    const listRecords = ids.RepoListRecords
    const getRepo = ids.SyncGetRepo
    const syncGetRecord = ids.SyncGetRecord
    const captain = `repo={did}&collection=${CAPTAIN}&rkey=self`
    const list = `repo={did}&collection=${CREW}`
    const cases: {
      name: string
      path: string
      method?: string
      status: number
      error: string
    }[] = [
      {
        name: 'an unknown method',
        path: '/xrpc/com.example.doesNotExist',
        status: 501,
        error: 'MethodNotImplemented',
      },
      {
        name: 'an unknown method under the hold namespace',
        path: '/xrpc/io.atcr.hold.deleteEverything?did={did}',
        status: 501,
        error: 'MethodNotImplemented',
      },
      {
        name: 'getRecord for another DID',
        path: q(
          getRecord,
          `repo=did:plc:someoneelse&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRecord for another handle',
        path: q(
          getRecord,
          `repo=alice.example.com&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRecord for a record that does not exist',
        path: q(getRecord, `repo={did}&collection=${CREW}&rkey=nobody`),
        status: 404,
        error: 'RecordNotFound',
      },
      {
        name: 'getRecord in a collection that does not exist',
        path: q(
          getRecord,
          'repo={did}&collection=app.bsky.feed.post&rkey=self',
        ),
        status: 404,
        error: 'RecordNotFound',
      },
      {
        name: 'getRecord without repo',
        path: q(getRecord, `collection=${CAPTAIN}&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a repo that is neither DID nor handle',
        path: q(
          getRecord,
          `repo=not%20a%20repo&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an invalid collection',
        path: q(getRecord, 'repo={did}&collection=not-an-nsid&rkey=self'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an invalid rkey',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}&rkey=a%2Fb`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with the rkey ".."',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}&rkey=..`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an rkey over 512 characters',
        path: q(
          getRecord,
          `repo={did}&collection=${CAPTAIN}&rkey=${'k'.repeat(513)}`,
        ),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a cid that is not a CID',
        path: q(getRecord, `${captain}&cid=not!a!cid`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a repeated parameter',
        path: q(getRecord, `${captain}&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a control character in a parameter',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}%00&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a query string over 8192 characters',
        path: q(getRecord, `${captain}&pad=${'a'.repeat(8200)}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'a POST to getRecord',
        path: q(getRecord, captain),
        method: 'POST',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'a DELETE to getRepo',
        path: q(getRepo, 'did={did}'),
        method: 'DELETE',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=0',
        path: q(listRecords, `${list}&limit=0`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=101',
        path: q(listRecords, `${list}&limit=101`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=abc',
        path: q(listRecords, `${list}&limit=abc`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=1.5',
        path: q(listRecords, `${list}&limit=1.5`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with reverse=maybe',
        path: q(listRecords, `${list}&reverse=maybe`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with a cursor this hold never issued',
        path: q(listRecords, `${list}&cursor=${encodeURIComponent('a b/c')}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords without a collection',
        path: q(listRecords, 'repo={did}'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords for another DID',
        path: q(listRecords, `repo=did:plc:someoneelse&collection=${CREW}`),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'describeRepo for another DID',
        path: q(ids.RepoDescribeRepo, 'repo=did:web:elsewhere.example.com'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepo for another DID',
        path: q(getRepo, 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepo with a did that is not a DID',
        path: q(getRepo, 'did=localhost'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRepo with since=notatid',
        path: q(getRepo, 'did={did}&since=notatid'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRepo with a repeated did',
        path: q(getRepo, 'did={did}&did={did}'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'sync.getRecord for another DID',
        path: q(
          syncGetRecord,
          `did=did:plc:someoneelse&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'sync.getRecord without rkey',
        path: q(syncGetRecord, `did={did}&collection=${CAPTAIN}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getLatestCommit without did',
        path: `/xrpc/${ids.SyncGetLatestCommit}`,
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getLatestCommit for another DID',
        path: q(ids.SyncGetLatestCommit, 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepoStatus for another DID',
        path: q(ids.SyncGetRepoStatus, 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'listRepos with limit=0',
        path: q(ids.SyncListRepos, 'limit=0'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'resolveHandle without a handle',
        path: `/xrpc/${ids.IdentityResolveHandle}`,
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'resolveHandle with something that is not a handle',
        path: q(ids.IdentityResolveHandle, 'handle=not%20a%20handle'),
        status: 400,
        error: 'InvalidRequest',
      },
    ]

    it.each(cases)(
      '$name answers $status $error',
      async ({ path, method, status, error }) => {
        const url = `${h.url}${path.replaceAll('{did}', encodeURIComponent(h.did))}`
        const res = await fetch(url, { method: method ?? 'GET' })
        expect(res.headers.get('content-type')).toContain('application/json')
        const body = (await res.json()) as { error: unknown; message: unknown }
        expect(res.status).not.toBe(500)
        expect({ status: res.status, error: body.error }).toEqual({
          status,
          error,
        })
        expect(body.message).toEqual(expect.any(String))
        expect((body.message as string).length).toBeGreaterThan(0)
      },
    )
  })
})
