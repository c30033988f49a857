import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLatencyHistogram,
  encodeHistogram,
  percentileDistribution,
  recordUs,
} from '../../core/measure/histogram.js';
import { run } from '../../index.js';
import { noConnectionEvents } from '../../loadgen/run-fold.js';
import { escapeHtml, jsonForScript, renderHtml } from '../../reports/outputs/html.js';
import {
  formatPercentile,
  percentileChart,
  percentileTickLabel,
  percentileToX,
  timelineCharts,
} from '../../reports/outputs/html-charts.js';
import type { Report } from '../../reports/report.js';
import type { FaultImpact } from '../../reports/storm.js';
import { validateScenario } from '../../scenarios/schema.js';
import { ensureChromium } from '../setup/chromium.js';

/** A fault row as report.ts builds it. */
function fault(label: string, t: number, lost: number): FaultImpact {
  return {
    label,
    action: 'kill-node',
    target: 'node-1',
    t,
    tEnd: null,
    fired: true,
    affected: 93,
    notBack: 0,
    attempts: 120,
    attemptsPerDevice: 1.29,
    reconnected: { p50: 0.4, p99: 1.9, p100: 2.2 },
    peakAttemptsPerSec: 80,
    lostMessages: lost,
  };
}
const hostile = '</script><img src=x onerror=alert(1)>';

/** The few DOM shapes the in-page checks touch: the project compiles without lib.dom. */
interface PageCanvas {
  width: number;
  height: number;
  getContext(id: '2d'): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  } | null;
}
interface PageElement {
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageCanvas | null;
}
interface PageDocument {
  querySelectorAll(selector: string): ArrayLike<PageElement>;
}

/** A report built by hand: real encoded histograms, a short timeline with gaps, one gate. */
function fixtureReport(): Report {
  const push = createLatencyHistogram();
  for (let i = 1; i <= 10_000; i++) recordUs(push, 500 + ((i * 7919) % 4000));
  recordUs(push, 80_000);
  const connect = createLatencyHistogram();
  for (let i = 1; i <= 100; i++) recordUs(connect, i * 100);
  const empty = { unit: 'ms' as const, count: 0, min: 0, mean: 0 };
  const zeros = { ...empty, p50: 0, p75: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  const point = (t: number, p50: number | null) => ({
    t,
    phase: 'publishing' as const,
    open: 100,
    requested: 100,
    established: 100,
    ...noConnectionEvents(),
    connectAttempts: t === 1 ? 100 : 0,
    traffic: {},
    sent: 50,
    accepted: 50,
    received: p50 === null ? 0 : 50,
    pushP50Ms: p50,
    pushP99Ms: p50 === null ? null : p50 * 3,
    connectP99Ms: null,
    maxElu: 0.2,
    maxLagP99Ms: 1,
    nodes: { 'node-1': 100 },
  });
  return {
    schemaVersion: 1,
    tool: { name: 'pushbench', version: '0.0.0-test' },
    scenario: 'fixture',
    description: hostile,
    config: validateScenario(
      { name: 'fixture', devices: { count: 100 }, duration: '3s' },
      { cores: 2 },
    ),
    startedAt: '2026-01-01T00:00:00.000Z',
    wallTimeMs: 4200,
    verdict: 'fail',
    exitCode: 3,
    devices: {
      requested: 100,
      established: 100,
      heldAtEnd: 100,
      failed: 0,
      failuresByReason: {},
      closesByCode: {},
      lossesByCause: {},
      reconnectingAtEnd: 0,
      heldAtServer: 100,
    },
    delivery: {
      sent: 150,
      accepted: 150,
      delivered: 100,
      lost: 50,
      rejected: 0,
      rejectedByStatus: {},
      duplicates: 0,
      late: 0,
      unconfirmed: 0,
      rate: 100 / 150,
      unaddressed: 0,
    },
    latency: { push: { ...zeros, count: 1 }, connect: zeros, api: zeros },
    gates: [
      {
        expr: 'p99(push) < 1ms',
        metric: 'p99(push)',
        op: '<',
        threshold: 1,
        actual: 4.2,
        actualText: '4.20ms',
        verdict: 'fail',
        pass: false,
        detail: `4.20ms >= 1ms ${hostile}`,
      },
    ],
    generator: { valid: true, reasons: [], workers: [], skippedSends: 0 },
    timeline: [point(1, 1.5), point(2, null), point(3, 2)],
    markers: [{ t: 0, kind: 'phase', label: hostile }],
    skew: { max: 1, final: 1, nodes: ['node-1'] },
    histograms: {
      push: encodeHistogram(push),
      connect: encodeHistogram(connect),
      api: encodeHistogram(createLatencyHistogram()),
    },
    server: [],
    machine: {
      cores: 2,
      cpuModel: 'test',
      memoryBytes: 2 ** 30,
      node: 'v20',
      platform: 'linux',
      arch: 'x64',
      openFilesLimit: 1024,
    },
    storm: {
      losses: 0,
      reconnectAttempts: 0,
      attemptsPerDevice: null,
      peakAttemptsPerSec: 0,
      peakAtS: null,
      lossToBack: { p50: null, p99: null, p100: null },
      notBack: 0,
    },
    faults: [],
    regions: {},
    topology: { nodes: [], balancer: [] },
  };
}

describe('the percentile axis', () => {
  it('maps percentiles to decades of 1/(1-p), as HdrHistogram plots them', () => {
    expect(percentileToX(0)).toBe(0);
    expect(percentileToX(90)).toBeCloseTo(1, 12);
    expect(percentileToX(99)).toBeCloseTo(2, 12);
    expect(percentileToX(99.9)).toBeCloseTo(3, 10);
    expect(percentileToX(99.999)).toBeCloseTo(5, 6);
    expect(percentileToX(100)).toBe(Number.POSITIVE_INFINITY);
  });

  it('labels each decade tick with its percentile', () => {
    expect([0, 1, 2, 3, 4, 5].map(percentileTickLabel)).toEqual([
      '0%',
      '90%',
      '99%',
      '99.9%',
      '99.99%',
      '99.999%',
    ]);
    expect(formatPercentile(50)).toBe('50%');
    expect(formatPercentile(99.95)).toBe('99.95%');
  });

  it('walks percentile levels up to the resolution of the sample count and ends at the max', () => {
    const h = createLatencyHistogram();
    for (let i = 1; i <= 1000; i++) recordUs(h, i * 10);
    const points = percentileDistribution(h);
    expect(points[0]).toEqual({ percentile: 0, valueUs: 10 });
    const last = points.at(-1)!;
    expect(last.valueUs).toBe(h.getValueAtPercentile(100));
    expect(last.percentile).toBeGreaterThanOrEqual(99.9);
    expect(last.percentile).toBeLessThan(99.99);
    for (let i = 1; i < points.length; i++) {
      expect(points[i]!.percentile).toBeGreaterThan(points[i - 1]!.percentile);
      expect(points[i]!.valueUs).toBeGreaterThanOrEqual(points[i - 1]!.valueUs);
    }
    // Five levels per half-distance: 0, 10, 20, 30, 40, then 50, 55, ...
    expect(points.slice(0, 7).map((p) => p.percentile)).toEqual([0, 10, 20, 30, 40, 50, 55]);
    expect(percentileDistribution(createLatencyHistogram())).toEqual([]);
  });

  it('puts every histogram on one x array and pads shorter curves with gaps', () => {
    const chart = percentileChart(fixtureReport());
    expect(chart.series.map((s) => s.label)).toEqual(['push', 'connect', 'api (no samples)']);
    const [push, connect, api] = chart.series;
    expect(push!.values).toHaveLength(chart.x.length);
    expect(push!.values.at(-1)).toBeCloseTo(80, 0);
    expect(connect!.values.at(-1)).toBeNull();
    expect(api!.values.every((v) => v === null)).toBe(true);
    expect(chart.xTicks!.map((t) => t.label)).toEqual([
      '0%',
      '90%',
      '99%',
      '99.9%',
      '99.99%',
      '99.999%',
    ]);
  });
});

describe('timeline charts', () => {
  it('keeps intervals without pushes as gaps and converts counts to per-second rates', () => {
    const charts = timelineCharts(fixtureReport());
    const latency = charts.find((c) => c.name === 'push-latency')!;
    expect(latency.series[0]!.values).toEqual([1.5, null, 2]);
    const messages = charts.find((c) => c.name === 'messages')!;
    expect(messages.series.find((s) => s.label === 'received')!.values).toEqual([50, 0, 50]);
    const connections = charts.find((c) => c.name === 'connections')!;
    expect(connections.series.map((s) => s.label)).toEqual(['node-1 (server)', 'open (loadgen)']);
  });
});

describe('HTML escaping', () => {
  it('escapes report text so a hostile description stays text', () => {
    expect(escapeHtml(hostile)).toBe('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(jsonForScript({ d: hostile })).not.toContain('<');
    const html = renderHtml(fixtureReport());
    expect(html).not.toContain('<img');
    expect(html).not.toContain(hostile);
    expect(html).toContain(escapeHtml(hostile));
    // uPlot, the report, the chart data and the page script: nothing else opens a script.
    expect(html.match(/<script/g)).toHaveLength(4);
    expect(html.match(/<\/script/g)).toHaveLength(4);
  });

  it('inlines the page script and stylesheet from html-assets as they are on disk', () => {
    const asset = (name: string) =>
      readFileSync(new URL(`../../reports/outputs/html-assets/${name}`, import.meta.url), 'utf8');
    const html = renderHtml(fixtureReport());
    const js = asset('report.js');
    const css = asset('report.css');
    expect(js).toMatch(/^\/\/ @ts-check/);
    expect(html).toContain(`<script>${js}</script>`);
    expect(html).toContain(`<style>${css}</style>`);
    // The page script reads the chart block html.ts writes, by the id both use.
    expect(js).toContain("getElementById('pushbench-charts')");
    expect(html).toContain('<script type="application/json" id="pushbench-charts">');
  });

  it('says the run had no fault events when report.faults is absent, and tabulates it when present', () => {
    const report = fixtureReport();
    expect(renderHtml(report)).toContain('This run had no fault events');
    const withFaults = {
      ...report,
      faults: [fault(`kill node-1 ${hostile}`, 2.5, 7)],
    };
    const html = renderHtml(withFaults);
    expect(html).not.toContain('This run had no fault events');
    expect(html).toContain(`kill node-1 ${escapeHtml(hostile)}`);
    expect(html).toContain('>99 % back</th>');
    expect(html).not.toContain('<img');
  });

  it("tabulates latency before and while a lasting fault stood, and a restart's 404 window", () => {
    const report = fixtureReport();
    const s = (p99: number) => ({ ...report.latency.push, count: 100, p99 });
    const slow: FaultImpact = {
      ...fault('registry-slow', 14, 24),
      windows: {
        before: { fromS: 4, toS: 14, latency: { register: s(8), d2d_warm: s(5.5) } },
        during: { fromS: 14, toS: 24, latency: { register: s(107), d2d_warm: s(7.2) } },
      },
    };
    const back: FaultImpact = {
      ...fault('back', 12, 12.3),
      action: 'datastore-restart',
      notFoundAfter: { count: 4, forS: 0.247 },
    };
    const html = renderHtml({ ...report, faults: [slow, back] });
    expect(html).toContain('p99 before &rarr; while each lasting fault stood');
    expect(html).toMatch(
      /<td>registry-slow<\/td><td>4-14 s<\/td><td>14-24 s<\/td><td class="num">8\.00 ms → 107 ms<\/td>/,
    );
    expect(html).toContain(
      '4 pushes answered 404 <code>not_connected</code> once the datastore answered again, the last 0.247 s after',
    );
  });
});

describe('report.html in headless Chromium', () => {
  let browser: Browser;
  let report: Report;
  const artifacts = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'pb-html-'));

  beforeAll(async () => {
    const executablePath = await ensureChromium();
    ({ report } = await run('smoke', {
      devices: 200,
      rate: 200,
      duration: '3s',
      workers: 1,
      write: false,
    }));
    browser = await chromium.launch({
      executablePath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  }, 15 * 60_000);

  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens `html` from a file and records every request and every error the page produces. */
  async function open(html: string, name: string) {
    const path = join(dir, name);
    writeFileSync(path, html);
    const url = pathToFileURL(path).href;
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    const errors: string[] = [];
    const dialogs: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.route('**/*', (route) =>
      route.request().url() === url ? route.continue() : route.abort('blockedbyclient'),
    );
    await page.goto(url, { waitUntil: 'load' });
    return { page, url, requests, errors, dialogs };
  }

  /**
   * Size and pixels of each chart's canvas: `painted` counts every non-transparent pixel
   * (axes and grid included), `series` only those near one of that chart's line colours.
   */
  function chartFacts(page: Page, colours: Record<string, [number, number, number][]>) {
    return page.evaluate((lineColours) => {
      const doc = (globalThis as unknown as { document: PageDocument }).document;
      return Array.from(doc.querySelectorAll('[data-chart]'), (box) => {
        const name = box.getAttribute('data-chart') ?? '';
        const canvas = box.querySelector('.uplot canvas');
        const ctx = canvas?.getContext('2d');
        if (!canvas || !ctx) return { name, width: 0, height: 0, painted: 0, series: 0 };
        const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
        const wanted = lineColours[name] ?? [];
        let painted = 0;
        let series = 0;
        for (let i = 0; i < data.length; i += 4) {
          if ((data[i + 3] ?? 0) === 0) continue;
          painted++;
          const [r, g, b] = [data[i] ?? 0, data[i + 1] ?? 0, data[i + 2] ?? 0];
          const near = wanted.some(
            (c) => Math.abs(r - c[0]) < 40 && Math.abs(g - c[1]) < 40 && Math.abs(b - c[2]) < 40,
          );
          if (near) series++;
        }
        return { name, width: canvas.width, height: canvas.height, painted, series };
      });
    }, colours);
  }

  /** Each chart's line colours as RGB, greys left out (axis text is grey too). */
  function lineColours(r: Report): Record<string, [number, number, number][]> {
    const rgb = (hex: string): [number, number, number] => [
      Number.parseInt(hex.slice(1, 3), 16),
      Number.parseInt(hex.slice(3, 5), 16),
      Number.parseInt(hex.slice(5, 7), 16),
    ];
    return Object.fromEntries(
      [percentileChart(r), ...timelineCharts(r)].map((c) => [
        c.name,
        c.series.map((s) => rgb(s.color)).filter((v) => Math.max(...v) - Math.min(...v) > 60),
      ]),
    );
  }

  it('renders every chart offline, with no errors, and the verdict and gates first', async () => {
    const html = renderHtml(report);
    // Verdict and gates come before any chart.
    expect(html.indexOf('data-verdict=')).toBeLessThan(html.indexOf('data-gate'));
    expect(html.indexOf('data-gate')).toBeLessThan(html.indexOf('data-chart='));
    const { page, url, requests, errors, dialogs } = await open(html, 'report.html');

    expect(requests).toEqual([url]);
    expect(errors).toEqual([]);
    expect(dialogs).toEqual([]);

    const verdict = page.locator('[data-verdict]');
    expect(await verdict.getAttribute('data-verdict')).toBe(report.verdict);
    expect(await verdict.textContent()).toBe(report.verdict.toUpperCase());
    const gates = await page.$$eval('[data-gate]', (rows) =>
      rows.map((r) => r.querySelector('td')?.textContent),
    );
    expect(gates).toEqual(report.gates.map((g) => g.expr));
    const charts = await chartFacts(page, lineColours(report));
    expect(charts.map((c) => c.name)).toEqual([
      'percentiles',
      'connections',
      'connection-events',
      'messages',
      'push-latency',
      'skew',
      'generator',
    ]);
    for (const c of charts) {
      expect(c.width, c.name).toBeGreaterThan(200);
      expect(c.height, c.name).toBeGreaterThan(100);
      // Axes and grid alone paint several thousand pixels; the lines must be there too.
      expect(c.painted, c.name).toBeGreaterThan(1000);
      expect(c.series, c.name).toBeGreaterThan(150);
    }
    expect(charts.find((c) => c.name === 'percentiles')!.series).toBeGreaterThan(1000);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
    await page.close();
  });

  it('draws a hand-built report with gaps, an empty series, faults and hostile text', async () => {
    const withFaults = { ...fixtureReport(), faults: [fault(hostile, 2, 50)] };
    const { page, errors, dialogs } = await open(renderHtml(withFaults), 'fixture.html');
    expect(errors).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('.description').textContent()).toBe(hostile);
    expect(await page.locator('.faults td').first().textContent()).toBe(hostile);
    expect(await page.locator('[data-chart] .uplot canvas').count()).toBe(7);
    await page.close();
  });

  it('draws an empty timeline and empty histograms without errors', async () => {
    const empty = createLatencyHistogram();
    const bare = {
      ...fixtureReport(),
      timeline: [],
      markers: [],
      histograms: { push: encodeHistogram(empty), connect: encodeHistogram(empty) },
    };
    const { page, errors } = await open(renderHtml(bare), 'bare.html');
    expect(errors).toEqual([]);
    expect(await page.locator('[data-chart] .uplot canvas').count()).toBe(7);
    await page.close();
  });

  it('draws a real chaos run: a node killed mid-run, its marker, the herd and the faults table', async () => {
    const { report: chaos } = await run(
      {
        name: 'html-kill',
        topology: { nodes: 2 },
        devices: { count: 200, reconnect: 'exponential:100ms:1s' },
        traffic: { direct: { rate: 100 } },
        timeline: [{ at: '2s', action: 'kill-node', node: 'local-1', label: 'kill' }],
        duration: '3s',
      },
      { workers: 1, write: false },
    );
    const { page, errors, requests, url } = await open(renderHtml(chaos), 'chaos.html');
    expect(errors).toEqual([]);
    expect(requests.filter((r) => r !== url)).toEqual([]);
    expect(await page.locator('.faults td').first().textContent()).toBe('kill');
    expect(await page.locator('#faults').textContent()).toMatch(/Connections lost: \d/);
    const facts = await chartFacts(page, lineColours(chaos));
    const events = facts.find((f) => f.name === 'connection-events');
    expect(events?.series).toBeGreaterThan(0);
    await page.screenshot({ path: join(artifacts, 'report-chaos.png'), fullPage: true });
    await page.close();
  }, 120_000);
});
