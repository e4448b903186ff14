import { ids } from '../src/ids.ts'
import { CREATE_RECORD, CREW, DELETE_RECORD, REQUEST_CREW } from './_access.ts'
import {
  REPO,
  STRANGER,
  big,
  crewInput,
  fresh,
  getBlob,
  hold,
  jsonTo,
  q,
  send,
  validCrew,
  refusesEach,
  type HostileCase,
} from './_hostile.ts'
import { TEST_OWNER } from './_util.ts'

const cases: HostileCase[] = [
  // Wrong HTTP methods
  {
    name: 'POST to getBlob',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob(), { method: 'POST', body: '{}' }),
  },
  {
    name: 'PUT to getBlob',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(getBlob({ method: 'PUT' }), { method: 'PUT', body: fresh }),
  },
  {
    name: 'DELETE to getBlob',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob(), { method: 'DELETE' }),
  },
  {
    name: 'GET to requestCrew',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(`/xrpc/${REQUEST_CREW}`),
  },
  {
    name: 'GET to createRecord',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${CREATE_RECORD}?${q({ repo: TEST_OWNER, collection: CREW })}`,
      ),
  },
  {
    name: 'GET to deleteRecord',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(`/xrpc/${DELETE_RECORD}`),
  },
  {
    name: 'POST to getStats',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(`/xrpc/${ids.HoldGetStats}?${q({ did: TEST_OWNER, repo: REPO })}`, {
        method: 'POST',
      }),
  },
  // Procedure bodies
  {
    name: 'createRecord with a body that is not JSON',
    status: 400,
    error: 'InvalidRequest',
    request: () => jsonTo(CREATE_RECORD, '{"repo":', { as: TEST_OWNER }),
  },
  {
    name: 'createRecord with a JSON array',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(CREATE_RECORD, `[${crewInput(validCrew())}]`, { as: TEST_OWNER }),
  },
  {
    name: 'createRecord with a body over 64 KiB',
    status: 413,
    error: 'PayloadTooLarge',
    request: () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), pad: big }), {
        as: TEST_OWNER,
      }),
  },
  {
    name: 'createRecord with a chunked body over 64 KiB',
    status: 413,
    error: 'PayloadTooLarge',
    request: () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), pad: big }), {
        as: TEST_OWNER,
        chunked: true,
      }),
  },
  {
    name: 'createRecord as text/plain',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(CREATE_RECORD, crewInput(validCrew()), {
        as: TEST_OWNER,
        type: 'text/plain',
      }),
  },
  {
    name: 'createRecord with no body',
    status: 400,
    error: 'InvalidRequest',
    request: () => jsonTo(CREATE_RECORD, '', { as: TEST_OWNER }),
  },
  {
    name: 'createRecord with a float in the record',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), weight: 1.5 }), {
        as: TEST_OWNER,
      }),
  },
  {
    name: 'createRecord with an integer beyond 2^53',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(CREATE_RECORD, crewInput({ ...validCrew(), weight: 2 ** 60 }), {
        as: TEST_OWNER,
      }),
  },
  {
    name: 'createRecord naming another account’s repo',
    status: 404,
    error: 'RepoNotFound',
    request: () =>
      jsonTo(
        CREATE_RECORD,
        JSON.stringify({
          repo: STRANGER,
          collection: CREW,
          record: validCrew(),
        }),
        { as: TEST_OWNER },
      ),
  },
  {
    name: 'requestCrew with a body that is not JSON',
    status: 400,
    error: 'InvalidRequest',
    request: () => jsonTo(REQUEST_CREW, 'role=member', { as: STRANGER }),
  },
  {
    name: 'requestCrew with a chunked body that is not JSON',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(REQUEST_CREW, 'role=member', { as: STRANGER, chunked: true }),
  },
  {
    name: 'requestCrew asking for crew:admin in a chunked body',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: ['crew:admin'] }), {
        as: STRANGER,
        chunked: true,
      }),
  },
  {
    name: 'requestCrew with a JSON array',
    status: 400,
    error: 'InvalidRequest',
    request: () => jsonTo(REQUEST_CREW, '[]', { as: STRANGER }),
  },
  {
    name: 'requestCrew with a body over 64 KiB',
    status: 413,
    error: 'PayloadTooLarge',
    request: () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ role: big }), { as: STRANGER }),
  },
  {
    name: 'requestCrew asking for crew:admin',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: ['crew:admin'] }), {
        as: STRANGER,
      }),
  },
  {
    name: 'requestCrew with permissions that are not an array',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(REQUEST_CREW, JSON.stringify({ permissions: 'blob:write' }), {
        as: STRANGER,
      }),
  },
  {
    name: 'deleteRecord with a body that is not JSON',
    status: 400,
    error: 'InvalidRequest',
    request: () => jsonTo(DELETE_RECORD, 'nope', { as: TEST_OWNER }),
  },
  {
    name: 'deleteRecord with an rkey that is not a record key',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      jsonTo(
        DELETE_RECORD,
        JSON.stringify({ repo: hold().did, collection: CREW, rkey: '../..' }),
        { as: TEST_OWNER },
      ),
  },
]

refusesEach(
  'hostile methods and procedure bodies: each gets a 4xx JSON error and counts and writes nothing',
  cases,
)
