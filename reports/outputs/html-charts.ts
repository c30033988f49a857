/**
 * The charts of report.html, built from a report in Node: the latency-by-percentile
 * curves (decoded from the report's histograms) and the per-second timelines. The page
 * only draws what these return (see chart-data.ts for the shapes, html-assets/report.js
 * for the drawing).
 */

import { decodeHistogram, percentileDistribution } from '../../core/measure/histogram.js';
import { type Report, skewOf } from '../report.js';
import type { ChartSeries, ChartSpec } from './chart-data.js';

/** One timeline point of a report, as the charts read it. */
type TimelinePoint = Report['timeline'][number];

const palette = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777'];
const colourAt = (i: number): string => palette[i % palette.length] ?? '#2563eb';
const seriesColour: Record<string, string> = {
  push: '#2563eb',
  connect: '#d97706',
  api: '#16a34a',
};

// --- the percentile axis (exported for tests and the comparison page) ----------------

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

// --- chart specs ------------------------------------------------------------------------

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

/** Builds one series from a report's timeline. */
interface SeriesKit {
  /** One figure per point. */
  line(label: string, color: string, value: (p: TimelinePoint) => number | null): ChartSeries;
  /** A count per point, divided by the interval's length. */
  rate(label: string, color: string, count: (p: TimelinePoint) => number): ChartSeries;
  /** The nodes that reported connection counts, sorted. */
  nodes: string[];
}

/** A timeline chart: everything but the x axis, which all of them share. */
type TimelineChart = Pick<ChartSpec, 'name' | 'title' | 'yAxes'> & {
  series(kit: SeriesKit): ChartSeries[];
};

/** The per-second charts, in page order. */
const TIMELINE_CHARTS: readonly TimelineChart[] = [
  {
    name: 'connections',
    title: 'Open connections: per node (server) and loadgen',
    yAxes: [{ scale: 'y', unit: 'count', label: 'connections' }],
    series: ({ line, nodes }) => [
      ...nodes.map((n, i) => line(`${n} (server)`, colourAt(i), (p) => p.nodes?.[n] ?? null)),
      { ...line('open (loadgen)', '#111827', (p) => p.open), dash: [6, 4] },
    ],
  },
  {
    name: 'connection-events',
    title: 'Connect attempts, failures, disconnects, reconnect attempts and losses per second',
    yAxes: [{ scale: 'y', unit: 'rate', label: 'per second' }],
    series: ({ rate }) => [
      rate('connect attempts', '#2563eb', (p) => p.connectAttempts),
      rate('connect failures', '#dc2626', (p) => p.connectFailures),
      rate('disconnects', '#d97706', (p) => p.disconnects),
      rate('reconnect attempts', '#7c3aed', (p) => p.reconnectAttempts ?? 0),
      rate('connections lost', '#111827', (p) => p.losses ?? 0),
    ],
  },
  {
    name: 'messages',
    title: 'Messages per second: sent, accepted, received',
    yAxes: [{ scale: 'y', unit: 'rate', label: 'per second' }],
    series: ({ rate }) => [
      rate('sent', '#6b7280', (p) => p.sent),
      rate('accepted', '#2563eb', (p) => p.accepted),
      rate('received', '#16a34a', (p) => p.received),
    ],
  },
  {
    name: 'push-latency',
    title: 'Push latency p50 / p99 per second',
    yAxes: [{ scale: 'y', unit: 'ms', label: 'latency' }],
    series: ({ line }) => [
      line('p50', '#2563eb', (p) => p.pushP50Ms),
      line('p99', '#dc2626', (p) => p.pushP99Ms),
    ],
  },
  {
    name: 'skew',
    title: 'Skew per second (max / mean of per-node counts)',
    yAxes: [{ scale: 'y', unit: 'ratio', label: 'max / mean' }],
    series: ({ line }) => [line('skew', '#7c3aed', (p) => (p.nodes ? skewOf(p.nodes) : null))],
  },
  {
    name: 'generator',
    title: 'Per second: worst event-loop delay p99 and busiest thread utilisation',
    yAxes: [
      { scale: 'y', unit: 'ms', label: 'event-loop delay p99' },
      { scale: 'y2', unit: 'percent', label: 'busiest thread' },
    ],
    series: ({ line }) => [
      line('worst event-loop delay p99', '#dc2626', (p) => p.maxLagP99Ms),
      { ...line('busiest thread utilisation', '#0891b2', (p) => p.maxElu * 100), scale: 'y2' },
    ],
  },
];

/** The per-second charts: connections per node, connection events, messages, push latency, skew, generator. */
export function timelineCharts(report: Report): ChartSpec[] {
  const tl = report.timeline;
  const x = tl.map((p) => p.t);
  const xLabels = tl.map((p) => `${Number(p.t.toFixed(2))} s (${p.phase})`);
  const lastT = Math.max(0, x.at(-1) ?? 0, ...report.markers.map((m) => m.t));
  const xRange: [number, number] = [0, lastT > 0 ? lastT : 1];
  const kit: SeriesKit = {
    line: (label, color, value) => ({ label, color, values: tl.map(value), scale: 'y' }),
    rate: (label, color, count) => ({ label, color, values: perSecond(tl, count), scale: 'y' }),
    nodes: [...new Set(tl.flatMap((p) => Object.keys(p.nodes ?? {})))].sort(),
  };
  return TIMELINE_CHARTS.map(({ series, ...chart }) => ({
    x,
    xLabels,
    xRange,
    markers: true,
    ...chart,
    series: series(kit),
  }));
}

/** Every chart of report.html, in page order: the percentile curves, then the timelines. */
export function reportCharts(report: Report): ChartSpec[] {
  return [percentileChart(report), ...timelineCharts(report)];
}
