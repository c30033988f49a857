/**
 * The capacity report: what a capacity search measured, step by step, and the
 * figures a fleet plan needs (knee, absorption rate, price). Written as
 * capacity.json, capacity.html (latency vs load, self-contained) and a text summary.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { PushbenchError } from '../core/errors.js';
import type { MachineFacts } from '../core/machine.js';
import { formatBytes, formatCount } from '../core/units.js';
import { escapeHtml, jsonForScript } from '../reports/outputs/html.js';
import type { NodeProfileInput } from '../scenarios/schema.js';

/** One load step: connections held and messages per second on one node. */
export interface CapacityStep {
  connections: number;
  rateHz: number;
  held: number;
  heldAtServer: number | null;
  deliveredPerSec: number;
  lost: number;
  /** Push latency, ms. */
  push: { p50: number; p99: number; max: number };
  connectP99: number;
  /** The node's RSS at the end of the step, from /proc. */
  nodeRssBytes?: number;
  /** CPU cores the node used while publishing, from /proc. */
  nodeCores?: number;
  pass: boolean;
  generatorValid: boolean;
  failure?: string;
  gates: Array<{ expr: string; actual: string; verdict: string }>;
  reportPath?: string;
}

/** One herd step: the knee's devices all connecting at one rate. */
export interface HerdStep {
  connectRate: number;
  devices: number;
  held: number;
  connectP50: number;
  connectP99: number;
  /** Most connects accepted in one second. */
  peakAcceptedPerSec: number;
  pass: boolean;
  generatorValid: boolean;
  failure?: string;
}

/** capacity.json. */
export interface CapacityReport {
  schemaVersion: 1;
  kind: 'capacity';
  tool: { name: 'pushbench'; version: string };
  profile: string;
  profileInput: NodeProfileInput;
  slo: string[];
  startedAt: string;
  wallTimeMs: number;
  settings: Record<string, number | string>;
  steps: CapacityStep[];
  /** The largest step within the SLO: connections held and messages delivered per second. */
  knee: { connections: number; messagesPerSec: number } | null;
  /** What stopped the search. */
  limitedBy: string;
  /** Slope of node RSS over held connections across passing steps. */
  memoryPerConnectionBytes: number | null;
  /** Slope of node CPU (cores) over delivered msgs/s, per 1,000 msgs/s. */
  coresPer1kMsgsPerSec: number | null;
  herd: { steps: HerdStep[]; absorptionPerSec: number | null; slo: string; limitedBy: string };
  /**
   * With `--tls`: the node's CPU per connect, µs, plain, with a full TLS
   * handshake and with a resumed one (capacity/handshakes.ts), the share the
   * resumed round really resumed, and the node's RSS per held device, KB. The
   * herd steps ran over TLS, their connects full handshakes.
   */
  tls?: {
    devices: number;
    plainConnectUs: number;
    fullConnectUs: number;
    resumedConnectUs: number;
    resumedShare: number;
    plainKbPerDevice: number;
    tlsKbPerDevice: number;
  };
  price: number | null;
  machine: MachineFacts;
}

/** Reads and checks a capacity.json (for `plan --from`); one-line errors. */
export function readCapacityReport(path: string): CapacityReport {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PushbenchError(
      'PB_USAGE',
      code === 'ENOENT'
        ? `capacity report ${path} does not exist`
        : `capacity report ${path} is not JSON: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  const r = value as Partial<CapacityReport>;
  if (r?.kind !== 'capacity' || r.schemaVersion !== 1 || !Array.isArray(r.steps)) {
    throw new PushbenchError(
      'PB_USAGE',
      `${path} is not a pushbench capacity report (write one with \`pushbench capacity --out DIR\`)`,
    );
  }
  if (!r.knee) {
    throw new PushbenchError(
      'PB_USAGE',
      `${path}: the capacity search found no step within its SLO (${r.limitedBy ?? 'see the report'}); nothing to plan from`,
    );
  }
  return r as CapacityReport;
}

function ms(v: number): string {
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)}ms`;
}

/** The text summary of a capacity search. */
export function formatCapacity(r: CapacityReport): string {
  const rows: string[][] = [
    ['connections', 'msgs/s', 'held', 'push p50', 'push p99', 'node RSS', 'node CPU', 'result'],
    ...r.steps.map((s) => [
      formatCount(s.connections),
      formatCount(s.deliveredPerSec),
      formatCount(s.held),
      ms(s.push.p50),
      ms(s.push.p99),
      s.nodeRssBytes === undefined ? '-' : formatBytes(s.nodeRssBytes),
      s.nodeCores === undefined ? '-' : `${(s.nodeCores * 100).toFixed(0)}%`,
      s.pass ? 'pass' : `FAIL ${s.failure ?? ''}`.slice(0, 90),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const table = rows
    .map((row) =>
      row
        .map((c, i) =>
          i === row.length - 1 ? c : i === 0 ? c.padStart(widths[i]!) : c.padStart(widths[i]!),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
  const lines = [`capacity of one "${r.profile}" node, SLO: ${r.slo.join(', ')}`, '', table, ''];
  lines.push(
    r.knee
      ? `knee: ${formatCount(r.knee.connections)} connections held with ${formatCount(r.knee.messagesPerSec)} msgs/s delivered within the SLO`
      : 'knee: none (the first step already failed)',
  );
  lines.push(`limited by: ${r.limitedBy}`);
  lines.push(
    `memory per connection: ${r.memoryPerConnectionBytes === null ? 'n/a' : formatBytes(r.memoryPerConnectionBytes)} (node RSS slope)`,
  );
  lines.push(
    `CPU per 1k msgs/s: ${r.coresPer1kMsgsPerSec === null ? 'n/a' : `${(r.coresPer1kMsgsPerSec * 100).toFixed(1)}% of a core`}`,
  );
  const herd = r.herd.steps
    .map(
      (h) => `${formatCount(h.connectRate)}/s ${h.pass ? 'ok' : 'FAIL'} (p99 ${ms(h.connectP99)})`,
    )
    .join(', ');
  lines.push(
    r.herd.steps.length === 0 && r.herd.limitedBy === 'not measured'
      ? 'herd absorption: not measured (--no-herd)'
      : `herd absorption: ${r.herd.absorptionPerSec === null ? 'n/a' : `${formatCount(r.herd.absorptionPerSec)} connects/s`} within ${r.herd.slo}${herd ? ` [${herd}]` : ''}; limited by ${r.herd.limitedBy}`,
  );
  if (r.tls) {
    const t = r.tls;
    lines.push(
      `TLS (devices over wss://, herd steps full handshakes): node CPU per connect plain ${t.plainConnectUs} us, ` +
        `full handshake ${t.fullConnectUs} us (${(t.fullConnectUs / Math.max(1, t.plainConnectUs)).toFixed(1)}x), ` +
        `resumed ${t.resumedConnectUs} us (${(t.resumedConnectUs / Math.max(1, t.plainConnectUs)).toFixed(1)}x; ${Math.round(t.resumedShare * 100)}% resumed); ` +
        `node RSS per device ${t.plainKbPerDevice} KB plain, ${t.tlsKbPerDevice} KB TLS`,
    );
  }
  if (r.price !== null) lines.push(`price: ${r.price} per node-hour`);
  return lines.join('\n');
}

/** Capacity reports of two or more profiles side by side: "what changes if we move from a to b". */
export function formatCapacityComparison(
  reports: readonly CapacityReport[],
  devices?: number,
): string {
  const base = reports[0];
  if (!base) return '';
  const perNode = (r: CapacityReport) => r.knee?.connections ?? 0;
  const rows: string[][] = [
    [
      'profile',
      'conns/node',
      'msgs/s',
      'KB/conn',
      'absorb/s',
      'price/h',
      ...(devices ? ['nodes', 'cost/h'] : []),
      'vs first',
    ],
  ];
  for (const r of reports) {
    const nodes = devices && perNode(r) > 0 ? Math.ceil(devices / perNode(r)) : null;
    const ratio = perNode(base) > 0 ? perNode(r) / perNode(base) : null;
    rows.push([
      r.profile,
      formatCount(perNode(r)),
      formatCount(r.knee?.messagesPerSec ?? 0),
      r.memoryPerConnectionBytes === null ? '-' : (r.memoryPerConnectionBytes / 1024).toFixed(1),
      r.herd.absorptionPerSec === null ? '-' : formatCount(r.herd.absorptionPerSec),
      r.price === null ? '-' : String(r.price),
      ...(devices
        ? [
            nodes === null ? '-' : formatCount(nodes),
            nodes !== null && r.price !== null ? (nodes * r.price).toFixed(2) : '-',
          ]
        : []),
      ratio === null ? '-' : `${ratio.toFixed(2)}x conns`,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows
    .map((row) =>
      row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '),
    )
    .join('\n');
}

function asset(specifier: string): string {
  return readFileSync(createRequire(import.meta.url).resolve(specifier), 'utf8');
}

/** capacity.html: the steps table and latency (p50, p99) and throughput against held connections. */
export function renderCapacityHtml(r: CapacityReport): string {
  const uplotJs = asset('uplot/dist/uPlot.iife.min.js').replace(/<\/script/gi, '<\\/script');
  const uplotCss = asset('uplot/dist/uPlot.min.css').replace(/<\/style/gi, '<\\/style');
  const steps = r.steps;
  const data = {
    x: steps.map((s) => s.held),
    p50: steps.map((s) => s.push.p50),
    p99: steps.map((s) => s.push.p99),
    rate: steps.map((s) => s.deliveredPerSec),
  };
  const rows = steps
    .map(
      (s) =>
        `<tr class="${s.pass ? 'pass' : 'fail'}"><td>${formatCount(s.connections)}</td><td>${formatCount(s.held)}</td><td>${formatCount(
          s.deliveredPerSec,
        )}</td><td>${ms(s.push.p50)}</td><td>${ms(s.push.p99)}</td><td>${
          s.nodeRssBytes === undefined ? '-' : escapeHtml(formatBytes(s.nodeRssBytes))
        }</td><td>${s.nodeCores === undefined ? '-' : `${(s.nodeCores * 100).toFixed(0)}%`}</td><td>${
          s.pass ? 'pass' : escapeHtml(`FAIL ${s.failure ?? ''}`)
        }</td></tr>`,
    )
    .join('\n');
  const summary = escapeHtml(formatCapacity(r).split('\n').slice(-6).join('\n'));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pushbench capacity: ${escapeHtml(r.profile)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${uplotCss}</style>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#111827;background:#f9fafb}
h1{font-size:20px}.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin:16px 0}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:right}
td:last-child,th:last-child{text-align:left}tr.fail td{color:#b91c1c}pre{white-space:pre-wrap}
</style></head><body>
<h1>Capacity of one <code>${escapeHtml(r.profile)}</code> node</h1>
<div class="card"><p>SLO: <code>${escapeHtml(r.slo.join(', '))}</code></p><pre id="summary">${summary}</pre></div>
<div class="card"><h2>Latency and throughput against load</h2><div data-chart="capacity"></div></div>
<div class="card"><h2>Steps</h2><table class="steps"><thead><tr><th>connections</th><th>held</th><th>msgs/s</th><th>push p50</th><th>push p99</th><th>node RSS</th><th>node CPU</th><th>result</th></tr></thead>
<tbody>${rows}</tbody></table></div>
<script>${uplotJs}</script>
<script>
(function () {
  var d = ${jsonForScript(data)};
  var box = document.querySelector('[data-chart="capacity"]');
  var opts = {
    width: Math.max(320, box.clientWidth), height: 320,
    scales: { x: { time: false }, y: {}, y2: {} },
    axes: [
      { label: 'connections held' },
      { scale: 'y', label: 'push latency (ms)' },
      { scale: 'y2', side: 1, label: 'delivered msgs/s', grid: { show: false } }
    ],
    series: [
      { label: 'connections' },
      { label: 'p50', stroke: '#2563eb', width: 2, scale: 'y', points: { show: true } },
      { label: 'p99', stroke: '#dc2626', width: 2, scale: 'y', points: { show: true } },
      { label: 'msgs/s', stroke: '#16a34a', width: 2, scale: 'y2', dash: [6, 4], points: { show: true } }
    ]
  };
  new uPlot(opts, [d.x, d.p50, d.p99, d.rate], box);
})();
</script>
<script type="application/json" id="capacity-data">${jsonForScript(r)}</script>
</body></html>`;
}

/** Writes capacity.json, capacity.html and capacity.txt into `dir`; returns their paths. */
export function writeCapacityReport(r: CapacityReport, dir: string): string[] {
  const out = resolve(dir);
  mkdirSync(out, { recursive: true });
  const files = [join(out, 'capacity.json'), join(out, 'capacity.html'), join(out, 'capacity.txt')];
  writeFileSync(files[0]!, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(files[1]!, renderCapacityHtml(r));
  writeFileSync(files[2]!, `${formatCapacity(r)}\n`);
  return files;
}
