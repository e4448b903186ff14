import type { LayerIndex } from './layer-index.ts'

/** getBlob's question: is this blob named by private manifests only? */
export interface PrivateBlobs {
  isPrivate(hex: string): boolean
}

/**
 * Blobs only private manifests name, by hex digest, kept in memory so that getBlob pays one set
 * lookup (none while no private manifest exists) instead of a query.
 */
export class BlobVisibility implements PrivateBlobs {
  private readonly index: LayerIndex
  private readonly privateHex = new Set<string>()

  constructor(index: LayerIndex) {
    this.index = index
    for (const digest of index.privateDigests()) {
      this.privateHex.add(hexOf(digest))
    }
  }

  isPrivate(hex: string): boolean {
    return this.privateHex.size > 0 && this.privateHex.has(hex)
  }

  /** The hex digests of every private blob. */
  hexes(): Iterable<string> {
    return this.privateHex
  }

  get size(): number {
    return this.privateHex.size
  }

  /** Reads these digests' visibility again, after a commit changed what names them. */
  refresh(digests: Iterable<string>): void {
    for (const digest of digests) {
      if (this.index.isPrivate(digest)) this.privateHex.add(hexOf(digest))
      else this.privateHex.delete(hexOf(digest))
    }
  }
}

const hexOf = (digest: string): string => digest.slice('sha256:'.length)
