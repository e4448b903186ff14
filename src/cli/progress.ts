/**
 * Progress on stderr: a bar redrawn in place when stderr is a terminal, otherwise a plain line
 * every `everyMs` (logs of long imports), so pipes and CI output stay readable.
 */
export class Progress {
  private readonly stream: NodeJS.WritableStream & {
    isTTY?: boolean
    columns?: number
  }
  private readonly label: string
  private readonly unit: 'rows' | 'bytes'
  private total: number
  private done = 0
  private readonly started = Date.now()
  private lastDraw = 0
  private drawn = false
  private readonly tty: boolean
  private readonly everyMs: number

  constructor(opts: {
    stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
    label: string
    total: number
    unit: 'rows' | 'bytes'
    everyMs?: number
  }) {
    this.stream = opts.stream
    this.label = opts.label
    this.total = opts.total
    this.unit = opts.unit
    this.tty = opts.stream.isTTY === true
    this.everyMs = opts.everyMs ?? 10_000
    this.lastDraw = this.tty ? 0 : Date.now()
  }

  update(done: number, note = ''): void {
    this.done = done
    const now = Date.now()
    if (now - this.lastDraw < (this.tty ? 100 : this.everyMs)) return
    this.lastDraw = now
    if (this.tty) this.draw(note)
    else this.stream.write(`${this.text(note)}\n`)
  }

  /** Writes a line above the bar. */
  log(line: string): void {
    this.clear()
    this.stream.write(`${line}\n`)
    if (this.tty && this.drawn) this.draw('')
  }

  /** Removes the bar. */
  finish(): void {
    this.clear()
    this.drawn = false
  }

  private text(note: string): string {
    const pct = this.total > 0 ? Math.min(1, this.done / this.total) : 0
    const secs = (Date.now() - this.started) / 1000
    const rate = secs > 0 ? this.done / secs : 0
    const of = this.total > 0
    const amount =
      this.unit === 'bytes'
        ? `${bytes(this.done)}${of ? `/${bytes(this.total)}` : ''}`
        : `${this.done}${of ? `/${this.total}` : ''} rows`
    const speed =
      this.unit === 'bytes' ? `${bytes(rate)}/s` : `${Math.round(rate)} rows/s`
    const percent = of ? ` ${(pct * 100).toFixed(0).padStart(3)}%` : ''
    return `${this.label}${percent}  ${amount}  ${speed}${note ? `  ${note}` : ''}`
  }

  private draw(note: string): void {
    const text = this.text(note)
    const width = Math.max(
      10,
      Math.min(40, (this.stream.columns ?? 80) - text.length - 4),
    )
    const pct = this.total > 0 ? Math.min(1, this.done / this.total) : 0
    const full = Math.round(pct * width)
    const bar = `[${'='.repeat(full)}${full < width ? '>' : ''}${' '.repeat(Math.max(0, width - full - 1))}]`
    this.stream.write(`\r\x1b[2K${bar} ${text}`)
    this.drawn = true
  }

  private clear(): void {
    if (this.tty && this.drawn) this.stream.write('\r\x1b[2K')
  }
}

export const bytes = (n: number): string => {
  if (n < 1024) return `${Math.round(n)} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${v.toFixed(1)} ${units[u]}`
}
