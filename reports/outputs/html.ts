/**
 * report.html: one self-contained page that opens offline. uPlot's script and
 * stylesheet are read from the installed package and inlined at render time,
 * the report and the chart data travel as JSON script blocks, and a small
 * inline script draws the charts. Everything derived from histograms (the
 * percentile curves) is computed here in Node, so the page only draws.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PushbenchError } from '../../core/errors.js';
import {
  decodeHistogram,
  type LatencySummary,
  percentileDistribution,
} from '../../core/measure/histogram.js';
import type { TimelinePoint } from '../../core/result.js';
import { formatCount } from '../../core/units.js';
import type { GateVerdict } from '../gates.js';
import { latencySeriesOf, type Report, skewOf, type Verdict } from '../report.js';
import type { FaultImpact } from '../storm.js';

/** Options of {@link renderHtml}; reserved for comparing runs, which is not built yet. */
export interface HtmlOptions {
  compare?: never;
}

/** How a chart's y values are formatted on its axis and in its legend. */
export type ChartUnit = 'count' | 'rate' | 'ms' | 'ratio' | 'percent';

/** One line of a chart: its values are aligned with the chart's `x`; null draws a gap. */
export interface ChartSeries {
  label: string;
  color: string;
  values: (number | null)[];
  /** Which y axis: `y` (left) or `y2` (right). */
  scale: 'y' | 'y2';
  dash?: number[];
}

/** A chart as the page draws it; `name` is its container's `data-chart` attribute. */
export interface ChartSpec {
  name: string;
  title: string;
  x: number[];
  /** The legend's text for each x. */
  xLabels: string[];
  xRange: [number, number];
  /** Explicit x ticks (the percentile axis); otherwise uPlot chooses, in seconds. */
  xTicks?: { x: number; label: string }[];
  yAxes: { scale: 'y' | 'y2'; unit: ChartUnit; label: string }[];
  series: ChartSeries[];
  /** Draw the report's markers (phase changes, faults) as labelled vertical lines. */
  markers: boolean;
}

const palette = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777'];
const colourAt = (i: number): string => palette[i % palette.length] ?? '#2563eb';
const seriesColour: Record<string, string> = {
  push: '#2563eb',
  connect: '#d97706',
  api: '#16a34a',
};

// --- pure helpers (exported for tests) -----------------------------------------------

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

/**
 * The percentile axis as HdrHistogram plots it: x = log10(1 / (1 - p/100)), so
 * 0 % is 0, 90 % is 1, 99 % is 2, 99.9 % is 3. 100 % has no position (Infinity).
 */
export function percentileToX(percentile: number): number {
  return Math.log10(100 / (100 - percentile));
}

/** The percentile at integer position `x` of the percentile axis: `0%`, `90%`, `99%`, `99.9%`. */
export function percentileTickLabel(x: number): string {
  if (x <= 0) return '0%';
  return `${(100 - 100 / 10 ** x).toFixed(Math.max(0, x - 2))}%`;
}

/** A percentile for the legend, with as many decimals as its position needs: `99.95%`. */
export function formatPercentile(percentile: number): string {
  if (percentile < 90) return `${Number(percentile.toFixed(1))}%`;
  const decimals = Math.max(0, Math.ceil(percentileToX(percentile) - 1e-9) - 1);
  return `${Number(percentile.toFixed(decimals + 1))}%`;
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

// --- chart data ------------------------------------------------------------------------

/** Histogram series in display order: the three the harness records, then any others. */
function histogramNames(report: Report): string[] {
  const known = ['push', 'connect', 'api'];
  const present = Object.keys(report.histograms);
  return [
    ...known.filter((k) => present.includes(k)),
    ...present.filter((k) => !known.includes(k)).sort(),
  ];
}

/**
 * The latency-by-percentile chart: every series is decoded and walked at the
 * same percentile levels, so they share one x array (shorter ones end in nulls).
 */
export function percentileChart(report: Report): ChartSpec {
  const curves = histogramNames(report).map((name) => ({
    name,
    points: percentileDistribution(decodeHistogram(report.histograms[name] ?? '')),
  }));
  const longest = curves.reduce<{ percentile: number }[]>(
    (acc, c) => (c.points.length > acc.length ? c.points : acc),
    [],
  );
  const x = longest.map((p) => percentileToX(p.percentile));
  const lastX = x.at(-1) ?? 0;
  const decades = Math.min(6, Math.max(2, Math.ceil(lastX - 1e-9)));
  const xTicks = Array.from({ length: decades + 1 }, (_, k) => ({
    x: k,
    label: percentileTickLabel(k),
  }));
  return {
    name: 'percentiles',
    title: 'Latency by percentile',
    x,
    xLabels: longest.map((p) => formatPercentile(p.percentile)),
    xRange: [0, decades],
    xTicks,
    yAxes: [{ scale: 'y', unit: 'ms', label: 'latency' }],
    series: curves.map((c, i) => ({
      label: c.points.length === 0 ? `${c.name} (no samples)` : c.name,
      color: seriesColour[c.name] ?? colourAt(i + 3),
      scale: 'y',
      values: x.map((_, j) => {
        const p = c.points[j];
        return p === undefined ? null : p.valueUs / 1000;
      }),
    })),
    markers: false,
  };
}

/** Per-interval counts as rates: an interval ends at `t` and starts at the previous point. */
function perSecond(timeline: readonly TimelinePoint[], count: (p: TimelinePoint) => number) {
  return timeline.map((p, i) => {
    const dt = p.t - (i === 0 ? 0 : (timeline[i - 1]?.t ?? 0));
    return dt > 0 ? Math.round((count(p) / dt) * 10) / 10 : null;
  });
}

/** The per-second charts: connections per node, connection events, messages, push latency, skew, generator. */
export function timelineCharts(report: Report): ChartSpec[] {
  const tl = report.timeline;
  const x = tl.map((p) => p.t);
  const xLabels = tl.map((p) => `${Number(p.t.toFixed(2))} s (${p.phase})`);
  const lastT = Math.max(0, x.at(-1) ?? 0, ...report.markers.map((m) => m.t));
  const xRange: [number, number] = [0, lastT > 0 ? lastT : 1];
  const base = { x, xLabels, xRange, markers: true };
  const nodes = [...new Set(tl.flatMap((p) => Object.keys(p.nodes ?? {})))].sort();
  /** A series of one figure per point; `rate` divides it by the interval's length. */
  const line = (
    label: string,
    color: string,
    value: (p: TimelinePoint) => number | null,
  ): ChartSeries => ({ label, color, values: tl.map(value), scale: 'y' });
  const rate = (
    label: string,
    color: string,
    count: (p: TimelinePoint) => number,
  ): ChartSeries => ({ label, color, values: perSecond(tl, count), scale: 'y' });
  return [
    {
      ...base,
      name: 'connections',
      title: 'Open connections: per node (server) and loadgen',
      yAxes: [{ scale: 'y', unit: 'count', label: 'connections' }],
      series: [
        ...nodes.map((n, i) => line(`${n} (server)`, colourAt(i), (p) => p.nodes?.[n] ?? null)),
        { ...line('open (loadgen)', '#111827', (p) => p.open), dash: [6, 4] },
      ],
    },
    {
      ...base,
      name: 'connection-events',
      title: 'Connect attempts, failures, disconnects, reconnect attempts and losses per second',
      yAxes: [{ scale: 'y', unit: 'rate', label: 'per second' }],
      series: [
        rate('connect attempts', '#2563eb', (p) => p.connectAttempts),
        rate('connect failures', '#dc2626', (p) => p.connectFailures),
        rate('disconnects', '#d97706', (p) => p.disconnects),
        rate('reconnect attempts', '#7c3aed', (p) => p.reconnectAttempts ?? 0),
        rate('connections lost', '#111827', (p) => p.losses ?? 0),
      ],
    },
    {
      ...base,
      name: 'messages',
      title: 'Messages per second: sent, accepted, received',
      yAxes: [{ scale: 'y', unit: 'rate', label: 'per second' }],
      series: [
        rate('sent', '#6b7280', (p) => p.sent),
        rate('accepted', '#2563eb', (p) => p.accepted),
        rate('received', '#16a34a', (p) => p.received),
      ],
    },
    {
      ...base,
      name: 'push-latency',
      title: 'Push latency p50 / p99 per second',
      yAxes: [{ scale: 'y', unit: 'ms', label: 'latency' }],
      series: [
        line('p50', '#2563eb', (p) => p.pushP50Ms),
        line('p99', '#dc2626', (p) => p.pushP99Ms),
      ],
    },
    {
      ...base,
      name: 'skew',
      title: 'Skew per second (max / mean of per-node counts)',
      yAxes: [{ scale: 'y', unit: 'ratio', label: 'max / mean' }],
      series: [line('skew', '#7c3aed', (p) => (p.nodes ? skewOf(p.nodes) : null))],
    },
    {
      ...base,
      name: 'generator',
      title: 'Per second: worst event-loop delay p99 and busiest thread utilisation',
      yAxes: [
        { scale: 'y', unit: 'ms', label: 'event-loop delay p99' },
        { scale: 'y2', unit: 'percent', label: 'busiest thread' },
      ],
      series: [
        line('worst event-loop delay p99', '#dc2626', (p) => p.maxLagP99Ms),
        { ...line('busiest thread utilisation', '#0891b2', (p) => p.maxElu * 100), scale: 'y2' },
      ],
    },
  ];
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
    latencySeriesOf(report).map((k) => latencyRow(k, lat[k]!)),
    { className: 'latency' },
  );
  return `<section id="summary">
<h2>Summary</h2>
<div class="cards">
<div class="card"><h3>Connections</h3>${connections}</div>
<div class="card"><h3>Delivery ledger</h3>${ledger}</div>
</div>
<div class="card"><h3>Latency</h3>${latency}
<p class="muted">push: scheduled send &rarr; device; connect: attempt due &rarr; upgraded; api: scheduled send &rarr; HTTP answer; reconnect: connection lost &rarr; open again; room, d2d: scheduled send &rarr; device; <code>@region</code>: devices homed there.</p>
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
    )}<p>${overall}</p>${stormText}`;
  }
  return `<section id="faults" class="card"><h2>Faults, reconnect storms and losses</h2>${body}</section>`;
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

function readAsset(specifier: string): string {
  const require = createRequire(import.meta.url);
  return readFileSync(require.resolve(specifier), 'utf8');
}

/**
 * Renders a report as one HTML document that needs no network and no other
 * file: verdict and gates first, then summary tables, the latency percentile
 * curves, per-second timelines with phase/fault markers, per-node skew, losses
 * per fault and generator health. Every chart sits in an element with a stable
 * `data-chart` attribute; all report text is escaped.
 */
export function renderHtml(report: Report, _options: HtmlOptions = {}): string {
  // uPlot's minified build contains no `</script` today; guard anyway, `<\/` means the same in JS.
  const uplotJs = readAsset('uplot/dist/uPlot.iife.min.js').replace(/<\/script/gi, '<\\/script');
  const uplotCss = readAsset('uplot/dist/uPlot.min.css').replace(/<\/style/gi, '<\\/style');
  const charts = [percentileChart(report), ...timelineCharts(report)];
  const chart: ChartLookup = (name) => {
    const spec = charts.find((c) => c.name === name);
    if (!spec) throw new PushbenchError('PB_INTERNAL', `html report: no chart named "${name}"`);
    return spec;
  };
  const markers = report.markers.map((m) => ({ t: m.t, kind: String(m.kind), label: m.label }));
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
<script type="application/json" id="pushbench-charts">${jsonForScript({ charts, markers })}</script>
<script>${uplotJs}</script>
<script>${clientJs}</script>
</body>
</html>
`;
}

const pageCss = `
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f5f6f8; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #111827; color: #f9fafb; padding: 14px 24px; display: flex; flex-wrap: wrap;
  align-items: baseline; gap: 8px 24px; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header .scenario { color: #93c5fd; }
header nav { display: flex; flex-wrap: wrap; gap: 14px; font-size: 13px; }
header nav a { color: #d1d5db; text-decoration: none; }
header nav a:hover { color: #fff; text-decoration: underline; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 8px; }
section { margin-bottom: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; }
section > .card + .card, .cards + .card { margin-top: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 340px), 1fr)); gap: 16px; }
h2 { font-size: 17px; margin: 0 0 12px; }
section#summary > h2 { margin-left: 2px; }
h3 { font-size: 14px; margin: 18px 0 8px; color: #374151; text-transform: uppercase; letter-spacing: .04em; }
.card > h3:first-child { margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
td.num, th.num, .latency td:not(:first-child), .latency th:not(:first-child) { text-align: right; white-space: nowrap; }
.figures th { font-weight: 500; width: 60%; }
#skew .figures { max-width: 480px; }
.figures td { text-align: right; white-space: nowrap; }
.figures tr.sub th { padding-left: 26px; color: var(--muted); font-weight: 400; }
.figures tr.sub td { color: var(--muted); }
.hint { display: block; font-size: 12px; color: var(--muted); font-weight: 400; }
.latency { font-size: 13px; }
.scroll { overflow-x: auto; }
.muted { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.strong { font-weight: 600; }
.bad { color: #b91c1c; font-weight: 600; }
.ok { color: #15803d; font-weight: 600; }
.detail { color: #374151; }
.verdict-card { border-left-width: 6px; }
.v-border-pass { border-left-color: #16a34a; }
.v-border-fail { border-left-color: #dc2626; }
.v-border-inconclusive { border-left-color: #ca8a04; }
.v-border-invalid { border-left-color: #9333ea; }
.verdict-head { display: flex; gap: 20px; align-items: center; flex-wrap: wrap; }
.verdict { font-size: 26px; font-weight: 800; letter-spacing: .06em; padding: 8px 18px; border-radius: 6px; }
.exit { font-size: 15px; }
.description { margin: 4px 0 0; color: #374151; }
.v-pass { background: #dcfce7; color: #166534; }
.v-fail { background: #fee2e2; color: #991b1b; }
.v-inconclusive { background: #fef3c7; color: #92400e; }
.v-invalid { background: #f3e8ff; color: #6b21a8; }
.pill { display: inline-block; }
td.pill { display: table-cell; }
.gates td.pill { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .04em; }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 10px 24px; margin: 16px 0 0; }
.facts div { min-width: 0; }
.facts dt { font-size: 12px; color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.fact-machine { grid-column: span 2; }
.invalid-box { margin-top: 14px; padding: 10px 14px; border-radius: 6px; background: #faf5ff; border: 1px solid #e9d5ff; color: #581c87; }
.reasons { margin: 6px 0 0; padding-left: 20px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); gap: 16px; }
.chart { margin: 0; min-width: 0; }
.chart.wide { grid-column: 1 / -1; }
.chart figcaption { font-weight: 600; font-size: 13px; margin-bottom: 6px; }
.plot { min-height: 300px; }
.plot .u-legend { font-size: 12px; }
.plot .error { color: #b91c1c; }
footer { text-align: center; color: var(--muted); font-size: 12px; padding: 8px 0 24px; }
@media (max-width: 560px) { main { padding: 12px; } .charts { grid-template-columns: 1fr; } }
`;

/**
 * The page's own script: plain ES2017, no template literals, so it can live in
 * this TypeScript string unchanged. It reads the chart JSON and draws each chart
 * with uPlot into its `[data-chart]` container, redrawing on resize.
 */
const clientJs = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('pushbench-charts').textContent);
  var markerColours = { phase: '#6b7280', fault: '#dc2626' };
  var nf = function (digits) {
    return new Intl.NumberFormat('en-US', { maximumFractionDigits: digits });
  };
  var n0 = nf(0), n1 = nf(1), n2 = nf(2), n3 = nf(3);
  function ms(v) {
    var a = Math.abs(v);
    return (a < 1 ? n3 : a < 10 ? n2 : a < 100 ? n1 : n0).format(v) + ' ms';
  }
  var formats = {
    count: function (v) { return n0.format(v); },
    rate: function (v) { return (Math.abs(v) < 10 ? n1 : n0).format(v) + '/s'; },
    ms: ms,
    ratio: function (v) { return n2.format(v) + '\\u00d7'; },
    percent: function (v) { return n0.format(v) + '%'; }
  };
  function yRange(u, min, max) {
    if (max == null || !isFinite(max) || max <= 0) return [0, 1];
    return [0, max * 1.2];
  }

  // Marker labels sit in a band above the plot, in up to MARKER_ROWS staggered rows,
  // so they never hide data; vertical dashed lines cross the plot at each instant.
  var MARKER_ROWS = 3, MARKER_ROW_PX = 13;
  function markerPlugin(markers) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx, dpr = uPlot.pxRatio;
          var left = u.bbox.left, right = left + u.bbox.width, top = u.bbox.top, bottom = top + u.bbox.height;
          var rowH = MARKER_ROW_PX * dpr;
          var rowEnds = [];
          ctx.save();
          ctx.font = (11 * dpr) + 'px system-ui, sans-serif';
          ctx.textAlign = 'left';
          ctx.textBaseline = 'bottom';
          markers.forEach(function (m) {
            var x = Math.round(u.valToPos(m.t, 'x', true)) + 0.5;
            if (!isFinite(x) || x < left - 1 || x > right + 1) return;
            var colour = markerColours[m.kind] || '#6b7280';
            var w = ctx.measureText(m.label).width;
            // Text starts at the line, or ends at it when it would run off the right edge.
            var x0 = x + 3 * dpr + w > right + 8 * dpr ? x - 3 * dpr - w : x + 3 * dpr;
            var row = 0;
            while (row < MARKER_ROWS - 1 && rowEnds[row] !== undefined && rowEnds[row] > x0) row++;
            rowEnds[row] = Math.max(rowEnds[row] || -Infinity, x0 + w + 6 * dpr);
            var y = top - 2 * dpr - row * rowH;
            ctx.strokeStyle = colour;
            ctx.lineWidth = dpr;
            ctx.setLineDash([4 * dpr, 3 * dpr]);
            ctx.beginPath();
            ctx.moveTo(x, y - rowH + 2 * dpr);
            ctx.lineTo(x, bottom);
            ctx.stroke();
            ctx.fillStyle = colour;
            ctx.fillText(m.label, x0, y);
          });
          ctx.restore();
        }]
      }
    };
  }

  function options(spec, width) {
    var axes = [{
      stroke: '#374151',
      grid: { stroke: '#eef0f3' },
      ticks: { stroke: '#d1d5db' }
    }];
    if (spec.xTicks) {
      axes[0].splits = function () { return spec.xTicks.map(function (t) { return t.x; }); };
      axes[0].values = function () { return spec.xTicks.map(function (t) { return t.label; }); };
      axes[0].label = 'percentile';
    } else {
      axes[0].values = function (u, splits) { return splits.map(function (v) { return n1.format(v) + ' s'; }); };
      axes[0].label = 'seconds since start';
    }
    var scales = { x: { time: false, range: function () { return spec.xRange; } } };
    spec.yAxes.forEach(function (a, i) {
      var fmt = formats[a.unit];
      scales[a.scale] = { range: yRange };
      axes.push({
        scale: a.scale,
        side: i === 0 ? 3 : 1,
        label: a.label,
        size: 70,
        stroke: '#374151',
        grid: { show: i === 0, stroke: '#eef0f3' },
        ticks: { stroke: '#d1d5db' },
        values: function (u, splits) { return splits.map(function (v) { return v == null ? '' : fmt(v); }); }
      });
    });
    var unitOf = {};
    spec.yAxes.forEach(function (a) { unitOf[a.scale] = a.unit; });
    var series = [{
      label: spec.xTicks ? 'percentile' : 'time',
      value: function (u, v, si, idx) { return idx == null ? '' : (spec.xLabels[idx] || ''); }
    }];
    spec.series.forEach(function (s) {
      var fmt = formats[unitOf[s.scale]];
      series.push({
        label: s.label,
        scale: s.scale,
        stroke: s.color,
        width: 2,
        dash: s.dash,
        spanGaps: false,
        value: function (u, v) { return v == null ? '\\u2013' : fmt(v); }
      });
    });
    return {
      width: width,
      height: 280,
      scales: scales,
      axes: axes,
      series: series,
      padding: [spec.markers ? MARKER_ROWS * MARKER_ROW_PX + 6 : 12, null, null, null],
      cursor: { drag: { x: false, y: false } },
      plugins: spec.markers ? [markerPlugin(data.markers)] : []
    };
  }

  data.charts.forEach(function (spec) {
    var box = document.querySelector('[data-chart="' + spec.name + '"]');
    if (!box) return;
    try {
      var aligned = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var plot = new uPlot(options(spec, Math.max(280, box.clientWidth)), aligned, box);
      if (typeof ResizeObserver === 'function') {
        var last = box.clientWidth;
        new ResizeObserver(function () {
          var w = Math.max(280, box.clientWidth);
          if (w !== last) { last = w; plot.setSize({ width: w, height: 280 }); }
        }).observe(box);
      }
    } catch (err) {
      box.textContent = 'chart failed: ' + err;
      box.className += ' error';
      console.error('pushbench: chart ' + spec.name + ' failed', err);
    }
  });
})();
`;
