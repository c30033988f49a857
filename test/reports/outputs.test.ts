import { describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import {
  compareReports,
  renderComparisonMarkdown,
  renderComparisonText,
} from '../../reports/compare.js';
import { renderJunit } from '../../reports/outputs/junit.js';
import { renderMarkdown } from '../../reports/outputs/markdown.js';
import { type Report, summarizeSkew } from '../../reports/report.js';
import { fakeLoad, fakeReport } from '../helpers/report-fixture.js';

function makeReport(opts: { pushUs: number; lost?: number; gates: string[] }): Report {
  return fakeReport(
    fakeLoad({ accepted: 1000, lost: opts.lost, pushUs: opts.pushUs }),
    opts.gates,
    [],
  );
}

describe('JUnit output', () => {
  it('has one testcase per gate, failures with actual vs expected, inconclusive as skipped', () => {
    const xml = renderJunit(
      makeReport({
        pushUs: 80_000,
        gates: ['p99(push) < 50ms', 'delivery >= 99.999%', 'p50(push) < 1s'],
      }),
    );
    expect(xml).toMatch(/^<\?xml version="1.0"/);
    expect(xml.match(/<testcase /g)).toHaveLength(3);
    expect(xml).toMatch(/tests="3" failures="1" skipped="1"/);
    expect(xml).toMatch(/<failure message="expected p99\(push\) &lt; 50ms, actual 80\.\d+ms"/);
    expect(xml).toMatch(/<skipped message="inconclusive: .*299,572/);
  });

  it('escapes XML in expressions and details', () => {
    const xml = renderJunit(makeReport({ pushUs: 1000, gates: ['p99(push) < 50ms'] }));
    expect(xml).not.toMatch(/< 50ms/);
    expect(xml).toMatch(/&lt; 50ms/);
  });
});

describe('Markdown summary', () => {
  it('leads with the verdict and lists gates, ledger and latency', () => {
    const md = renderMarkdown(makeReport({ pushUs: 80_000, gates: ['p99(push) < 50ms'] }));
    expect(md.split('\n')[0]).toMatch(/FAIL\*\* \(exit 3\)/);
    expect(md).toMatch(/\| `p99\(push\) < 50ms` \| 80\.\d+ms \| ❌ fail \|/);
    expect(md).toMatch(/\| delivery \| sent \|/);
    expect(md).toMatch(/\| push \| 1,000 \|/);
  });
});

describe('compare', () => {
  it('computes deltas against the first report and names the better one per metric', () => {
    const a = makeReport({ pushUs: 10_000, gates: [] });
    const b = makeReport({ pushUs: 5_000, lost: 10, gates: [] });
    const c = compareReports([a, b], ['rr', 'lc']);
    const p99 = c.rows.find((r) => r.metric === 'p99(push)')!;
    expect(p99.values[0]).toBeCloseTo(10, 1);
    expect(p99.values[1]).toBeCloseTo(5, 1);
    expect(p99.deltas[1]).toBeCloseTo(-0.5, 2);
    expect(p99.best).toBe(1);
    const lost = c.rows.find((r) => r.metric === 'lost')!;
    expect(lost.values).toEqual([0, 10]);
    expect(lost.best).toBe(0);
    const delivery = c.rows.find((r) => r.metric === 'delivery')!;
    expect(delivery.best).toBe(0);
    const held = c.rows.find((r) => r.metric === 'held at end')!;
    expect(held.best).toBeNull();
    const text = renderComparisonText(c);
    expect(text).toMatch(
      /p99\(push\) \(lower is better\)\s+10\.0ms \[10\.0ms-10\.0ms\]\s+5\.00ms \[5\.00ms-5\.00ms\] \(-50%\) \*\s+lc/,
    );
    expect(text).toMatch(/\* differs from the first run at 95%/);
    expect(renderComparisonMarkdown(c)).toMatch(/^\| metric \| rr \| lc \| best \|/);
  });

  it('says "no significant difference" where the intervals overlap or the counts could be chance', () => {
    const a = makeReport({ pushUs: 10_000, lost: 1, gates: [] });
    const b = structuredClone(a);
    // A 16 % higher p99 whose interval overlaps the first run's: noise, not a result.
    b.latency.push = {
      ...b.latency.push,
      p99: 11.6,
      ci: { ...b.latency.push.ci, p99: { lo: 9, hi: 14, beyond: 10 } },
    };
    a.latency.push = {
      ...a.latency.push,
      ci: { ...a.latency.push.ci, p99: { lo: 8, hi: 12, beyond: 10 } },
    };
    b.delivery = { ...b.delivery, lost: 2, delivered: b.delivery.accepted - 2 };
    const c = compareReports([a, b], ['a', 'b']);
    const p99 = c.rows.find((r) => r.metric === 'p99(push)')!;
    expect(p99.best).toBeNull();
    expect(p99.bestNote).toBe('no significant difference');
    expect(p99.significant).toEqual([null, false]);
    const lost = c.rows.find((r) => r.metric === 'lost')!;
    expect(lost.bestNote).toBe('no significant difference');
    // Skew has no test: never called better on its figure alone.
    const skew = c.rows.find((r) => r.metric === 'skew.max');
    if (skew && skew.values[0] !== skew.values[1]) expect(skew.bestNote).toBe('not tested');
    expect(renderComparisonText(c)).toMatch(/p99\(push\).*no significant difference/);
  });

  it('reads two samples of one distribution as no significant difference, and a shifted one as better', () => {
    /** 5,000 pushes, exponential with a 10 ms mean (plus `shiftMs`), from its own seed. */
    const exponential = (seed: number, shiftMs = 0) => {
      const rng = new Rng(seed);
      return fakeReport(
        fakeLoad({
          accepted: 5000,
          pushAtUs: () => (shiftMs - 10 * Math.log(1 - rng.next())) * 1000,
        }),
        [],
      );
    };
    const same = compareReports([exponential(1), exponential(2)], ['a', 'b']);
    const latency = same.rows.filter((r) => /^p\d+\(push\)$/.test(r.metric));
    expect(latency.map((r) => r.metric)).toEqual([
      'p50(push)',
      'p90(push)',
      'p99(push)',
      'p999(push)',
    ]);
    for (const row of same.rows) expect(row.best, row.metric).toBeNull();
    for (const row of latency) expect(row.bestNote, row.metric).toBe('no significant difference');
    const shifted = compareReports([exponential(1), exponential(2, 100)], ['a', 'slow']);
    for (const row of shifted.rows.filter((r) => /^p\d+\(push\)$/.test(r.metric))) {
      expect(row.best, row.metric).toBe(0);
      expect(row.significant[1], row.metric).toBe(true);
    }
  });

  it('refuses fewer than two reports', () => {
    expect(() => compareReports([makeReport({ pushUs: 1, gates: [] })])).toThrow(/at least two/);
  });
});

describe('skew', () => {
  it('is max/mean of per-node counts, worst and last sample', () => {
    const point = (nodes: Record<string, number>) =>
      ({ nodes }) as unknown as Parameters<typeof summarizeSkew>[0][number];
    const s = summarizeSkew([
      point({ a: 100, b: 100 }),
      point({ a: 300, b: 100 }),
      point({ a: 120, b: 80 }),
    ]);
    expect(s.max).toBe(1.5);
    expect(s.final).toBe(1.2);
    expect(s.nodes).toEqual(['a', 'b']);
    expect(summarizeSkew([]).max).toBeNull();
  });
});
