import type { CacheResult, DidCache, DidDocument } from '@atproto/identity'
import { Lru } from '../lru.ts'

/** Counted for an entry besides its document's JSON: the key, the entry, the Map's slot. */
const ENTRY_OVERHEAD = 512

/** How soon a stale entry whose refresh failed is tried again. */
const RETRY_MS = 60_000

type Entry = {
  doc: DidDocument
  updatedAt: number
  refreshAt: number
  /** What the entry counts against `maxBytes`. */
  bytes: number
}

/**
 * The DID documents of token issuers, for @atproto/identity's resolver in place of its
 * MemoryCache, which never evicts: anyone can name new issuers. Entries are dropped least
 * recently used first once their documents' JSON passes `maxBytes`. An entry is stale after
 * `staleTtlMs` (refreshed on use) and expired after `maxTtlMs`. A refresh that fails keeps the
 * stale document and is tried again a minute later, not on every use: a directory's outage
 * neither turns known callers away nor makes each of their requests wait for it.
 */
export class BoundedDidCache implements DidCache {
  private readonly entries: Lru<string, Entry>
  private readonly staleTtlMs: number
  private readonly maxTtlMs: number

  constructor(opts: {
    staleTtlMs: number
    maxTtlMs: number
    maxBytes: number
  }) {
    this.staleTtlMs = opts.staleTtlMs
    this.maxTtlMs = opts.maxTtlMs
    this.entries = new Lru({
      maxEntries: Infinity,
      maxWeight: opts.maxBytes,
      weigh: (_did, entry) => entry.bytes,
    })
  }

  get size(): number {
    return this.entries.size
  }

  async cacheDid(did: string, doc: DidDocument): Promise<void> {
    const now = Date.now()
    this.entries.set(did, {
      doc,
      updatedAt: now,
      refreshAt: now + this.staleTtlMs,
      bytes: did.length + JSON.stringify(doc).length + ENTRY_OVERHEAD,
    })
  }

  async checkCache(did: string): Promise<CacheResult | null> {
    const entry = this.entries.get(did)
    if (!entry) return null
    const now = Date.now()
    return {
      did,
      doc: entry.doc,
      updatedAt: entry.updatedAt,
      stale: now > entry.refreshAt,
      expired: now - entry.updatedAt > this.maxTtlMs,
    }
  }

  async refreshCache(
    did: string,
    getDoc: () => Promise<DidDocument | null>,
  ): Promise<void> {
    const doc = await getDoc().catch(() => null)
    if (doc) return this.cacheDid(did, doc)
    const entry = this.entries.peek(did)
    if (entry)
      entry.refreshAt = Date.now() + Math.min(RETRY_MS, this.staleTtlMs)
  }

  async clearEntry(did: string): Promise<void> {
    this.entries.delete(did)
  }

  async clear(): Promise<void> {
    this.entries.clear()
  }
}
