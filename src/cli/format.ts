/** Lays out rows as left-aligned columns (numbers right-aligned), two spaces apart. */
export const table = (
  header: string[],
  rows: (string | number)[][],
): string[] => {
  const cells = [header, ...rows.map((r) => r.map(String))]
  const numeric = header.map((_, i) =>
    rows.every((r) => typeof r[i] === 'number'),
  )
  const widths = header.map((_, i) =>
    Math.max(...cells.map((r) => r[i].length)),
  )
  return cells.map((r) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  )
}

export const json = (value: unknown): string => JSON.stringify(value, null, 2)
