import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLatencyHistogram,
  parseHistogramLog,
  recordedValues,
} from '../../core/measure/histogram.js';
import { run } from '../../index.js';
import { ensureChromium } from '../setup/chromium.js';

const BIN = ['--import', 'tsx', 'bin/pushbench.ts'];
const cli = (...args: string[]) =>
  execa(process.execPath, [...BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });

let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pb-compare-'));
  // Two real, small runs that differ in push rate.
  for (const [name, rate] of [
    ['slow', 100],
    ['fast', 300],
  ] as const) {
    await run('smoke', { devices: 100, rate, duration: '2s', workers: 1, outDir: join(dir, name) });
  }
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pushbench compare', () => {
  it('prints deltas against the first report and writes comparison.json/.md/.html', async () => {
    const out = join(dir, 'cmp');
    const r = await cli(
      'compare',
      join(dir, 'slow'),
      join(dir, 'fast', 'report.json'),
      '--out',
      out,
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^metric\s+slow\s+fast\s+best/m);
    expect(r.stdout).toMatch(/accepted\/s \(higher is better\)\s+100\s+300 \(\+200%\) \*\s+fast/);
    const json = JSON.parse(readFileSync(join(out, 'comparison.json'), 'utf8'));
    expect(json.runs.map((x: { label: string }) => x.label)).toEqual(['slow', 'fast']);
    expect(readFileSync(join(out, 'comparison.md'), 'utf8')).toMatch(
      /\| metric \| slow \| fast \| best \|/,
    );
  });

  it('renders comparison.html offline in Chromium with the overlaid percentile chart', async () => {
    const out = join(dir, 'cmp');
    const executablePath = await ensureChromium();
    const browser = await chromium.launch({
      executablePath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('request', (req) => requests.push(req.url()));
      const url = pathToFileURL(join(out, 'comparison.html')).href;
      await page.goto(url);
      expect(errors).toEqual([]);
      expect(requests).toEqual([url]);
      // The page's canvas, typed structurally (the project's tsconfig has no DOM lib).
      const canvas = await page.$eval('[data-chart="compare-percentiles"] canvas', (c) => {
        const el = c as unknown as { width: number; height: number };
        return { w: el.width, h: el.height };
      });
      expect(canvas.w).toBeGreaterThan(200);
      expect(canvas.h).toBeGreaterThan(100);
      expect(await page.locator('td.best').count()).toBeGreaterThan(0);
    } finally {
      await browser.close();
    }
  });

  it('exits 2 with one line for a folder that holds no report', async () => {
    const r = await cli('compare', dir, join(dir, 'fast'));
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/report\.json/);
  });

  it('exits 2 when given a single report', async () => {
    const r = await cli('compare', join(dir, 'fast'));
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/at least two/);
  });
});

describe('pushbench report DIR', () => {
  it('rebuilds report.html and the CI files from report.json and exits with the recorded exit code', async () => {
    const target = join(dir, 'fast');
    rmSync(join(target, 'report.html'));
    const report = JSON.parse(readFileSync(join(target, 'report.json'), 'utf8'));
    const junit = join(dir, 'fast.xml');
    const md = join(dir, 'fast.md');
    const r = await cli('report', target, '--junit', junit, '--summary', md);
    expect(r.exitCode).toBe(report.exitCode);
    expect(readFileSync(join(target, 'report.html'), 'utf8')).toMatch(/<!doctype html>/);
    expect(readFileSync(junit, 'utf8').match(/<testcase /g)).toHaveLength(report.gates.length);
    expect(readFileSync(md, 'utf8')).toMatch(/pushbench `smoke`/);
    // The interval log written by the run is still there and untouched.
    expect(readFileSync(join(target, 'latency.hlog'), 'utf8')).toMatch(
      /^#\[Histogram log format version 1\.3\]/,
    );
  });

  it('exits 2 for a file that is not a pushbench report', async () => {
    const r = await cli('report', join(dir, 'fast', 'summary.txt'));
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not a readable report\.json/);
  });
});

describe('pushbench run --matrix', () => {
  it('runs every variant in sequence and writes one comparison; exit code is the worst verdict', async () => {
    const out = join(dir, 'matrix');
    const r = await cli(
      'run',
      'smoke',
      '--matrix',
      'devices=30,60',
      '--set',
      'rate=60',
      '--duration',
      '1s',
      '--workers',
      '1',
      '--out',
      out,
      '--gate',
      'p50(push) < 1us',
    );
    expect(r.exitCode, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/^metric\s+devices=30\s+devices=60/m);
    const json = JSON.parse(readFileSync(join(out, 'comparison.json'), 'utf8'));
    expect(json.runs).toHaveLength(2);
    const first = JSON.parse(readFileSync(join(out, '01-devices=30', 'report.json'), 'utf8'));
    expect(first.devices.requested).toBe(30);
    expect(first.config.traffic.direct.rateHz).toBe(60);
  });

  it('validates every variant before running any', async () => {
    const r = await cli('run', 'smoke', '--matrix', 'devices=10,0', '--out', join(dir, 'never'));
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/devices\.count: must be >= 1, got 0/);
  });
});

describe('percentile intervals of a real run', () => {
  it('match an independent computation on the written .hlog', () => {
    const report = JSON.parse(readFileSync(join(dir, 'fast', 'report.json'), 'utf8'));
    const log = parseHistogramLog(readFileSync(join(dir, 'fast', 'latency.hlog'), 'utf8'));
    // Every interval of the push series, merged: the same samples the report summarised.
    const push = createLatencyHistogram();
    for (const iv of log.intervals) if (iv.tag === 'push') push.add(iv.histogram);
    const n = push.totalCount;
    expect(n).toBe(report.latency.push.count);
    const sorted: number[] = [];
    for (const { valueUs, count } of recordedValues(push)) {
      for (let k = 0; k < count; k++) sorted.push(valueUs);
    }
    // The binomial CDF by direct summation of the pmf (log-factorials as sums of logs),
    // not the incomplete beta the project uses.
    const logFact = [0];
    for (let i = 1; i <= n; i++) logFact.push(logFact[i - 1]! + Math.log(i));
    const cdf = (q: number) => {
      const out: number[] = [];
      let acc = 0;
      for (let k = 0; k <= n; k++) {
        acc += Math.exp(
          logFact[n]! - logFact[k]! - logFact[n - k]! + k * Math.log(q) + (n - k) * Math.log(1 - q),
        );
        out.push(acc);
      }
      return out;
    };
    for (const [stat, q] of [
      ['p50', 0.5],
      ['p90', 0.9],
      ['p99', 0.99],
    ] as const) {
      const F = cdf(q);
      let l = 0;
      for (let k = 1; k <= n; k++) if (F[k - 1]! <= 0.025) l = k;
      let u = n + 1;
      for (let k = n; k >= 1; k--) if (F[k - 1]! >= 0.975) u = k;
      const ci = report.latency.push.ci[stat];
      expect(ci.loOpen ?? false, stat).toBe(l < 1);
      expect(ci.hiOpen ?? false, stat).toBe(u > n);
      if (l >= 1) expect(ci.lo, stat).toBeCloseTo(sorted[l - 1]! / 1000, 3);
      if (u <= n) expect(ci.hi, stat).toBeCloseTo(sorted[u - 1]! / 1000, 3);
    }
  });
});

describe('pushbench run --repeat', () => {
  it('alternates the variants, sums each up over its repeats and contrasts them', async () => {
    const out = join(dir, 'repeat');
    const r = await cli(
      'run',
      'smoke',
      '--repeat',
      '2',
      '--matrix',
      'rate=50,150',
      '--devices',
      '30',
      '--duration',
      '1s',
      '--workers',
      '1',
      '--out',
      out,
      '--gate',
      'median(p99(push)) < 1us',
    );
    // The median gate fails in both variants: exit 3, not the run of any one repeat.
    expect(r.exitCode, r.stderr).toBe(3);
    // A B A B: the notices name the variants in alternation.
    const order = [...r.stderr.matchAll(/repeat (\d)\/2, variant (\d)\/2/g)].map(
      (m) => `${m[1]}${m[2]}`,
    );
    expect(order).toEqual(['11', '12', '21', '22']);
    expect(r.stdout).toMatch(/rate=50: 2 repeats, verdicts/);
    expect(r.stdout).toMatch(/median\(p99\(push\)\) < 1us\s+\S+\s+fail/);
    expect(r.stdout).toMatch(/rate=50 vs rate=150 over the repeats/);
    expect(r.stdout).toMatch(/accepted\/s\s+50\s+150\s+<0\.001\s+significant/);
    const json = JSON.parse(readFileSync(join(out, 'repeats.json'), 'utf8'));
    expect(json.summaries.map((s: { label: string }) => s.label)).toEqual(['rate=50', 'rate=150']);
    const one = JSON.parse(
      readFileSync(join(out, '02-rate=150', 'repeat-2', 'report.json'), 'utf8'),
    );
    expect(one.config.traffic.direct.rateHz).toBe(150);
    // compare on two variant folders reads them over their repeats too.
    const c = await cli('compare', join(out, '01-rate=50'), join(out, '02-rate=150'));
    expect(c.exitCode, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/01-rate=50 vs 02-rate=150 over the repeats/);
    // A repeat folder and a single run do not mix.
    const mixed = await cli('compare', join(out, '01-rate=50'), join(dir, 'fast'));
    expect(mixed.exitCode).toBe(2);
    expect(mixed.stderr).toMatch(/a --repeat folder/);
  }, 120_000);

  it('refuses a repeat count out of range with one line', async () => {
    const r = await cli('run', 'smoke', '--repeat', '0');
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--repeat must be 1-100, got 0/);
  });
});
