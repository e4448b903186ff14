import { ByteOrderMark } from './bom.ts'

/** One CSV record, or why it could not be read; `line` is where the record starts (1-based). */
export type CsvRecord =
  { line: number; fields: string[] } | { line: number; error: string }

/**
 * A streaming RFC 4180 parser: comma-separated fields, records ended by CRLF or LF, fields in
 * double quotes may hold commas, line breaks and "" (one quote). Feed it text in any chunks
 * (`push`), then `end()`. A stray quote inside an unquoted field is kept as text, as most
 * readers do; text after a closing quote, or an unclosed quote at the end, spoils its record.
 */
export class CsvParser {
  private fields: string[] = []
  private field = ''
  private state: 'start' | 'plain' | 'quoted' | 'quote' | 'cr' | 'bad' = 'start'
  private line = 1
  private recordLine = 1
  private fresh = true
  private error = ''
  private readonly bom = new ByteOrderMark()

  push(text: string): CsvRecord[] {
    const out: CsvRecord[] = []
    let i = this.bom.skip(text)
    for (; i < text.length; i++) {
      const ch = text[i]
      if (this.state === 'cr') {
        // After a CR: a LF completes the line break; anything else starts the next record.
        this.state = 'start'
        if (ch === '\n') continue
      }
      switch (this.state) {
        case 'quoted':
          if (ch === '"') this.state = 'quote'
          else {
            if (ch === '\n') this.line++
            this.field += ch
          }
          break
        case 'quote':
          if (ch === '"') {
            this.field += '"'
            this.state = 'quoted'
          } else if (ch === ',') {
            this.endField()
          } else if (ch === '\n' || ch === '\r') {
            this.endRecord(out, ch)
          } else {
            this.spoil('text after a closing quote')
          }
          break
        case 'bad':
          // Skip to the end of the line; the record is reported once.
          if (ch === '\n' || ch === '\r') this.endRecord(out, ch)
          break
        default:
          if (this.fresh) {
            this.fresh = false
            this.recordLine = this.line
          }
          if (ch === ',') this.endField()
          else if (ch === '\n' || ch === '\r') this.endRecord(out, ch)
          else if (ch === '"' && this.state === 'start' && this.field === '') {
            this.state = 'quoted'
          } else {
            this.field += ch
            this.state = 'plain'
          }
      }
    }
    return out
  }

  end(): CsvRecord[] {
    const out: CsvRecord[] = []
    if (this.state === 'quoted') {
      this.spoil('a quoted field is not closed before the end of the file')
    }
    if (!this.fresh || this.state === 'bad') this.endRecord(out, '')
    return out
  }

  private endField(): void {
    this.fields.push(this.field)
    this.field = ''
    this.state = 'start'
  }

  private spoil(why: string): void {
    if (this.state !== 'bad') this.error = why
    this.state = 'bad'
  }

  private endRecord(out: CsvRecord[], ch: string): void {
    if (this.state === 'bad') {
      out.push({ line: this.recordLine, error: this.error })
    } else {
      this.fields.push(this.field)
      // A blank line is no record.
      if (!(this.fields.length === 1 && this.fields[0] === '')) {
        out.push({ line: this.recordLine, fields: this.fields })
      }
    }
    this.fields = []
    this.field = ''
    this.error = ''
    this.fresh = true
    if (ch === '\n' || ch === '\r') this.line++
    this.state = ch === '\r' ? 'cr' : 'start'
  }
}

/** Parses a whole CSV text (tests, small files). */
export const parseCsv = (text: string): CsvRecord[] => {
  const parser = new CsvParser()
  return [...parser.push(text), ...parser.end()]
}
