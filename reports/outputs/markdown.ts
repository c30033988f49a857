import type { LatencySummary } from '../../core/measure/histogram.js';
import { formatCount, formatMs } from '../../core/units.js';
import { formatInterval } from '../percentile-ci.js';
import { latencySeriesOf, type Report, type Verdict } from '../report.js';

const icon: Record<Verdict, string> = {
  pass: '✅',
  fail: '❌',
  inconclusive: '⚠️',
  invalid: '⛔',
};

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function pct(x: number): string {
  return x === 1 ? '100%' : `${(x * 100).toFixed(x > 0.9999 ? 4 : 3)}%`;
}

function latencyRow(name: string, s: LatencySummary): string {
  if (s.count === 0) return `| ${name} | 0 | - | - | - | - | - |`;
  const row = `| ${name} | ${formatCount(s.count)} | ${formatMs(s.p50)} | ${formatMs(s.p90)} | ${formatMs(s.p99)} | ${formatMs(s.p999)} | ${formatMs(s.max)} |`;
  if (!s.ci) return row;
  const i = s.ci;
  return `${row}\n| <sub>95% CI</sub> | | <sub>${formatInterval(i.p50)}</sub> | <sub>${formatInterval(i.p90)}</sub> | <sub>${formatInterval(i.p99)}</sub> | <sub>${formatInterval(i.p999)}</sub> | |`;
}

/** A Markdown summary fit for a CI job summary (e.g. `$GITHUB_STEP_SUMMARY`). */
export function renderMarkdown(report: Report): string {
  const d = report.devices;
  const l = report.delivery;
  const out: string[] = [];
  out.push(
    `## ${icon[report.verdict]} pushbench \`${cell(report.scenario)}\`: **${report.verdict.toUpperCase()}** (exit ${report.exitCode})`,
  );
  out.push('');
  if (report.description) out.push(`${cell(report.description)}`, '');
  if (!report.generator.valid) {
    out.push('> **Result invalid**: the load generator saturated.');
    for (const r of report.generator.reasons) out.push(`> - ${cell(r)}`);
    out.push('');
  } else if ((report.generator.warnings ?? []).length > 0) {
    out.push('> The load generator lagged, too briefly to invalidate the result:');
    for (const r of report.generator.warnings ?? []) out.push(`> - ${cell(r)}`);
    out.push('');
  }
  if (report.gates.length > 0) {
    out.push('| gate | actual | verdict | detail |', '|---|---|---|---|');
    for (const g of report.gates) {
      out.push(
        `| \`${cell(g.expr)}\` | ${cell(g.actualText)} | ${icon[g.verdict]} ${g.verdict} | ${cell(g.detail)} |`,
      );
    }
    out.push('');
  }
  out.push(
    '| connections | requested | established | held at end | held (server) | failed |',
    '|---|---:|---:|---:|---:|---:|',
    `| | ${formatCount(d.requested)} | ${formatCount(d.established)} | ${formatCount(d.heldAtEnd)} | ${d.heldAtServer === null ? '-' : formatCount(d.heldAtServer)} | ${formatCount(d.failed)} |`,
    '',
    '| delivery | sent | accepted | delivered | lost | rejected | duplicates | rate |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| | ${formatCount(l.sent)} | ${formatCount(l.accepted)} | ${formatCount(l.delivered)} | ${formatCount(l.lost)} | ${formatCount(l.rejected)} | ${formatCount(l.duplicates)} | ${pct(l.rate)} |`,
    '',
    '| latency | count | p50 | p90 | p99 | p99.9 | max |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...latencySeriesOf(report).map((k) => latencyRow(k, report.latency[k]!)),
    '',
    `<sub>${report.machine.cores} cores, ${(report.machine.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${report.machine.node}; started ${report.startedAt}; ${formatMs(report.wallTimeMs)} wall</sub>`,
    '',
  );
  return out.join('\n');
}
