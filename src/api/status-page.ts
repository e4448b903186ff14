import type { CountSource } from '../config.ts'
import type { HistoryDay } from '../stats/days.ts'
import type { StatsView } from '../stats/service.ts'
import { ids } from '../lexicons.ts'
import { OwnerHandles } from './owner-handles.ts'
import type { Register } from './util.ts'
import { xrpcPath } from './xrpc.ts'

export type StatusData = {
  did: string
  handle: string
  version: string
  owner: string
  public: boolean
  allowAllCrew: boolean
  /** HOLD_COUNT_SOURCE: what a pull and a push are. */
  countSource: CountSource
  totals: { pairs: number; pulls: number; pushes: number }
  /** Most pulled first; `days` their pulls of the last SPARK_DAYS days, oldest first. */
  top: (StatsView & { days?: number[]; handle?: string })[]
  /** The hold's pulls and pushes of the last SPARK_DAYS days (when history is kept). */
  daily?: HistoryDay[]
  /** The owner's handle, when its DID document names one. */
  ownerHandle?: string
  /** subscribeRepos and the relays of HOLD_CRAWLERS. */
  firehose?: {
    seq: number
    subscribers: number
    retentionHours: number
    relays: { url: string; answer: string }[]
  }
  generatedAt: string
}

const TOP = 10
/** Days in the status page's sparklines. */
export const SPARK_DAYS = 30
/** The page is public; its two queries run at most this often however hard it is fetched. */
const CACHE_MS = 2000

const CSP = [
  "default-src 'none'",
  "style-src 'unsafe-inline'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** A small server-rendered page for people: who runs this hold, and what is pulled from it. */
export const register: Register = (app, ctx) => {
  let cached: { at: number; html: string } | undefined
  const handles = new OwnerHandles((did) => ctx.serviceAuth.handleOf(did))
  app.get('/', (c) => {
    const now = Date.now()
    if (!cached || now - cached.at >= CACHE_MS) {
      const captain = ctx.crew.captain
      const top = ctx.stats.top(TOP).filter((s) => s.pullCount > 0)
      const recent = ctx.stats.recent(SPARK_DAYS, top, now)
      cached = {
        at: now,
        html: renderStatusPage({
          did: ctx.cfg.did,
          handle: ctx.cfg.handle,
          version: ctx.cfg.version,
          owner: captain.owner,
          public: captain.public,
          allowAllCrew: captain.allowAllCrew,
          countSource: ctx.cfg.countSource,
          totals: ctx.stats.overall(),
          ownerHandle: handles.get(captain.owner),
          top: top.map((s, i) => ({
            ...s,
            handle: handles.get(s.did),
            days: recent?.pulls[i],
          })),
          daily: recent?.daily,
          firehose: {
            seq: ctx.writer.sequencer.current(),
            subscribers: ctx.firehose.stats().subscribers,
            retentionHours: ctx.cfg.firehoseRetentionHours,
            relays: ctx.crawlers.relayUrls.map((url) => {
              const a = ctx.crawlers.answers.get(url)
              return {
                url,
                answer: !a
                  ? 'not answered yet'
                  : a.ok
                    ? `crawling requested ${a.at}`
                    : `${a.error ?? `HTTP ${a.status}`} (${a.at})`,
              }
            }),
          },
          generatedAt: new Date(now).toISOString(),
        }),
      }
    }
    return c.html(cached.html, 200, {
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'cache-control': `public, max-age=${CACHE_MS / 1000}`,
    })
  })
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

/** Text safe inside HTML or SVG element content and quoted attribute values. */
export const escapeHtml = (value: string | number): string =>
  String(value).replace(/[&<>"']/g, (ch) => ESCAPES[ch])

const fmt = (n: number) => n.toLocaleString('en-US')

const truncate = (s: string, max: number) =>
  s.length > max ? `${s.slice(0, max - 1)}…` : s

export const renderStatusPage = (d: StatusData): string => {
  const records = `${xrpcPath(ids.RepoListRecords)}?repo=${encodeURIComponent(d.did)}&collection=${ids.HoldStats}`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ATCR hold ${escapeHtml(d.handle)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<header>
<p class="kicker">ATCR hold</p>
<h1>${escapeHtml(d.handle)}</h1>
<span class="badge ${d.public ? 'public' : 'private'}">${d.public ? 'public' : 'private'}</span>
</header>
<section class="card identity">
<dl>
<dt>Hold DID</dt><dd><code id="hold-did">${escapeHtml(d.did)}</code></dd>
<dt>Owner</dt><dd>${d.ownerHandle ? `<span class="handle" id="owner-handle">@${escapeHtml(d.ownerHandle)}</span> ` : ''}<code id="owner-did">${escapeHtml(d.owner)}</code></dd>
<dt>Blob reads</dt><dd id="access">${d.public ? 'public: anyone may pull' : 'private: owner and crew only'}</dd>
<dt>Crew</dt><dd>${d.allowAllCrew ? 'open to any authenticated account' : 'by invitation'}</dd>
<dt>Counting</dt><dd id="count-source">${d.countSource === 'manifest' ? 'manifests: one pull or push per image manifest (notifyManifest)' : 'blob requests: one pull per blob fetched, one push per blob uploaded'}</dd>
${d.firehose ? firehose(d.firehose) : ''}
</dl>
</section>
<section class="totals">
<div class="card stat"><span class="value" id="total-pulls">${fmt(d.totals.pulls)}</span><span class="label">pulls</span></div>
<div class="card stat"><span class="value" id="total-pushes">${fmt(d.totals.pushes)}</span><span class="label">pushes</span></div>
<div class="card stat"><span class="value" id="total-repos">${fmt(d.totals.pairs)}</span><span class="label">repositories</span></div>
</section>
${d.daily?.some((x) => x.pulls > 0) ? daily(d.daily) : ''}
<section class="card">
<h2>Top repositories by pulls</h2>
${d.top.length ? chart(d.top) + table(d.top) : '<p class="empty">No pulls counted yet.</p>'}
</section>
<footer>
<a href="${escapeHtml(records)}">stats records</a> ·
<a href="/.well-known/did.json">did.json</a> ·
<a href="/metrics">metrics</a> ·
<a href="/xrpc/_health">health</a> ·
atcr-hold ${escapeHtml(d.version)} · ${escapeHtml(d.generatedAt)}
</footer>
</main>
</body>
</html>
`
}

const firehose = (f: NonNullable<StatusData['firehose']>): string => {
  const relays = f.relays.length
    ? f.relays
        .map(
          (r) => `<code>${escapeHtml(r.url)}</code>: ${escapeHtml(r.answer)}`,
        )
        .join('<br>')
    : 'none configured (HOLD_CRAWLERS)'
  return `<dt>Firehose</dt><dd id="firehose">seq ${fmt(f.seq)}, ${fmt(f.subscribers)} subscriber${f.subscribers === 1 ? '' : 's'}, events kept ${fmt(f.retentionHours)} h</dd>
<dt>Relays</dt><dd id="relays">${relays}</dd>`
}

const ROW = 44
const LABEL_W = 250
const BAR_W = 360
const WIDTH = LABEL_W + BAR_W + 110

const chart = (top: StatusData['top']): string => {
  const max = Math.max(...top.map((s) => s.pullCount), 1)
  const height = top.length * ROW
  const rows = top.map((s, i) => {
    const y = i * ROW
    const w = Math.max(2, Math.round((s.pullCount / max) * BAR_W))
    const name = `${s.handle ? `@${s.handle} ` : ''}${s.did} ${s.repository}`
    return `<g class="row">
<title>${escapeHtml(`${name}: ${fmt(s.pullCount)} pulls, ${fmt(s.pushCount)} pushes`)}</title>
<text class="repo" x="${LABEL_W - 12}" y="${y + 19}" text-anchor="end">${escapeHtml(truncate(s.repository, 30))}</text>
<text class="owner" x="${LABEL_W - 12}" y="${y + 35}" text-anchor="end">${escapeHtml(truncate(s.handle ? `@${s.handle}` : s.did, 36))}</text>
<rect class="bar" x="${LABEL_W}" y="${y + 8}" width="${w}" height="${ROW - 16}" rx="4" data-pulls="${s.pullCount}"></rect>
<text class="count" x="${LABEL_W + w + 8}" y="${y + 27}">${fmt(s.pullCount)}</text>
</g>`
  })
  return `<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}">
<title id="chart-title">Pulls of the ${top.length} most pulled repositories</title>
${rows.join('\n')}
</svg>`
}

const table = (top: StatusData['top']): string => {
  const spark = top.some((s) => s.days)
  return `<table>
<thead><tr><th>Repository</th><th>Owner</th>${spark ? `<th>Last ${SPARK_DAYS} days</th>` : ''}<th class="num">Pulls</th><th class="num">Pushes</th></tr></thead>
<tbody>
${top
  .map(
    (s) =>
      `<tr><td>${escapeHtml(s.repository)}</td><td>${s.handle ? `<span class="handle">@${escapeHtml(s.handle)}</span><br>` : ''}<code>${escapeHtml(s.did)}</code></td>${spark ? `<td>${s.days ? sparkline(s.days, `Pulls per day of ${s.repository}`) : ''}</td>` : ''}<td class="num">${fmt(s.pullCount)}</td><td class="num">${fmt(s.pushCount)}</td></tr>`,
  )
  .join('\n')}
</tbody>
</table>`
}

const SPARK_W = 120
const SPARK_H = 28

/** A line of daily values, oldest first, scaled to the largest; the last day marked. */
export const sparkline = (
  values: number[],
  label: string,
  opts: { width?: number; height?: number; id?: string } = {},
): string => {
  const w = opts.width ?? SPARK_W
  const h = opts.height ?? SPARK_H
  const max = Math.max(...values, 1)
  const step = values.length > 1 ? (w - 4) / (values.length - 1) : 0
  const points = values.map((v, i) => [
    Math.round((2 + i * step) * 10) / 10,
    Math.round((h - 2 - (v / max) * (h - 4)) * 10) / 10,
  ])
  const line = points.map(([x, y]) => `${x},${y}`).join(' ')
  const [lx, ly] = points[points.length - 1] ?? [2, h - 2]
  return `<svg class="spark"${opts.id ? ` id="${opts.id}"` : ''} role="img" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" data-values="${values.join(',')}">
<title>${escapeHtml(`${label}: ${values.map(fmt).join(', ')}`)}</title>
<polygon class="area" points="2,${h - 2} ${line} ${lx},${h - 2}"></polygon>
<polyline class="line" points="${line}"></polyline>
<circle class="last" cx="${lx}" cy="${ly}" r="2.5"></circle>
</svg>`
}

const daily = (days: HistoryDay[]): string => {
  const pulls = days.reduce((n, d) => n + d.pulls, 0)
  const pushes = days.reduce((n, d) => n + d.pushes, 0)
  return `<section class="card daily">
<h2>Pulls per day, last ${days.length} days</h2>
${sparkline(
  days.map((d) => d.pulls),
  `Pulls per day, ${days[0]?.day} to ${days[days.length - 1]?.day}`,
  { width: 780, height: 90, id: 'daily-chart' },
)}
<p class="muted">${fmt(pulls)} pulls and ${fmt(pushes)} pushes from ${escapeHtml(days[0]?.day ?? '')} to ${escapeHtml(days[days.length - 1]?.day ?? '')} (UTC)</p>
</section>`
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1f2328; --muted: #656d76; --bg: #f6f8fa; --card: #fff;
  --line: #d0d7de; --bar: #2f81f7; --ok: #1a7f37; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --bg: #0d1117;
  --card: #161b22; --line: #30363d; --bar: #4493f8; --ok: #3fb950; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 820px; margin: 0 auto; padding: 32px 20px; }
header { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
.kicker { width: 100%; margin: 0; color: var(--muted); text-transform: uppercase;
  letter-spacing: .08em; font-size: 12px; }
h1 { margin: 0; font-size: 28px; word-break: break-all; }
h2 { margin: 0 0 12px; font-size: 17px; }
.badge { border-radius: 999px; padding: 2px 10px; font-size: 13px; font-weight: 600; border: 1px solid; }
.badge.public { color: var(--ok); }
.badge.private { color: var(--warn); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin-bottom: 16px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; word-break: break-all; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
.totals { display: grid; grid-template-columns: repeat(3, 1fr); gap: 16px; }
.stat { display: flex; flex-direction: column; align-items: flex-start; }
.stat .value { font-size: 28px; font-weight: 700; font-variant-numeric: tabular-nums; }
.stat .label { color: var(--muted); }
.chart { display: block; max-width: 100%; height: auto; margin-bottom: 16px; }
.chart .repo { fill: var(--fg); font-size: 14px; font-weight: 600; }
.chart .owner { fill: var(--muted); font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; }
.chart .bar { fill: var(--bar); }
.chart .count { fill: var(--fg); font-size: 13px; font-variant-numeric: tabular-nums; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-top: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; }
td code { font-size: 12px; word-break: break-all; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); margin: 0; }
.muted { color: var(--muted); margin: 8px 0 0; font-size: 13px; }
.handle { font-weight: 600; }
.spark { display: block; max-width: 100%; height: auto; }
.spark .line { fill: none; stroke: var(--bar); stroke-width: 1.5; stroke-linejoin: round; }
.spark .area { fill: var(--bar); opacity: .15; stroke: none; }
.spark .last { fill: var(--bar); }
#daily-chart .line { stroke-width: 2.5; }
footer { color: var(--muted); font-size: 13px; }
footer a { color: inherit; }
`
