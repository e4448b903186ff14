import { HoldError } from './errors.ts'

const SERVICE_ID = 'atcr_hold'
const MAX_DOC_BYTES = 64 * 1024

export type ResolveOptions = {
  fetch: typeof globalThis.fetch
  plcUrl: string
  /** did:web of localhost or a loopback address over http (development and tests). */
  allowHttpLocalhost: boolean
  signal?: AbortSignal
}

const isLocal = (host: string): boolean =>
  host === 'localhost' ||
  host.startsWith('localhost:') ||
  host.startsWith('127.') ||
  host.startsWith('[::1]')

/** Where a DID's document is published. */
export const didDocumentUrl = (
  did: string,
  opts: Pick<ResolveOptions, 'plcUrl' | 'allowHttpLocalhost'>,
): string => {
  if (did.startsWith('did:plc:') && /^did:plc:[a-z2-7]{24}$/.test(did)) {
    return `${opts.plcUrl.replace(/\/+$/, '')}/${did}`
  }
  const m = /^did:web:([a-zA-Z0-9.%-]+)((?::[a-zA-Z0-9._%-]+)*)$/.exec(did)
  if (!m) {
    throw new HoldError(
      'HoldNotResolved',
      `not a did:web or did:plc hold DID: ${did}`,
    )
  }
  const host = decodeURIComponent(m[1]!)
  if (/[/?#@\s]/.test(host)) {
    throw new HoldError('HoldNotResolved', `bad did:web host in ${did}`)
  }
  const scheme = opts.allowHttpLocalhost && isLocal(host) ? 'http' : 'https'
  const path = m[2]
    ? m[2].split(':').slice(1).map(decodeURIComponent).join('/') + '/did.json'
    : '.well-known/did.json'
  return `${scheme}://${host}/${path}`
}

type DidDoc = {
  id?: unknown
  service?: { id?: unknown; type?: unknown; serviceEndpoint?: unknown }[]
}

/** The `#atcr_hold` service endpoint a DID document names (an origin, no trailing slash). */
export const holdEndpointOf = (did: string, doc: unknown): string => {
  const d = doc as DidDoc
  if (!d || typeof d !== 'object' || d.id !== did) {
    throw new HoldError(
      'HoldNotResolved',
      `the DID document of ${did} names another id`,
    )
  }
  const entry = (Array.isArray(d.service) ? d.service : []).find(
    (s) => s && (s.id === `#${SERVICE_ID}` || s.id === `${did}#${SERVICE_ID}`),
  )
  if (!entry || typeof entry.serviceEndpoint !== 'string') {
    throw new HoldError(
      'HoldNotResolved',
      `the DID document of ${did} has no #${SERVICE_ID} service`,
    )
  }
  let url: URL
  try {
    url = new URL(entry.serviceEndpoint)
  } catch {
    throw new HoldError(
      'HoldNotResolved',
      `the #${SERVICE_ID} endpoint of ${did} is not a URL`,
    )
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new HoldError(
      'HoldNotResolved',
      `the #${SERVICE_ID} endpoint of ${did} is not http(s)`,
    )
  }
  return url.href.replace(/\/+$/, '')
}

/** Fetches a hold's DID document and returns its `#atcr_hold` endpoint. */
export const fetchHoldEndpoint = async (
  did: string,
  opts: ResolveOptions,
): Promise<string> => {
  const url = didDocumentUrl(did, opts)
  let res: Response
  try {
    res = await opts.fetch(url, {
      headers: { accept: 'application/did+ld+json, application/json' },
      redirect: 'error',
      signal: opts.signal,
    })
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason
    throw new HoldError(
      'HoldNotResolved',
      `${url}: ${(err as Error).message}`,
      {
        hold: did,
        cause: err,
      },
    )
  }
  if (!res.ok) {
    void res.body?.cancel()
    throw new HoldError('HoldNotResolved', `${url} answered ${res.status}`, {
      hold: did,
      status: res.status,
    })
  }
  const text = await res.text()
  if (text.length > MAX_DOC_BYTES) {
    throw new HoldError('HoldNotResolved', `${url}: document too large`, {
      hold: did,
    })
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new HoldError('HoldNotResolved', `${url}: not JSON`, { hold: did })
  }
  return holdEndpointOf(did, doc)
}
