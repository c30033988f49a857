import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { decodeHistogram, percentileDistribution } from '../../core/measure/histogram.js';
import { COMPARISON_LEGEND, type Comparison, comparisonCells } from '../compare.js';
import type { Report } from '../report.js';
import { escapeHtml, jsonForScript } from './html.js';
import { percentileTickLabel, percentileToX } from './html-charts.js';

const palette = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777'];

function asset(specifier: string): string {
  return readFileSync(createRequire(import.meta.url).resolve(specifier), 'utf8');
}

/** Push-latency percentile curves of each run, on one shared percentile axis. */
function curves(reports: readonly Report[], labels: readonly string[]) {
  const runs = reports.map((r, i) => ({
    label: labels[i] ?? r.scenario,
    points: r.histograms.push ? percentileDistribution(decodeHistogram(r.histograms.push)) : [],
  }));
  const xs = [
    ...new Set(runs.flatMap((r) => r.points.map((p) => percentileToX(p.percentile)))),
  ].sort((a, b) => a - b);
  const series = runs.map((run) => {
    const byX = new Map(run.points.map((p) => [percentileToX(p.percentile), p.valueUs / 1000]));
    return xs.map((x) => byX.get(x) ?? null);
  });
  const decades = Math.min(6, Math.max(2, Math.ceil((xs.at(-1) ?? 0) - 1e-9)));
  return {
    labels: runs.map((r) => r.label),
    xs,
    series,
    ticks: Array.from({ length: decades + 1 }, (_, k) => ({ x: k, label: percentileTickLabel(k) })),
    decades,
  };
}

/**
 * The comparison as one self-contained HTML page: each run's verdict, the
 * metric table with deltas against the first run and the better run marked,
 * and (when the reports are given) their push-latency percentile curves
 * overlaid on HdrHistogram's 1/(1-percentile) axis. uPlot is inlined.
 */
export function renderComparisonHtml(
  comparison: Comparison,
  reports: readonly Report[] = [],
): string {
  const cells = comparisonCells(comparison);
  const [head, verdicts, ...body] = cells;
  const bestIndex = comparison.rows.map((r) => r.best);
  const thead = `<tr>${(head ?? []).map((h, i) => `<th${i === 0 ? '' : ' class="num"'}>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const verdictRow = `<tr class="verdicts">${(verdicts ?? [])
    .map((v, i) =>
      i === 0
        ? `<th>${escapeHtml(v)}</th>`
        : `<td class="num v-${escapeHtml(v)}">${escapeHtml(v)}</td>`,
    )
    .join('')}</tr>`;
  const rows = body
    .map(
      (row, r) =>
        `<tr>${row
          .map((cell, i) =>
            i === 0
              ? `<th>${escapeHtml(cell)}</th>`
              : `<td class="num${bestIndex[r] === i - 1 ? ' best' : ''}">${escapeHtml(cell)}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('\n');
  const chartData =
    reports.length > 0
      ? curves(
          reports,
          comparison.runs.map((r) => r.label),
        )
      : null;
  const chart = chartData
    ? `<section class="card"><h2>Push latency by percentile</h2>
<div data-chart="compare-percentiles" class="chart"></div>
<p class="muted">HdrHistogram percentile curves of each run; the x axis stretches the tail (each step is ten times rarer).</p></section>`
    : '';
  const script = chartData
    ? `<script>${asset('uplot/dist/uPlot.iife.min.js').replace(/<\/script/gi, '<\\/script')}</script>
<script>
(function () {
  var d = JSON.parse(document.getElementById('compare-data').textContent);
  var colours = ${JSON.stringify(palette)};
  var el = document.querySelector('[data-chart="compare-percentiles"]');
  var opts = {
    width: Math.max(320, el.clientWidth), height: 340,
    scales: { x: { time: false, range: [0, d.decades] } },
    axes: [
      { splits: function () { return d.ticks.map(function (t) { return t.x; }); },
        values: function () { return d.ticks.map(function (t) { return t.label; }); }, label: 'percentile' },
      { label: 'latency (ms)' }
    ],
    series: [{ label: 'percentile' }].concat(d.labels.map(function (l, i) {
      return { label: l, stroke: colours[i % colours.length], width: 2, spanGaps: true };
    }))
  };
  new uPlot(opts, [d.xs].concat(d.series), el);
})();
</script>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pushbench comparison</title>
${chartData ? `<style>${asset('uplot/dist/uPlot.min.css')}</style>` : ''}
<style>
body { margin: 0; background: #f5f6f8; color: #1f2937; font: 14px/1.45 system-ui, sans-serif; }
header { background: #111827; color: #f9fafb; padding: 14px 24px; } header h1 { margin: 0; font-size: 18px; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px 20px; margin-bottom: 20px; overflow-x: auto; }
h2 { font-size: 17px; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; white-space: nowrap; }
.num { text-align: right; } th { font-weight: 500; }
td.best { background: #dcfce7; font-weight: 600; }
.v-pass { color: #15803d; font-weight: 600; } .v-fail { color: #b91c1c; font-weight: 600; }
.v-inconclusive { color: #b45309; font-weight: 600; } .v-invalid { color: #7e22ce; font-weight: 600; }
.muted { color: #6b7280; font-size: 13px; }
</style></head>
<body><header><h1>pushbench comparison: ${escapeHtml(comparison.runs.map((r) => r.label).join(' vs '))}</h1></header>
<main>
<section class="card"><h2>Side by side</h2>
<p class="muted">Deltas are against the first run; the better run per metric is highlighted.</p>
<table><thead>${thead}</thead><tbody>${verdictRow}
${rows}</tbody></table>
<p class="muted">${escapeHtml(COMPARISON_LEGEND)}</p></section>
${chart}
</main>
<script type="application/json" id="compare-data">${jsonForScript(chartData ?? {})}</script>
${script}
</body></html>
`;
}
