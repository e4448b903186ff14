/** One element of a JSON array as text, or why the array could not be read there. */
export type JsonElement =
  { line: number; text: string } | { line: number; error: string }

/**
 * Splits a top-level JSON array (what `sqlite3 -json` writes: `[{...},\n{...}]`) into its
 * elements as text, streaming: feed it text in any chunks (`push`), then `end()`. Each element
 * is parsed by the caller, so one bad row spoils only itself. `line` is where the element starts.
 */
export class JsonArraySplitter {
  private state: 'before' | 'between' | 'element' | 'after' | 'done' = 'before'
  private line = 1
  private elementLine = 1
  private text = ''
  private depth = 0
  private inString = false
  private escaped = false
  private first = true
  private reportedAfter = false

  push(chunk: string): JsonElement[] {
    const out: JsonElement[] = []
    let i = 0
    if (this.first && chunk.length > 0) {
      this.first = false
      if (chunk.charCodeAt(0) === 0xfeff) i = 1
    }
    for (; i < chunk.length; i++) {
      const ch = chunk[i]
      if (this.state === 'element') this.element(ch, out)
      else if (!/\s/.test(ch)) this.outside(ch, out)
      if (ch === '\n') this.line++
    }
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

  private outside(ch: string, out: JsonElement[]): void {
    switch (this.state) {
      case 'before':
        if (ch === '[') this.state = 'between'
        else {
          out.push({ line: this.line, error: 'a JSON array starts with [' })
          this.state = 'done'
          this.reportedAfter = true
        }
        return
      case 'between':
        if (ch === ']') this.state = 'done'
        else if (ch === ',') {
          out.push({ line: this.line, error: 'is an empty array element' })
        } else this.start(ch)
        return
      case 'after':
        if (ch === ',') this.state = 'between'
        else if (ch === ']') this.state = 'done'
        else {
          out.push({ line: this.line, error: 'has no comma before this row' })
          this.start(ch)
        }
        return
      case 'done':
        if (!this.reportedAfter) {
          this.reportedAfter = true
          out.push({
            line: this.line,
            error: 'has text after the end of the JSON array',
          })
        }
        return
    }
  }

  private start(ch: string): void {
    this.state = 'element'
    this.elementLine = this.line
    this.text = ''
    this.depth = 0
    this.inString = false
    this.escaped = false
    this.element(ch, [])
  }

  private element(ch: string, out: JsonElement[]): void {
    if (this.inString) {
      this.text += ch
      if (this.escaped) this.escaped = false
      else if (ch === '\\') this.escaped = true
      else if (ch === '"') this.inString = false
      return
    }
    if (this.depth === 0 && (ch === ',' || ch === ']')) {
      out.push({ line: this.elementLine, text: this.text.trim() })
      this.state = ch === ',' ? 'between' : 'done'
      return
    }
    this.text += ch
    if (ch === '"') this.inString = true
    else if (ch === '{' || ch === '[') this.depth++
    else if ((ch === '}' || ch === ']') && this.depth > 0) {
      this.depth--
      if (this.depth === 0) {
        out.push({ line: this.elementLine, text: this.text })
        this.state = 'after'
      }
    }
  }
}
