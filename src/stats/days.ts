import type { Sketch } from './hll.ts'

/** UTC days: how counts are bucketed by day, and how a pending delta carries its days. */
export const DAY_MS = 86_400_000

/** The UTC day of a time in ms: days since 1970-01-01. */
export const dayOf = (ms: number): number => Math.floor(ms / DAY_MS)

/** A UTC day as YYYY-MM-DD (Hinnant's civil_from_days: no Date per day of a long range). */
export const dayString = (day: number): string => {
  const z = day + 719468
  const era = Math.floor(z / 146097)
  const doe = z - era * 146097
  const yoe = Math.floor(
    (doe -
      Math.floor(doe / 1460) +
      Math.floor(doe / 36524) -
      Math.floor(doe / 146096)) /
      365,
  )
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0)
  return `${y}-${m < 10 ? '0' : ''}${m}-${d < 10 ? '0' : ''}${d}`
}

/** The UTC day of a YYYY-MM-DD date; undefined when it is not one (2026-02-30 is not). */
export const parseDay = (value: string): number | undefined => {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return undefined
  const ms = Date.parse(`${value}T00:00:00.000Z`)
  if (Number.isNaN(ms)) return undefined
  const day = dayOf(ms)
  return dayString(day) === value ? day : undefined
}

/** A day's counts as a read returns them (getStatsHistory, the status page, the export). */
export type HistoryDay = {
  day: string
  pulls: number
  pushes: number
  uniqueClients?: number
}

/** A pair's counts of one UTC day, with its unique-client sketch when clients are counted. */
export type DayCounts = {
  day: number
  pulls: number
  pushes: number
  clients?: Sketch
}

/**
 * What a pending delta carries for the day rows: the day its latest counts belong to, and the
 * counts of earlier days when the delta spans a midnight (rare, so usually absent). The counts
 * of `day` are the delta's totals less those of `earlier`.
 */
export type DayCarrier = {
  pulls: number
  pushes: number
  day: number
  earlier?: DayCounts[]
  clients?: Sketch
}

const addTo = (list: DayCounts[], e: DayCounts): void => {
  if (e.pulls === 0 && e.pushes === 0 && !e.clients) return
  const cur = list.find((x) => x.day === e.day)
  if (!cur) {
    list.push({ ...e })
    return
  }
  cur.pulls += e.pulls
  cur.pushes += e.pushes
  if (e.clients) {
    if (cur.clients) cur.clients.merge(e.clients)
    else cur.clients = e.clients
  }
}

/** Every day of a delta with its counts. */
export const daysOf = (d: DayCarrier): DayCounts[] => {
  let pulls = d.pulls
  let pushes = d.pushes
  const out: DayCounts[] = []
  for (const e of d.earlier ?? []) {
    pulls -= e.pulls
    pushes -= e.pushes
    out.push(e)
  }
  out.push({ day: d.day, pulls, pushes, clients: d.clients })
  return out
}

/**
 * Moves a delta to `day`: the counts so far stay with the day they were taken on. Called by a
 * count whose day is not the delta's (a midnight passed, or the clock went back).
 */
export const rollDay = (d: DayCarrier, day: number): void => {
  const list = daysOf(d).filter((e) => e.day !== day)
  const same = d.earlier?.find((e) => e.day === day)
  d.earlier = []
  for (const e of list) addTo(d.earlier, e)
  if (d.earlier.length === 0) d.earlier = undefined
  d.day = day
  d.clients = same?.clients
}

/**
 * Adds the day counts of `from` into `into` (a failed persist's delta put back in front of one
 * counted since). The totals are added by the caller, before this.
 */
export const mergeDays = (into: DayCarrier, from: DayCarrier): void => {
  const list = into.earlier ?? []
  for (const e of daysOf(from)) {
    if (e.day === into.day) {
      if (e.clients) {
        if (into.clients) into.clients.merge(e.clients)
        else into.clients = e.clients
      }
    } else addTo(list, e)
  }
  into.earlier = list.length > 0 ? list : undefined
}
