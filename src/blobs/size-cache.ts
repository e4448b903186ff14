/** Blobs are immutable once stored, so their sizes can be remembered. */
const SIZE_CACHE_ENTRIES = 100_000

/** Sizes of stored blobs by sha256 hex, oldest dropped first past a bound. */
export class SizeCache {
  private readonly sizes = new Map<string, number>()
  private readonly max: number

  constructor(max = SIZE_CACHE_ENTRIES) {
    this.max = max
  }

  get(hex: string): number | undefined {
    return this.sizes.get(hex)
  }

  set(hex: string, size: number): void {
    if (this.sizes.size >= this.max && !this.sizes.has(hex)) {
      // Map iterates in insertion order: the first key is the oldest.
      this.sizes.delete(this.sizes.keys().next().value!)
    }
    this.sizes.set(hex, size)
  }
}
