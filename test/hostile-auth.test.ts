import { Secp256k1Keypair } from '@atproto/crypto'
import {
  CREATE_RECORD,
  GET_BLOB,
  REQUEST_CREW,
  b64url,
  claims,
  handJwt,
} from './_access.ts'
import {
  NOW,
  auth,
  crewInput,
  fresh,
  freshHex,
  getBlob,
  hold,
  send,
  signedGetUrl,
  storedHex,
  token,
  validCrew,
  withAuth,
  refusesEach,
  type HostileCase,
} from './_hostile.ts'
import { forget, identity, serviceToken } from './_identity.ts'
import { TEST_OWNER } from './_util.ts'

const cases: HostileCase[] = [
  // Blob URL paths
  {
    name: 'a blob URL climbing out with ../',
    status: 404,
    error: 'NotFound',
    request: () => send('/blobs/sha256/../../etc/passwd'),
  },
  {
    name: 'a blob URL with an encoded ../',
    status: 400,
    error: 'InvalidRequest',
    request: () => send('/blobs/sha256/..%2F..%2Fetc%2Fpasswd'),
  },
  {
    name: 'a blob URL in upper-case hex',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(`/blobs/sha256/${storedHex.toUpperCase()}${signedGetUrl().search}`),
  },
  {
    name: 'a blob URL of 63 hex characters',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(`/blobs/sha256/${storedHex.slice(1)}${signedGetUrl().search}`),
  },
  {
    name: 'a blob URL with a NUL byte',
    status: 400,
    error: 'InvalidRequest',
    request: () =>
      send(`/blobs/sha256/${storedHex.slice(1)}%00${signedGetUrl().search}`),
  },
  {
    name: 'a blob URL without a signature',
    status: 403,
    error: 'Forbidden',
    request: () =>
      send(
        `/blobs/sha256/${storedHex}?method=GET&did=${TEST_OWNER}&exp=${NOW() + 600}`,
      ),
  },
  {
    name: 'a blob URL with a bad signature',
    status: 403,
    error: 'Forbidden',
    request: () =>
      send(
        `/blobs/sha256/${storedHex}?method=GET&did=${TEST_OWNER}&exp=${NOW() + 600}&sig=AAAA`,
      ),
  },
  {
    name: 'an upload to a blob URL without a query',
    status: 403,
    error: 'Forbidden',
    request: () =>
      send(`/blobs/sha256/${freshHex}`, { method: 'PUT', body: fresh }),
  },
  {
    name: 'an upload to a GET URL re-pointed at another blob',
    status: 403,
    error: 'Forbidden',
    request: () =>
      send(
        `/blobs/sha256/${freshHex}${signedGetUrl().search.replace('method=GET', 'method=PUT')}`,
        { method: 'PUT', body: fresh },
      ),
  },
  // Tokens (a PUT URL and a counted pull would follow from any of them)
  {
    name: 'a PUT without credentials',
    status: 401,
    error: 'AuthRequired',
    request: () => send(getBlob({ cid: `sha256:${freshHex}`, method: 'PUT' })),
  },
  {
    name: 'a Basic credential',
    status: 401,
    error: 'InvalidToken',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        'Basic b3duZXI6b3duZXI=',
      ),
  },
  {
    name: 'a garbage bearer token',
    status: 401,
    error: 'BadJwt',
    request: () => withAuth(getBlob(), 'Bearer not-a-jwt'),
  },
  {
    name: 'an expired token',
    status: 401,
    error: 'JwtExpired',
    request: () =>
      withAuth(
        getBlob(),
        token(
          serviceToken({ iss: TEST_OWNER, aud: hold().did, exp: NOW() - 10 }),
        ),
      ),
  },
  {
    name: 'a token for another hold',
    status: 401,
    error: 'BadJwtAudience',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(serviceToken({ iss: TEST_OWNER, aud: 'did:web:hold.example' })),
      ),
  },
  {
    name: 'a token for another method',
    status: 401,
    error: 'BadJwtLexiconMethod',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(
          serviceToken({ iss: TEST_OWNER, aud: hold().did, lxm: REQUEST_CREW }),
        ),
      ),
  },
  {
    name: 'a token valid for two hours',
    status: 401,
    error: 'BadJwtExpiry',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(
          serviceToken({ iss: TEST_OWNER, aud: hold().did, exp: NOW() + 7200 }),
        ),
      ),
  },
  {
    name: 'a forged owner token',
    status: 401,
    error: 'BadJwtSignature',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        (async () =>
          token(
            serviceToken({
              iss: TEST_OWNER,
              aud: hold().did,
              keypair: await Secp256k1Keypair.create(),
            }),
          ))(),
      ),
  },
  {
    name: 'an alg none owner token',
    status: 401,
    error: 'BadJwtAlgorithm',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        `Bearer ${b64url({ alg: 'none' })}.${b64url(claims({ iss: TEST_OWNER, aud: hold().did }))}.`,
      ),
  },
  {
    name: 'an HS256 owner token',
    status: 401,
    error: 'BadJwtAlgorithm',
    request: () =>
      withAuth(
        getBlob({ method: 'PUT', cid: `sha256:${freshHex}` }),
        token(
          handJwt(
            { alg: 'HS256' },
            claims({ iss: TEST_OWNER, aud: hold().did }),
            {
              hmac: hold().did,
            },
          ),
        ),
      ),
  },
  {
    name: 'a token from an issuer the directory does not know',
    status: 401,
    error: 'BadJwtIssuer',
    request: async () => {
      const gone = 'did:plc:hostilegone000000000000000'
      const t = await serviceToken({ iss: gone, aud: hold().did })
      forget(gone)
      return withAuth(getBlob(), token(t))
    },
  },
  {
    name: 'a token whose iss is not a DID',
    status: 401,
    error: 'BadJwtIss',
    request: () =>
      withAuth(
        getBlob(),
        (async () =>
          token(
            handJwt(
              { alg: 'ES256K' },
              claims({ iss: 'owner', aud: hold().did }),
              {
                keypair: await identity(TEST_OWNER),
              },
            ),
          ))(),
      ),
  },
  {
    name: 'createRecord with a getBlob token',
    status: 401,
    error: 'BadJwtLexiconMethod',
    request: async () =>
      send(`/xrpc/${CREATE_RECORD}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(await auth(TEST_OWNER, GET_BLOB)),
        },
        body: crewInput(validCrew()),
      }),
  },
  {
    name: 'createRecord with an expired owner token',
    status: 401,
    error: 'JwtExpired',
    request: async () =>
      send(`/xrpc/${CREATE_RECORD}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(await auth(TEST_OWNER, CREATE_RECORD, { exp: NOW() - 5 })),
        },
        body: crewInput(validCrew()),
      }),
  },
  {
    name: 'requestCrew without a token',
    status: 401,
    error: 'AuthRequired',
    request: () => send(`/xrpc/${REQUEST_CREW}`, { method: 'POST' }),
  },
]

refusesEach(
  'hostile blob URLs and tokens: each gets a 4xx JSON error and counts and writes nothing',
  cases,
)
