import { ByteOrderMark } from './bom.ts'

/** One element of a JSON array as text, or why the array could not be read there. */
export type JsonElement =
  { line: number; text: string } | { line: number; error: string }

/** The characters the splitter looks at, as char codes. */
const CH = {
  quote: 0x22,
  backslash: 0x5c,
  comma: 0x2c,
  openBrace: 0x7b,
  closeBrace: 0x7d,
  openBracket: 0x5b,
  closeBracket: 0x5d,
  newline: 0x0a,
} as const

const isJsonSpace = (c: number) =>
  c === 0x20 || c === CH.newline || c === 0x0d || c === 0x09

/**
 * Splits a top-level JSON array (what `sqlite3 -json` writes: `[{...},\n{...}]`) into its
 * elements as text, streaming: feed it text in any chunks (`push`), then `end()`. Each element
 * is parsed by the caller, so one bad row spoils only itself. `line` is where the element starts.
 * An element's text is taken from the chunk in slices, not a character at a time.
 */
export class JsonArraySplitter {
  private state: 'before' | 'between' | 'element' | 'after' | 'done' = 'before'
  private line = 1
  private elementLine = 1
  private text = ''
  private depth = 0
  private inString = false
  private escaped = false
  private readonly bom = new ByteOrderMark()
  private reportedAfter = false

  push(chunk: string): JsonElement[] {
    const out: JsonElement[] = []
    let i = this.bom.skip(chunk)
    // Where the current element's text starts in this chunk.
    let from = this.state === 'element' ? i : -1
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i)
      if (c === CH.newline) this.line++
      if (this.state !== 'element') {
        if (isJsonSpace(c)) continue
        if (!this.outside(c, out)) continue
        from = i
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (c === CH.backslash) this.escaped = true
        else if (c === CH.quote) this.inString = false
      } else if (
        this.depth === 0 &&
        (c === CH.comma || c === CH.closeBracket)
      ) {
        this.emit(out, (this.text + chunk.slice(from, i)).trim())
        this.state = c === CH.comma ? 'between' : 'done'
      } else if (c === CH.quote) this.inString = true
      else if (c === CH.openBrace || c === CH.openBracket) this.depth++
      else if (
        (c === CH.closeBrace || c === CH.closeBracket) &&
        this.depth > 0
      ) {
        if (--this.depth === 0) {
          this.emit(out, this.text + chunk.slice(from, i + 1))
          this.state = 'after'
        }
      }
    }
    if (this.state === 'element') this.text += chunk.slice(from)
    return out
  }

  end(): JsonElement[] {
    const out: JsonElement[] = []
    if (this.state === 'element' || this.state === 'between') {
      out.push({
        line: this.state === 'element' ? this.elementLine : this.line,
        error: 'the JSON array is not closed before the end of the file',
      })
    }
    this.state = 'done'
    return out
  }

  private emit(out: JsonElement[], text: string): void {
    out.push({ line: this.elementLine, text })
    this.text = ''
  }

  /** A character outside any element (not white space); true when an element begins with it. */
  private outside(c: number, out: JsonElement[]): boolean {
    switch (this.state) {
      case 'before':
        if (c === CH.openBracket) this.state = 'between'
        else {
          out.push({ line: this.line, error: 'a JSON array starts with [' })
          this.state = 'done'
          this.reportedAfter = true
        }
        return false
      case 'between':
        if (c === CH.closeBracket) this.state = 'done'
        else if (c === CH.comma) {
          out.push({ line: this.line, error: 'is an empty array element' })
        } else return this.begin()
        return false
      case 'after':
        if (c === CH.comma) this.state = 'between'
        else if (c === CH.closeBracket) this.state = 'done'
        else {
          out.push({ line: this.line, error: 'has no comma before this row' })
          return this.begin()
        }
        return false
      default:
        if (!this.reportedAfter) {
          this.reportedAfter = true
          out.push({
            line: this.line,
            error: 'has text after the end of the JSON array',
          })
        }
        return false
    }
  }

  private begin(): true {
    this.state = 'element'
    this.elementLine = this.line
    this.text = ''
    this.depth = 0
    this.inString = false
    this.escaped = false
    return true
  }
}
