/**
 * report.html: one self-contained page that opens offline. This module writes the page
 * (template and sections); the charts are built in html-charts.ts, and the page's own
 * script and styles are real files in html-assets/ that Biome lints and tsc checks
 * (tsconfig.browser.json). uPlot's files and ours are read at render time and inlined;
 * the report and the chart data travel as JSON script blocks. Everything derived from
 * histograms (the percentile curves) is computed in Node, so the page only draws.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { PushbenchError } from '../../core/errors.js';
import type { LatencySummary } from '../../core/measure/histogram.js';
import { formatCount } from '../../core/units.js';
import type { GateVerdict } from '../gates.js';
import { formatIntervals } from '../percentile-ci.js';
import { latencySeriesOf, type Report, type Verdict } from '../report.js';
import type { FaultImpact } from '../storm.js';
import { WINDOW_SERIES } from '../windows.js';
import type { ChartData, ChartSpec } from './chart-data.js';
import { reportCharts } from './html-charts.js';

// --- pure helpers (exported for tests and the other HTML pages) ---------------------------

const htmlEntities: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** `s` escaped for HTML text and double- or single-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => htmlEntities[c] ?? c);
}

/**
 * `value` as JSON that is safe inside a `<script>` element: every `<` becomes
 * `\u003c`, so no string in the data can close the element or open a comment.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

/** Milliseconds with precision that fits their size: `0.262 ms`, `5.61 ms`, `13.7 ms`, `1,204 ms`. */
export function formatMsFixed(ms: number): string {
  const abs = Math.abs(ms);
  const digits = abs < 1 ? 3 : abs < 10 ? 2 : abs < 100 ? 1 : 0;
  return `${ms.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })} ms`;
}

function formatPct(fraction: number): string {
  if (fraction === 1) return '100%';
  const digits = fraction > 0.9999 ? 4 : fraction > 0.99 ? 3 : 2;
  return `${(fraction * 100).toFixed(digits)}%`;
}

function formatWall(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

function formatStart(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

// --- HTML ------------------------------------------------------------------------------

interface Cell {
  text: string;
  className?: string;
}
type CellInput = string | number | Cell;

function cell(c: CellInput, tag: 'td' | 'th'): string {
  const v: Cell = typeof c === 'object' ? c : { text: typeof c === 'number' ? formatCount(c) : c };
  const cls = v.className ? ` class="${escapeHtml(v.className)}"` : '';
  return `<${tag}${cls}>${escapeHtml(v.text)}</${tag}>`;
}

function table(
  head: CellInput[],
  rows: CellInput[][],
  opts: { className?: string; rowAttr?: string } = {},
): string {
  const cls = opts.className ? ` class="${opts.className}"` : '';
  const attr = opts.rowAttr ? ` ${opts.rowAttr}` : '';
  // Wide tables scroll inside their card on narrow screens instead of widening the page.
  return [
    `<div class="scroll"><table${cls}>`,
    `<thead><tr>${head.map((h) => cell(h, 'th')).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map((r) => `<tr${attr}>${r.map((c) => cell(c, 'td')).join('')}</tr>`),
    '</tbody></table></div>',
  ].join('\n');
}

/** A two-column table of labelled figures; a hint is shown muted under its label. */
function figures(rows: { label: string; value: CellInput; hint?: string; sub?: boolean }[]) {
  return [
    '<table class="figures"><tbody>',
    ...rows.map((r) => {
      const hint = r.hint ? `<span class="hint">${escapeHtml(r.hint)}</span>` : '';
      const cls = r.sub ? ' class="sub"' : '';
      return `<tr${cls}><th>${escapeHtml(r.label)}${hint}</th>${cell(r.value, 'td')}</tr>`;
    }),
    '</tbody></table>',
  ].join('\n');
}

const verdictWords: Record<Verdict, string> = {
  pass: 'every gate passed',
  fail: 'a gate failed',
  inconclusive: 'too few samples to decide a statistical gate',
  invalid: 'the load generator saturated; latencies would blame the server for its own delay',
};

function verdictPill(v: Verdict | GateVerdict): Cell {
  return { text: v, className: `pill v-${v}` };
}

/** A chart's container, captioned with its title unless the section heading already says it. */
function chartBox(spec: ChartSpec, opts: { wide?: boolean; caption?: boolean } = {}): string {
  const cls = opts.wide ? 'chart wide' : 'chart';
  const caption =
    opts.caption === false ? '' : `<figcaption>${escapeHtml(spec.title)}</figcaption>`;
  return `<figure class="${cls}">${caption}<div class="plot" data-chart="${escapeHtml(spec.name)}"></div></figure>`;
}

/** Finds a chart by name; the names are fixed in this file, so a miss is a bug here. */
type ChartLookup = (name: string) => ChartSpec;

function verdictSection(report: Report): string {
  const g = report.generator;
  const m = report.machine;
  const generator = g.valid
    ? '<span class="ok">valid</span>'
    : `<span class="bad">invalid</span> (${g.reasons.length} ${g.reasons.length === 1 ? 'reason' : 'reasons'})`;
  const reasons = g.valid
    ? ''
    : `<div class="invalid-box"><b>The generator was not valid</b>, so its own delay may be counted as the server's:<ul class="reasons">${g.reasons
        .map((r) => `<li>${escapeHtml(r)}</li>`)
        .join('')}</ul></div>`;
  const facts: [string, string][] = [
    ['scenario', escapeHtml(report.scenario)],
    ['started', escapeHtml(formatStart(report.startedAt))],
    ['wall time', escapeHtml(formatWall(report.wallTimeMs))],
    ['generator', generator],
    ['skipped sends', escapeHtml(formatCount(g.skippedSends))],
    [
      'machine',
      escapeHtml(
        `${m.cores} cores, ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${m.node}, ${m.platform}/${m.arch}`,
      ),
    ],
  ];
  const gates =
    report.gates.length === 0
      ? '<p class="muted">This scenario has no gates.</p>'
      : table(
          ['gate', { text: 'actual', className: 'num' }, 'verdict', 'detail'],
          report.gates.map((r) => [
            { text: r.expr, className: 'mono' },
            { text: r.actualText, className: 'num' },
            verdictPill(r.verdict),
            { text: r.detail, className: 'detail' },
          ]),
          { className: 'gates', rowAttr: 'data-gate' },
        );
  return `<section id="verdict" class="card verdict-card v-border-${report.verdict}">
<div class="verdict-head">
  <div class="verdict v-${report.verdict}" data-verdict="${report.verdict}">${report.verdict.toUpperCase()}</div>
  <div>
    <div class="exit">exit code <b>${report.exitCode}</b> &middot; ${escapeHtml(verdictWords[report.verdict])}</div>
    <p class="description">${escapeHtml(report.description)}</p>
  </div>
</div>
<dl class="facts">${facts.map(([k, v]) => `<div class="fact-${k.replace(/\W+/g, '-')}"><dt>${escapeHtml(k)}</dt><dd>${v}</dd></div>`).join('')}</dl>
${reasons}
<h3>Gates</h3>
${gates}
</section>`;
}

function byKey(record: Record<string, number>): [string, number][] {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
}

function summarySection(report: Report): string {
  const d = report.devices;
  const l = report.delivery;
  const connections = figures([
    { label: 'requested', value: d.requested },
    { label: 'established', value: d.established },
    { label: 'held at end', value: d.heldAtEnd, hint: 'loadgen view' },
    {
      label: 'held at server',
      value: d.heldAtServer === null ? 'n/a' : d.heldAtServer,
      hint: "the node's own count",
    },
    { label: 'failed', value: { text: formatCount(d.failed), className: d.failed ? 'bad' : '' } },
    ...byKey(d.failuresByReason).map(([reason, n]) => ({ label: reason, value: n, sub: true })),
    ...(Object.keys(d.closesByCode).length ? [{ label: 'closes by code', value: '' }] : []),
    ...byKey(d.closesByCode).map(([code, n]) => ({ label: code, value: n, sub: true })),
  ]);
  const ledger = figures([
    { label: 'sent', value: l.sent },
    { label: 'accepted', value: l.accepted, hint: '2xx' },
    { label: 'delivered', value: l.delivered, hint: 'before the deadline' },
    {
      label: 'lost',
      value: { text: formatCount(l.lost), className: l.lost ? 'bad' : '' },
      hint: 'accepted, not delivered',
    },
    { label: 'rejected', value: l.rejected },
    ...byKey(l.rejectedByStatus).map(([status, n]) => ({
      label: `HTTP ${status}`,
      value: n,
      sub: true,
    })),
    { label: 'duplicates', value: l.duplicates },
    { label: 'late', value: l.late, hint: 'after the deadline; part of lost' },
    { label: 'unconfirmed', value: l.unconfirmed, hint: 'arrived without a 2xx' },
    // Older reports have no such field.
    ...((l.unaddressed ?? 0) > 0
      ? [{ label: 'unaddressed', value: l.unaddressed, hint: 'not sent: no device connected' }]
      : []),
    {
      label: 'rate',
      value: { text: formatPct(l.rate), className: 'strong' },
      hint: 'delivered / accepted',
    },
  ]);
  const latencyRow = (name: string, s: LatencySummary): CellInput[] => {
    const ms = (v: number): Cell => ({ text: s.count ? formatMsFixed(v) : '–', className: 'num' });
    return [
      { text: name, className: 'strong' },
      { text: formatCount(s.count), className: 'num' },
      ms(s.min),
      ms(s.mean),
      ms(s.p50),
      ms(s.p75),
      ms(s.p90),
      ms(s.p99),
      ms(s.p999),
      ms(s.max),
    ];
  };
  const lat = report.latency;
  const latency = table(
    ['series', 'count', 'min', 'mean', 'p50', 'p75', 'p90', 'p99', 'p99.9', 'max'],
    latencySeriesOf(report).flatMap((k) => {
      const s = lat[k]!;
      const cells = formatIntervals(s, ['p50', 'p75', 'p90', 'p99', 'p999']);
      if (!cells) return [latencyRow(k, s)];
      const ci = cells.map((text): Cell => ({ text, className: 'num muted' }));
      return [latencyRow(k, s), [{ text: '95% CI', className: 'muted' }, '', '', '', ...ci, '']];
    }),
    { className: 'latency' },
  );
  return `<section id="summary">
<h2>Summary</h2>
<div class="cards">
<div class="card"><h3>Connections</h3>${connections}</div>
<div class="card"><h3>Delivery ledger</h3>${ledger}</div>
</div>
<div class="card"><h3>Latency</h3>${latency}
<p class="muted">95% CI: where each percentile lies, 19 times in 20, from order statistics of the recorded samples, widened by batch means over the run&rsquo;s seconds (no shape assumed; &ldquo;..&rdquo;: the sample cannot bound it on that side). push: scheduled send &rarr; device; connect: attempt due &rarr; upgraded; api: scheduled send &rarr; HTTP answer; reconnect: connection lost &rarr; open again; room, d2d: scheduled send &rarr; device; <code>@region</code>: devices homed there.</p>
</div>
</section>`;
}

function seconds(v: number | null | undefined): string {
  return v === null || v === undefined ? '–' : `${v.toFixed(2)} s`;
}

function faultsSection(report: Report): string {
  // Reports written before faults existed have none; read defensively.
  const faults: FaultImpact[] = Array.isArray(report.faults) ? report.faults : [];
  const l = report.delivery;
  const storm = report.storm;
  const overall = `Overall ${escapeHtml(formatCount(l.lost))} of ${escapeHtml(
    formatCount(l.accepted),
  )} accepted messages were lost (${escapeHtml(formatCount(l.late))} of them late), ${escapeHtml(
    formatCount(l.rejected),
  )} were rejected.`;
  const stormText = storm
    ? `<p>Connections lost: ${escapeHtml(formatCount(storm.losses))}; reconnect attempts ${escapeHtml(
        formatCount(storm.reconnectAttempts),
      )} (${escapeHtml(storm.attemptsPerDevice === null ? '–' : storm.attemptsPerDevice.toFixed(2))} per loss); peak ${escapeHtml(
        formatCount(storm.peakAttemptsPerSec),
      )} reconnect attempts/s${storm.peakAtS === null ? '' : ` at ${escapeHtml(seconds(storm.peakAtS))}`}; back after a loss: p50 ${escapeHtml(
        seconds(storm.lossToBack.p50),
      )}, p99 ${escapeHtml(seconds(storm.lossToBack.p99))}, all ${escapeHtml(
        seconds(storm.lossToBack.p100),
      )}; never back: ${escapeHtml(formatCount(storm.notBack))}.</p>`
    : '';
  let body: string;
  if (faults.length === 0) {
    body = `<p>This run had no fault events. ${overall}</p>${stormText}`;
  } else {
    const num = (text: string, bad = false): Cell => ({ text, className: bad ? 'num bad' : 'num' });
    body = `${table(
      [
        'fault',
        'target',
        ...[
          'at',
          'until',
          'devices affected',
          'never back',
          'attempts / device',
          'peak reconnects/s',
          '50 % back',
          '99 % back',
          '100 % back',
          'messages lost',
        ].map((text) => ({ text, className: 'num' })),
        'note',
      ],
      faults.map((f) => [
        f.label,
        f.target,
        num(f.fired ? seconds(f.t) : 'not reached'),
        num(f.tEnd === null ? '–' : seconds(f.tEnd)),
        num(formatCount(f.affected)),
        num(formatCount(f.notBack), f.notBack > 0),
        num(f.attemptsPerDevice === null ? '–' : f.attemptsPerDevice.toFixed(2)),
        num(formatCount(f.peakAttemptsPerSec)),
        num(seconds(f.reconnected.p50)),
        num(seconds(f.reconnected.p99)),
        num(seconds(f.reconnected.p100)),
        num(formatCount(f.lostMessages), f.lostMessages > 0),
        f.error ??
          (f.skewSettledAfterS !== undefined
            ? `skew < 1.2 after ${f.skewSettledAfterS === null ? 'never' : seconds(f.skewSettledAfterS)}`
            : ''),
      ]),
      { className: 'faults' },
    )}${windowsTable(faults)}${notFoundText(faults)}<p>${overall}</p>${stormText}`;
  }
  return `<section id="faults" class="card"><h2>Faults, reconnect storms and losses</h2>${body}</section>`;
}

/** p99 of each series as long before each lasting fault as it stood, and while it stood. */
function windowsTable(faults: readonly FaultImpact[]): string {
  const windowed = faults.filter((f) => f.windows);
  if (windowed.length === 0) return '';
  const seen = new Set(
    windowed.flatMap((f) => [
      ...Object.keys(f.windows!.before.latency),
      ...Object.keys(f.windows!.during.latency),
    ]),
  );
  const series = WINDOW_SERIES.filter((k) => seen.has(k));
  const span = (w: { fromS: number; toS: number }) => `${w.fromS.toFixed(0)}-${w.toS.toFixed(0)} s`;
  return `<h3>p99 before &rarr; while each lasting fault stood</h3>${table(
    ['fault', 'before', 'during', ...series.map((text) => ({ text, className: 'num' }))],
    windowed.map((f) => {
      const { before, during } = f.windows!;
      return [
        f.label,
        span(before),
        span(during),
        ...series.map((k): Cell => {
          const a = before.latency[k];
          const b = during.latency[k];
          return {
            text: a?.count && b?.count ? `${formatMsFixed(a.p99)} → ${formatMsFixed(b.p99)}` : '–',
            className: 'num',
          };
        }),
      ];
    }),
    { className: 'windows' },
  )}<p class="muted">Per-second histograms merged over the seconds the fault stood and as long a stretch just before it; gates read them as <code>fault(&lt;label&gt;).before|during|rise.&lt;stat&gt;(&lt;series&gt;)</code>.</p>`;
}

/** After each datastore restart: how long pushes to connected devices still got 404. */
function notFoundText(faults: readonly FaultImpact[]): string {
  return faults
    .filter((f) => f.notFoundAfter)
    .map((f) => {
      const { count, forS } = f.notFoundAfter!;
      return `<p>${escapeHtml(f.label)}: ${escapeHtml(formatCount(count))} pushes answered 404 <code>not_connected</code> once the datastore answered again${
        count > 0 ? `, the last ${escapeHtml(forS.toFixed(3))} s after` : ''
      }.</p>`;
    })
    .join('');
}

function skewSection(report: Report, chart: ChartLookup): string {
  const s = report.skew;
  const ratio = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(3)}×`);
  const note =
    s.nodes.length <= 1
      ? 'One node: skew is 1 by definition.'
      : '1.000× means connections are spread evenly.';
  return `<section id="skew" class="card">
<h2>Per-node skew</h2>
${figures([
  { label: 'max', value: ratio(s.max), hint: 'worst sample' },
  { label: 'final', value: ratio(s.final), hint: 'last sample with connections' },
  { label: 'nodes', value: s.nodes.length ? s.nodes.join(', ') : 'none sampled' },
])}
<p class="muted">${escapeHtml(note)}</p>
<div class="charts">${chartBox(chart('skew'), { wide: true })}</div>
</section>`;
}

function generatorSection(report: Report, chart: ChartLookup): string {
  const g = report.generator;
  const rows = g.workers.map((w) => [
    { text: w.worker, className: 'mono' },
    { text: `${(w.elu * 100).toFixed(1)}%`, className: 'num' },
    { text: formatMsFixed(w.lagP99Ms), className: 'num' },
    { text: formatMsFixed(w.lagMaxMs), className: 'num' },
  ]);
  const listed = g.valid ? (g.warnings ?? []) : g.reasons;
  const reasons =
    listed.length === 0
      ? ''
      : `${g.valid ? '<p class="muted">Lag that stayed under the limit:</p>' : ''}<ul class="reasons">${listed.map((r) => `<li>${escapeHtml(r)}</li>`).join('')}</ul>`;
  const workers =
    rows.length === 0
      ? '<p class="muted">No per-worker figures were reported.</p>'
      : table(
          [
            'worker',
            ...['event-loop utilisation', 'delay p99', 'delay max'].map((text) => ({
              text,
              className: 'num',
            })),
          ],
          rows,
          { className: 'workers' },
        );
  return `<section id="generator" class="card">
<h2>Load generator health</h2>
${workers}
<p class="muted">Utilisation is over the run; delay is how late the thread's timers fired. Generator ${
    g.valid ? 'valid' : 'invalid'
  }; ${escapeHtml(formatCount(g.skippedSends))} skipped sends.</p>${reasons}
<div class="charts">${chartBox(chart('generator'), { wide: true })}</div>
</section>`;
}

/** What report.html inlines: uPlot's script and styles, then the page's own. */
interface PageAssets {
  uplotJs: string;
  uplotCss: string;
  pageJs: string;
  pageCss: string;
}

/**
 * Reads the inlined files at render time, as they are on disk. uPlot's come from the
 * installed package. Ours sit in html-assets/ beside this module: in the sources when
 * run with tsx, and in dist/ because `npm run build` copies the folder there (tsc does
 * not copy .js or .css files it does not compile).
 */
function readAssets(): PageAssets {
  const require = createRequire(import.meta.url);
  const read = (path: string) => readFileSync(path, 'utf8');
  const own = (name: string) =>
    read(fileURLToPath(new URL(`html-assets/${name}`, import.meta.url)));
  // No file contains a closing tag today; guard anyway. `<\/` means the same in JS, and a
  // stylesheet has no business closing its element.
  const script = (js: string) => js.replace(/<\/script/gi, '<\\/script');
  const style = (css: string) => css.replace(/<\/style/gi, '<\\/style');
  return {
    uplotJs: script(read(require.resolve('uplot/dist/uPlot.iife.min.js'))),
    uplotCss: style(read(require.resolve('uplot/dist/uPlot.min.css'))),
    pageJs: script(own('report.js')),
    pageCss: style(own('report.css')),
  };
}

/**
 * Renders a report as one HTML document that needs no network and no other
 * file: verdict and gates first, then summary tables, the latency percentile
 * curves, per-second timelines with phase/fault markers, per-node skew, losses
 * per fault and generator health. Every chart sits in an element with a stable
 * `data-chart` attribute; all report text is escaped.
 */
export function renderHtml(report: Report): string {
  const { uplotJs, uplotCss, pageJs, pageCss } = readAssets();
  const charts = reportCharts(report);
  const chart: ChartLookup = (name) => {
    const spec = charts.find((c) => c.name === name);
    if (!spec) throw new PushbenchError('PB_INTERNAL', `html report: no chart named "${name}"`);
    return spec;
  };
  const data: ChartData = {
    charts,
    markers: report.markers.map((m) => ({ t: m.t, kind: String(m.kind), label: m.label })),
  };
  const title = `pushbench ${report.scenario} — ${report.verdict}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pushbench ${escapeHtml(report.tool.version)}">
<title>${escapeHtml(title)}</title>
<style>${uplotCss}</style>
<style>${pageCss}</style>
</head>
<body>
<header>
  <h1>pushbench <span class="scenario">${escapeHtml(report.scenario)}</span></h1>
  <nav><a href="#verdict">verdict</a><a href="#summary">summary</a><a href="#percentiles">percentiles</a><a href="#timelines">timelines</a><a href="#skew">skew</a><a href="#faults">faults</a><a href="#generator">generator</a></nav>
</header>
<main>
${verdictSection(report)}
${summarySection(report)}
<section id="percentiles" class="card">
<h2>Latency by percentile</h2>
<p class="muted">HdrHistogram percentile curves: the x axis stretches the tail (each step is ten times rarer).</p>
<div class="charts">${chartBox(chart('percentiles'), { wide: true, caption: false })}</div>
</section>
<section id="timelines" class="card">
<h2>Timelines</h2>
<p class="muted">One point per report interval, as rates per second; dashed lines mark phase changes and faults.</p>
<div class="charts">
${chartBox(chart('connections'))}
${chartBox(chart('connection-events'))}
${chartBox(chart('messages'))}
${chartBox(chart('push-latency'))}
</div>
</section>
${skewSection(report, chart)}
${faultsSection(report)}
${generatorSection(report, chart)}
</main>
<footer>pushbench ${escapeHtml(report.tool.version)} &middot; report schema ${report.schemaVersion} &middot; self-contained, works offline</footer>
<script type="application/json" id="pushbench-report">${jsonForScript(report)}</script>
<script type="application/json" id="pushbench-charts">${jsonForScript(data)}</script>
<script>${uplotJs}</script>
<script>${pageJs}</script>
</body>
</html>
`;
}
