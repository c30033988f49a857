import { stripVTControlCharacters } from 'node:util';
import { Chalk, type ChalkInstance } from 'chalk';
import type { LatencySummary } from '../../core/measure/histogram.js';
import { formatCount, formatMs } from '../../core/units.js';
import { formatIntervals } from '../percentile-ci.js';
import { latencySeriesOf, type Report, type Verdict } from '../report.js';
import { WINDOW_SERIES } from '../windows.js';

/** The join channel's average rates, KiB/s each way. */
function channelRate(ch: { bytesIn: number; bytesOut: number; seconds: number }): string {
  if (!(ch.seconds > 0)) return '-';
  const kib = (b: number) => (b / 1024 / ch.seconds).toFixed(1);
  return `${kib(ch.bytesIn)}/${kib(ch.bytesOut)} KiB/s`;
}

/** Whether to colour: never when NO_COLOR is set or the stream is not a terminal. */
export function colourFor(stream: NodeJS.WriteStream): ChalkInstance {
  const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';
  return new Chalk({ level: !noColor && stream.isTTY ? 1 : 0 });
}

function pct(x: number): string {
  if (x === 1) return '100%';
  const digits = x > 0.9999 ? 4 : x > 0.99 ? 3 : 2;
  return `${(x * 100).toFixed(digits)}%`;
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visible(cell).length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? padEnd(cell, widths[i] ?? 0) : padStart(cell, widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// Strip ANSI colour codes when measuring width.
function visible(s: string): string {
  return stripVTControlCharacters(s);
}
function padEnd(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - visible(s).length));
}
function padStart(s: string, width: number): string {
  return ' '.repeat(Math.max(0, width - visible(s).length)) + s;
}

/**
 * The balancers' retried and redispatched connects over the run: each node's
 * last cumulative count in the balancer timeline, added up (HAProxy's `wretr`
 * and `wredis`; the builtin balancer's redispatches, which has no retries);
 * undefined when there were none.
 */
function balancerRetries(
  report: Report,
): { retries: number | undefined; redispatches: number } | undefined {
  const last = new Map<string, { retries: number | undefined; redispatches: number }>();
  for (const sample of report.topology.balancer)
    for (const [nodeId, b] of Object.entries(sample.backends))
      if (b.retries !== undefined || b.redispatches !== undefined)
        last.set(nodeId, { retries: b.retries, redispatches: b.redispatches ?? 0 });
  if (last.size === 0) return undefined;
  let retries: number | undefined;
  let redispatches = 0;
  for (const v of last.values()) {
    if (v.retries !== undefined) retries = (retries ?? 0) + v.retries;
    redispatches += v.redispatches;
  }
  return { retries, redispatches };
}

/**
 * Devices that left a connect-slot queue (`balancer.maxConnecting`) unseen by
 * their node: gave up, or reset at the queue timeout. Each node's last counts,
 * added up.
 */
function queueLeavers(report: Report): { abandoned: number; timedOut: number } {
  const last = new Map<string, { abandoned: number; timedOut: number }>();
  for (const sample of report.topology.balancer)
    for (const [nodeId, b] of Object.entries(sample.backends))
      if (b.queueAbandoned !== undefined || b.queueTimedOut !== undefined)
        last.set(nodeId, { abandoned: b.queueAbandoned ?? 0, timedOut: b.queueTimedOut ?? 0 });
  const sum = { abandoned: 0, timedOut: 0 };
  for (const v of last.values()) {
    sum.abandoned += v.abandoned;
    sum.timedOut += v.timedOut;
  }
  return sum;
}

/** The row under a series: each percentile's 95 % interval, in the latency table's columns. */
function intervalRow(s: LatencySummary): string[] | null {
  const cells = formatIntervals(s, ['p50', 'p90', 'p99', 'p999']);
  return cells ? ['  95% CI', '', ...cells, ''] : null;
}

function latencyRow(name: string, s: LatencySummary): string[] {
  if (s.count === 0) return [name, '0', '-', '-', '-', '-', '-'];
  return [
    name,
    formatCount(s.count),
    formatMs(s.p50),
    formatMs(s.p90),
    formatMs(s.p99),
    formatMs(s.p999),
    formatMs(s.max),
  ];
}

/** The end-of-run summary for a terminal: connections, ledger, latency, gates, verdict. */
export function renderSummary(report: Report, c: ChalkInstance): string {
  const verdictColour: Record<Verdict, (s: string) => string> = {
    pass: c.green.bold,
    fail: c.red.bold,
    inconclusive: c.yellow.bold,
    invalid: c.magenta.bold,
  };
  const d = report.devices;
  const l = report.delivery;
  const out: string[] = [];
  out.push(
    c.bold(`pushbench ${report.scenario}`) + c.dim(`  (${formatMs(report.wallTimeMs)} wall)`),
  );
  out.push('');
  out.push(
    table([
      ['connections', 'requested', 'established', 'held at end', 'held (server)', 'failed'],
      [
        '',
        formatCount(d.requested),
        formatCount(d.established),
        formatCount(d.heldAtEnd),
        d.heldAtServer === null ? '-' : formatCount(d.heldAtServer),
        formatCount(d.failed),
      ],
    ]),
  );
  const reasons = Object.entries(d.failuresByReason);
  if (reasons.length > 0) {
    out.push(c.dim(`  connect failures: ${reasons.map(([k, v]) => `${k} ${v}`).join(', ')}`));
  }
  out.push('');
  out.push(
    table([
      ['delivery', 'sent', 'accepted', 'delivered', 'lost', 'rejected', 'dupes', 'rate'],
      [
        '',
        formatCount(l.sent),
        formatCount(l.accepted),
        formatCount(l.delivered),
        l.lost > 0 ? c.red(formatCount(l.lost)) : '0',
        formatCount(l.rejected),
        formatCount(l.duplicates),
        pct(l.rate),
      ],
    ]),
  );
  if ((l.unaddressed ?? 0) > 0) {
    out.push(
      c.yellow(
        `  ${formatCount(l.unaddressed)} scheduled messages not sent: no device was connected`,
      ),
    );
  }
  const rejected = Object.entries(l.rejectedByStatus);
  if (rejected.length > 0) {
    out.push(c.dim(`  rejected: ${rejected.map(([k, v]) => `${k} ${v}`).join(', ')}`));
  }
  out.push('');
  out.push(
    table([
      ['latency', 'count', 'p50', 'p90', 'p99', 'p99.9', 'max'],
      ...latencySeriesOf(report).flatMap((k) => {
        const s = report.latency[k]!;
        const ci = intervalRow(s);
        return ci ? [latencyRow(k, s), ci.map((cell) => c.dim(cell))] : [latencyRow(k, s)];
      }),
    ]),
  );
  out.push(
    c.dim(
      '  95% CI: where each percentile lies, 19 times in 20 (order statistics widened by batch means over the run\'s seconds, no shape assumed; ".." = the sample cannot bound it); ' +
        'push: scheduled send -> device; connect: attempt due -> upgraded; register: attempt due -> registry entry written; api: scheduled send -> HTTP answer; reconnect: lost -> open again; with TLS: tcp: attempt started -> TCP up; tls_full, tls_resumed: TCP up -> handshake done, by whether the session was resumed; upgrade: handshake done -> upgraded',
    ),
  );
  const byKind = report.deliveryByKind;
  if (byKind && (byKind.indirect.sent > 0 || byKind.room.sent > 0 || byKind.d2d.sent > 0)) {
    out.push('');
    out.push(
      table([
        ['by kind', 'sent', 'accepted', 'delivered', 'lost', 'rejected'],
        ...(['direct', 'indirect', 'room', 'd2d'] as const).map((k) => [
          k,
          formatCount(byKind[k].sent),
          formatCount(byKind[k].accepted),
          formatCount(byKind[k].delivered),
          byKind[k].lost > 0 ? c.red(formatCount(byKind[k].lost)) : '0',
          formatCount(byKind[k].rejected),
        ]),
      ]),
    );
  }
  const faults = Array.isArray(report.faults) ? report.faults.filter((f) => f.fired) : [];
  if (faults.length > 0) {
    const s = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}s`);
    out.push('');
    out.push(
      table([
        [
          'fault',
          'at',
          'affected',
          'noticed p50',
          'peak/s',
          '50% back',
          '99% back',
          'all back',
          'msgs lost',
        ],
        ...faults.map((f) => [
          f.label,
          s(f.t),
          formatCount(f.affected),
          s(f.noticed?.p50 ?? null),
          formatCount(f.peakAttemptsPerSec),
          s(f.reconnected.p50),
          s(f.reconnected.p99),
          f.notBack > 0 ? c.red(`${f.notBack} never`) : s(f.reconnected.p100),
          formatCount(f.lostMessages),
        ]),
      ]),
    );
    for (const f of faults) {
      if (!f.notFoundAfter) continue;
      const { count, forS } = f.notFoundAfter;
      out.push(
        c.dim(
          `  ${f.label}: ${formatCount(count)} pushes answered 404 not_connected once the datastore answered again` +
            (count > 0 ? `, the last ${forS.toFixed(3)}s after` : ''),
        ),
      );
    }
    const windowed = faults.filter((f) => f.windows);
    if (windowed.length > 0) {
      const seen = new Set(
        windowed.flatMap((f) => [
          ...Object.keys(f.windows!.before.latency),
          ...Object.keys(f.windows!.during.latency),
        ]),
      );
      const shown = WINDOW_SERIES.filter((k) => seen.has(k));
      out.push('');
      out.push(
        table([
          ['p99 before -> during', 'window', ...shown],
          ...windowed.map((f) => {
            const { before, during } = f.windows!;
            return [
              f.label,
              `${before.fromS.toFixed(0)}-${before.toS.toFixed(0)}s | ${during.fromS.toFixed(0)}-${during.toS.toFixed(0)}s`,
              ...shown.map((k) => {
                const a = before.latency[k];
                const b = during.latency[k];
                return a?.count && b?.count ? `${formatMs(a.p99)} -> ${formatMs(b.p99)}` : '-';
              }),
            ];
          }),
        ]),
      );
    }
    const st = report.storm;
    out.push(
      c.dim(
        `  storm: ${formatCount(st.losses)} connections lost, ${formatCount(st.reconnectAttempts)} reconnect attempts ` +
          `(${st.attemptsPerDevice ?? '-'} per loss), peak ${formatCount(st.peakAttemptsPerSec)}/s, ` +
          `back p99 ${s(st.lossToBack.p99)}`,
      ),
    );
  }
  const retried = balancerRetries(report);
  if (retried) {
    out.push(
      c.dim(
        retried.retries === undefined
          ? `  balancer: ${formatCount(retried.redispatches)} connects refused by their node redispatched to another`
          : `  haproxy: ${formatCount(retried.retries)} connects retried on the same node, ${formatCount(retried.redispatches)} redispatched to another (show stat wretr, wredis)`,
      ),
    );
  }
  const queue = queueLeavers(report);
  if (queue.abandoned + queue.timedOut > 0) {
    out.push(
      c.dim(
        `  balancer: ${formatCount(queue.abandoned)} devices gave up while queued for their node's connect slots (maxConnecting)${queue.timedOut > 0 ? `, ${formatCount(queue.timedOut)} reset at the queue timeout` : ''}; no node saw them`,
      ),
    );
  }
  if (report.gates.length > 0) {
    out.push('');
    out.push(
      table([
        ['gate', 'actual', 'verdict'],
        ...report.gates.map((g) => [
          g.expr,
          g.actualText,
          verdictColour[g.verdict](g.verdict) +
            (g.verdict === 'pass' ? '' : c.dim(`  ${g.detail}`)),
        ]),
      ]),
    );
  }
  const agents = report.generator.agents ?? [];
  if (agents.length > 0) {
    out.push('');
    out.push(
      table([
        [
          'agent',
          'from',
          'devices',
          'clock offset',
          '± (worst)',
          'drift',
          'cores',
          'RSS',
          'CPU',
          'lag p99',
          'channel in/out',
          'refused',
        ],
        ...agents.map((a) => [
          a.lost ? c.red(a.name) : a.name,
          a.address,
          formatCount(a.devices),
          a.clock ? formatMs(a.clock.offsetUs / 1000) : '-',
          a.clock ? formatMs(a.clock.worstUncertaintyUs / 1000) : '-',
          a.clock?.driftUsPerS == null ? '-' : `${a.clock.driftUsPerS.toFixed(1)} us/s`,
          String(a.facts.cores),
          a.resources ? `${(a.resources.rssBytes / 2 ** 20).toFixed(0)} MiB` : '-',
          a.resources ? `${a.resources.cpuSeconds.toFixed(1)} s` : '-',
          a.health ? formatMs(a.health.lagP99Ms) : '-',
          channelRate(a.channel),
          String(a.refused),
        ]),
      ]),
    );
    out.push(
      c.dim(
        `  latency measured on agents is on the coordinator's clock, within ± ${formatMs((report.generator.clockUncertaintyUs ?? 0) / 1000)} (the worst agent's clock uncertainty: half its best round trip)`,
      ),
    );
    for (const a of agents.filter((x) => x.lost)) out.push(c.red(`  ${a.name} lost: ${a.lost}`));
  }
  if (!report.generator.valid) {
    out.push('');
    out.push(c.magenta('generator saturated, results invalid:'));
    for (const r of report.generator.reasons) out.push(c.magenta(`  - ${r}`));
    // What else the run noticed (a node over its CPU quota, checks a starved node missed)
    // reads with the reasons: an invalid run is read to learn why.
    const warnings = report.generator.warnings ?? [];
    if (warnings.length > 0) {
      out.push(c.dim('and its warnings:'));
      for (const r of warnings) out.push(c.dim(`  - ${r}`));
    }
  } else if ((report.generator.warnings ?? []).length > 0) {
    out.push('');
    out.push(c.dim('generator warnings, result stands:'));
    for (const r of report.generator.warnings ?? []) out.push(c.dim(`  - ${r}`));
  }
  out.push('');
  out.push(
    `verdict: ${verdictColour[report.verdict](report.verdict.toUpperCase())}  (exit ${report.exitCode})`,
  );
  return out.join('\n');
}
