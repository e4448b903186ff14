import { createCid } from '@atproto/lex-data'
import { ids } from '../src/ids.ts'
import { GET_BLOB, b64url } from './_access.ts'
import {
  REPO,
  STRANGER,
  freshHex,
  getBlob,
  q,
  send,
  storedCid,
  storedHex,
  refusesEach,
  type HostileCase,
} from './_hostile.ts'
import { TEST_OWNER } from './_util.ts'

const cases: HostileCase[] = [
  // Malformed DIDs
  {
    name: 'did "did:"',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: 'did:' })),
  },
  {
    name: 'did with an upper-case method',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: 'did:PLC:x' })),
  },
  {
    name: 'did with a space',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: 'did:plc:x y' })),
  },
  {
    name: 'did with a control character',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: 'did:plc:ab\u0007c' })),
  },
  {
    name: 'did with a NUL byte',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?did=did%3Aplc%3Aab%00c&cid=${storedCid}&repo=${REPO}`,
      ),
  },
  {
    name: 'did of 3000 characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: `did:plc:${'a'.repeat(3000)}` })),
  },
  {
    name: 'did with full-width letters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: 'did:plc:ａｂｃ' })),
  },
  {
    name: 'did missing',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: undefined })),
  },
  {
    name: 'did empty',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ did: '' })),
  },
  // Malformed digests and CIDs
  {
    name: 'digest in upper-case hex',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: `sha256:${storedHex.toUpperCase()}` })),
  },
  {
    name: 'sha512 digest',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: `sha512:${'ab'.repeat(64)}` })),
  },
  {
    name: 'digest naming a path',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: 'sha256:../../etc/passwd' })),
  },
  {
    name: 'percent-encoded ../ as the cid',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=%2e%2e%2f%2e%2e%2fetc%2fpasswd&repo=${REPO}`,
      ),
  },
  {
    name: 'double-encoded ../ in a digest',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=sha256%3A%252e%252e%252fetc&repo=${REPO}`,
      ),
  },
  {
    name: 'digest with a NUL byte',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?did=${TEST_OWNER}&cid=sha256%3A${storedHex.slice(0, 63)}%00&repo=${REPO}`,
      ),
  },
  {
    name: 'digest with a Cyrillic lookalike letter',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(getBlob({ cid: `sha256:${storedHex.replace(/[a-f]/, 'а')}` })),
  },
  {
    name: 'digest with full-width digits',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        getBlob({
          cid: `sha256:${storedHex.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)))}`,
        }),
      ),
  },
  {
    name: 'digest of 63 hex characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: `sha256:${storedHex.slice(1)}` })),
  },
  {
    name: 'digest of 65 hex characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: `sha256:${storedHex}0` })),
  },
  {
    name: 'CIDv0',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(getBlob({ cid: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' })),
  },
  {
    name: 'CIDv1 with a blake2b-256 multihash',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        getBlob({
          cid: createCid(
            0x55,
            0xb220,
            Buffer.from(storedHex, 'hex'),
          ).toString(),
        }),
      ),
  },
  {
    name: 'CIDv1 with a truncated sha256',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        getBlob({
          cid: createCid(
            0x55,
            0x12,
            Buffer.from(storedHex.slice(0, 32), 'hex'),
          ).toString(),
        }),
      ),
  },
  {
    name: 'cid that is not a CID',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: 'bafynotacid' })),
  },
  {
    name: 'cid of 5000 characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ cid: 'b'.repeat(5000) })),
  },
  // Repositories
  {
    name: 'repo in upper case',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: 'Target/App' })),
  },
  {
    name: 'repo ".."',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: '..' })),
  },
  {
    name: 'repo "/"',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: '/' })),
  },
  {
    name: 'repo with a .. component',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: 'target/../app' })),
  },
  {
    name: 'repo of 257 characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: 'a'.repeat(257) })),
  },
  {
    name: 'repo of 5000 characters',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: 'a'.repeat(5000) })),
  },
  {
    name: 'repo that is an emoji',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: '🐳' })),
  },
  {
    name: 'repo with a newline',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ repo: 'target/app\n' })),
  },
  // Repeated and oversized parameters
  {
    name: 'did given twice',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['did', STRANGER],
          ['cid', storedCid],
          ['repo', REPO],
        ])}`,
      ),
  },
  {
    name: 'cid given twice',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['cid', storedCid],
          ['repo', REPO],
        ])}`,
      ),
  },
  {
    name: 'repo given twice',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['repo', REPO],
          ['repo', 'other/app'],
        ])}`,
      ),
  },
  {
    name: 'method given twice',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${GET_BLOB}?${q([
          ['did', TEST_OWNER],
          ['cid', storedCid],
          ['repo', REPO],
          ['method', 'GET'],
          ['method', 'PUT'],
        ])}`,
      ),
  },
  {
    name: 'a query string over 8 KiB',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(`${getBlob()}&pad=${'x'.repeat(9000)}`),
  },
  // Method values
  {
    name: 'method "get"',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ method: 'get' })),
  },
  {
    name: 'method "DELETE"',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ method: 'DELETE' })),
  },
  {
    name: 'method "PUTT"',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(getBlob({ method: 'PUTT' })),
  },
  // Nothing to serve
  {
    name: 'an unsatisfiable Range',
    status: 416,
    error: 'InvalidRange',
    request: () => send(getBlob(), { headers: { range: 'bytes=999999-' } }),
  },
  {
    name: 'a blob the hold does not have',
    status: 404,
    error: 'BlobNotFound',
    request: () => send(getBlob({ cid: `sha256:${freshHex}` })),
  },
  {
    name: 'method=GET for a blob the hold does not have',
    status: 404,
    error: 'BlobNotFound',
    request: () => send(getBlob({ cid: `sha256:${freshHex}`, method: 'GET' })),
  },
  // Stats queries
  {
    name: 'getStats with a bad did',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldGetStats}?${q({ did: 'did:plc:x y', repo: REPO })}`,
      ),
  },
  {
    name: 'getStats without repo',
    status: 400,
    error: 'InvalidRequest',
    request: () => send(`/xrpc/${ids.HoldGetStats}?${q({ did: TEST_OWNER })}`),
  },
  {
    name: 'getStats with an upper-case repo',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldGetStats}?${q({ did: TEST_OWNER, repo: 'Target/App' })}`,
      ),
  },
  {
    name: 'listStats with limit 0',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(`/xrpc/${ids.HoldListStats}?${q({ did: TEST_OWNER, limit: '0' })}`),
  },
  {
    name: 'listStats with limit 101',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldListStats}?${q({ did: TEST_OWNER, limit: '101' })}`,
      ),
  },
  {
    name: 'listStats with limit 1e2',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldListStats}?${q({ did: TEST_OWNER, limit: '1e2' })}`,
      ),
  },
  {
    name: 'listStats with a cursor it never issued',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldListStats}?${q({ did: TEST_OWNER, cursor: '!!!' })}`,
      ),
  },
  {
    name: 'listStats with a cursor naming ../',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(
        `/xrpc/${ids.HoldListStats}?${q({ did: TEST_OWNER, cursor: b64url('../x') })}`,
      ),
  },
]

refusesEach(
  'hostile query parameters (getBlob, getStats, listStats): each gets a 4xx JSON error and counts and writes nothing',
  cases,
)
