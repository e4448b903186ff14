import { TID } from '@atproto/common'
import { ids } from '../ids.ts'
import type { RepoWriter } from '../repo/writer.ts'
import type { LayerIndex, LayerRow } from './layer-index.ts'
import type { BlobVisibility } from './visibility.ts'

/** What a notifyManifest push says about one manifest, its digests checked. */
export type ManifestPush = {
  userDid: string
  repository: string
  manifestDigest: string
  layers: { digest: string; size: number; mediaType: string }[]
  /** Every blob the manifest names (config and layers), for its visibility. */
  blobs: string[]
  private: boolean
}

export type PushResult = { created: number; missing: string[] }

/** The user's layers would take them past their quota; nothing was written. */
export class QuotaExceededError extends Error {
  readonly usage: number
  readonly added: number
  readonly limit: number
  constructor(usage: number, added: number, limit: number) {
    super(
      `quota exceeded: ${usage} bytes stored and ${added} new would pass the limit of ${limit} bytes`,
    )
    this.usage = usage
    this.added = added
    this.limit = limit
  }
}

/** A layer's declared size is not the size of the blob the hold stores under its digest. */
export class LayerSizeError extends Error {}

/** Stored blob sizes by hex digest; null for a blob the hold does not have. */
export type BlobSizes = { size(hex: string): Promise<number | null> }

/**
 * Writes the io.atcr.hold.layer records of pushed manifests through the repo's single writer,
 * with their index rows in the same transaction.
 */
export class LayerService {
  private readonly index: LayerIndex
  private readonly writer: RepoWriter
  private readonly blobs: BlobSizes
  private readonly visibility: BlobVisibility
  private readonly listeners: ((userDid: string, digests: string[]) => void)[] =
    []

  constructor(
    index: LayerIndex,
    writer: RepoWriter,
    blobs: BlobSizes,
    visibility: BlobVisibility,
  ) {
    this.index = index
    this.writer = writer
    this.blobs = blobs
    this.visibility = visibility
  }

  /**
   * One record per distinct layer the hold stores and this manifest has no record for yet, all
   * in one commit; layers the hold does not store are returned, not recorded. With a `limit`,
   * the user's unique bytes after the commit must not pass it (checked in the writer's turn, so
   * two concurrent pushes cannot both slip under it): a QuotaExceededError writes nothing.
   */
  async recordPush(
    push: ManifestPush,
    limit: number | undefined,
  ): Promise<PushResult> {
    const layers = new Map<string, ManifestPush['layers'][number]>()
    for (const layer of push.layers) {
      if (!layers.has(layer.digest)) layers.set(layer.digest, layer)
    }
    const stored: (ManifestPush['layers'][number] & { size: number })[] = []
    const missing: string[] = []
    for (const layer of layers.values()) {
      const size = await this.blobs.size(layer.digest.slice('sha256:'.length))
      if (size === null) {
        missing.push(layer.digest)
      } else if (size !== layer.size) {
        throw new LayerSizeError(
          `layer ${layer.digest} is ${size} bytes on this hold, the manifest says ${layer.size}`,
        )
      } else {
        stored.push(layer)
      }
    }
    let rows: LayerRow[] = []
    const manifest = `at://${push.userDid}/io.atcr.manifest/${push.manifestDigest.slice('sha256:'.length)}`
    await this.writer.putRecordsFrom(
      () => {
        const fresh = stored.filter(
          (l) =>
            this.index.recorded(
              push.userDid,
              push.repository,
              push.manifestDigest,
              l.digest,
            ) === undefined,
        )
        if (limit !== undefined) {
          const usage = this.index.usage(push.userDid).totalSize
          const added = this.index.addedBytes(
            push.userDid,
            new Map(fresh.map((l) => [l.digest, l.size])),
          )
          if (added > 0 && usage + added > limit) {
            throw new QuotaExceededError(usage, added, limit)
          }
        }
        const createdAt = new Date().toISOString()
        rows = fresh.map((l) => ({
          rkey: TID.nextStr(),
          userDid: push.userDid,
          repository: push.repository,
          manifestDigest: push.manifestDigest,
          digest: l.digest,
          size: l.size,
        }))
        return rows.map((row, i) => ({
          collection: ids.HoldLayer,
          rkey: row.rkey,
          record: {
            $type: ids.HoldLayer,
            digest: row.digest,
            size: row.size,
            mediaType: fresh[i].mediaType,
            manifest,
            repository: push.repository,
            manifestDigest: push.manifestDigest,
            userDid: push.userDid,
            createdAt,
          },
        }))
      },
      () => {
        this.index.insert(rows)
        this.index.setManifestBlobs(
          push.userDid,
          push.repository,
          push.manifestDigest,
          push.blobs,
          push.private,
        )
      },
    )
    this.visibility.refresh(push.blobs)
    this.changed(push.userDid, push.blobs)
    return { created: rows.length, missing }
  }

  /** Called after a user's layer records or manifests' blobs were written or deleted. */
  onChange(listener: (userDid: string, digests: string[]) => void): void {
    this.listeners.push(listener)
  }

  private changed(userDid: string, digests: string[]): void {
    for (const listener of this.listeners) listener(userDid, digests)
  }

  /** Every layer row of userDid, in key order. */
  rowsOf(userDid: string): LayerRow[] {
    const rows: LayerRow[] = []
    for (let cursor = ''; ;) {
      const page = this.index.page(userDid, cursor, PAGE)
      rows.push(...page)
      if (page.length < PAGE) return rows
      cursor = page[page.length - 1].rkey
    }
  }

  /**
   * Deletes userDid's layer records, at most 200 per commit with their index rows, until none
   * is left (a push racing the deletion is deleted too), then what its manifests said about
   * visibility. Returns how many records were deleted.
   */
  async deleteUser(userDid: string): Promise<number> {
    let deleted = 0
    for (;;) {
      const page = this.index.page(userDid, '', PAGE)
      if (page.length === 0) break
      const rkeys = page.map((r) => r.rkey)
      const commit = await this.writer.deleteRecords(
        rkeys.map((rkey) => ({ collection: ids.HoldLayer, rkey })),
        () => this.index.delete(rkeys),
      )
      if (commit) deleted += rkeys.length
    }
    let digests: string[] = []
    await this.writer.run(async () => {
      digests = this.index.deleteManifestBlobs(userDid)
    })
    this.visibility.refresh(digests)
    this.changed(userDid, digests)
    return deleted
  }
}

/** Layer rows read or deleted at a time: one commit's worth. */
const PAGE = 200
