/** Skips a byte order mark at the very start of a text fed in chunks. */
export class ByteOrderMark {
  private started = false

  /** Where the text starts in this chunk: past a byte order mark in the text's first one. */
  skip(chunk: string): number {
    if (this.started || chunk.length === 0) return 0
    this.started = true
    return chunk.charCodeAt(0) === 0xfeff ? 1 : 0
  }
}
