/**
 * Repeats summed up from real reports (fixture loads through buildReport): medians and
 * spread, gates over the repeats, variants contrasted by Welch's t-test, and the tests'
 * own arithmetic against known values.
 */
import { describe, expect, it } from 'vitest';
import { contrastVariants, holm, renderRepeats, summarizeRepeats } from '../../reports/repeats.js';
import type { Report } from '../../reports/report.js';
import { normalQuantile, repeatsNeeded, welchTest } from '../../reports/stats.js';
import { fakeLoad, fakeReport } from '../helpers/report-fixture.js';

const GATES = ['p99(push) < 8ms', 'median(p99(push)) < 8ms', 'delivery >= 99%'];

function runAt(pushUs: number, lost = 0, gates = GATES): Report {
  return fakeReport(fakeLoad({ accepted: 1000, lost, pushUs }), gates);
}

describe('summarizeRepeats', () => {
  it("gives each figure's median, spread and per-repeat values", () => {
    const s = summarizeRepeats('a', [runAt(5000), runAt(9000), runAt(6000)]);
    const p99 = s.figures.find((f) => f.metric === 'p99(push)')!;
    expect(p99.values.map((v) => Math.round(v!))).toEqual([5, 9, 6]);
    expect(Math.round(p99.median!)).toBe(6);
    expect(Math.round(p99.min!)).toBe(5);
    expect(Math.round(p99.max!)).toBe(9);
    expect(p99.sd).toBeCloseTo(2.08, 1);
    expect(s.verdicts).toEqual(['pass', 'fail', 'pass']);
  });

  it('judges a median gate once over the repeats and a plain gate by its worst repeat', () => {
    const s = summarizeRepeats('a', [runAt(5000), runAt(9000), runAt(6000)]);
    const plain = s.gates.find((g) => g.expr === 'p99(push) < 8ms')!;
    const median = s.gates.find((g) => g.expr === 'median(p99(push)) < 8ms')!;
    expect(plain.verdict).toBe('fail');
    expect(plain.detail).toMatch(/worst of 3 repeats/);
    expect(median.verdict).toBe('pass');
    expect(median.actual).toBeCloseTo(6, 0);
    expect(s.verdict).toBe('fail');
    expect(s.exitCode).toBe(3);
    // With only the median gate, the same repeats pass.
    const lenient = ['median(p99(push)) < 8ms'];
    const t = summarizeRepeats('a', [
      runAt(5000, 0, lenient),
      runAt(9000, 0, lenient),
      runAt(6000, 0, lenient),
    ]);
    expect(t.verdict).toBe('pass');
    expect(t.exitCode).toBe(0);
  });
});

describe('contrasts between variants', () => {
  it('calls a large steady difference significant and noise not, with the repeats it would need', () => {
    const a = summarizeRepeats('a', [runAt(5000), runAt(5200), runAt(4900)]);
    const b = summarizeRepeats('b', [runAt(20_000), runAt(21_000), runAt(19_500)]);
    const c = summarizeRepeats('c', [runAt(4000), runAt(6500), runAt(5100)]);
    const ab = contrastVariants(a, b).find((x) => x.metric === 'p99(push)')!;
    expect(ab.significant).toBe(true);
    expect(ab.p).toBeLessThan(0.01);
    const ac = contrastVariants(a, c).find((x) => x.metric === 'p99(push)')!;
    expect(ac.significant).toBe(false);
    expect(ac.repeatsNeeded).toBeGreaterThan(3);
    const text = renderRepeats([a, b]);
    expect(text).toMatch(/a vs b over the repeats/);
    expect(text).toMatch(/p99\(push\)\s+\S+\s+\S+\s+\S+\s+significant/);
  });
});

describe('contrasts between regions', () => {
  /** A report of regions `rr` and `eu-rr` (a name that starts with the other's) with these crashes. */
  function regional(rr: number, euRr: number): Report {
    const r = runAt(5000, 0, []);
    const region = (name: string) => ({ ...r.config.topology.regions[0]!, name });
    r.config = {
      ...r.config,
      topology: { ...r.config.topology, regions: [region('rr'), region('eu-rr')] },
    };
    const skew = { max: 1, final: 1, nodes: [] };
    r.regions = { rr: { crashed: rr, skew }, 'eu-rr': { crashed: euRr, skew } };
    return r;
  }

  it('sets the first region against each other one over the repeats', () => {
    const s = summarizeRepeats('x', [regional(10, 0), regional(9, 0), regional(10, 1)]);
    expect(s.regions).toEqual(['rr', 'eu-rr']);
    const text = renderRepeats([s]);
    expect(text).toMatch(/regions rr vs eu-rr over the repeats/);
    expect(text).toMatch(/nodes\.crashed@\*\s+10\s+0\s+<0\.001\s+significant/);
    // `@rr` is not `@eu-rr`: one crashed row per region, none mixed up.
    expect(
      s.figures.filter((f) => f.metric.startsWith('nodes.crashed@')).map((f) => f.metric),
    ).toEqual(['nodes.crashed@rr', 'nodes.crashed@eu-rr']);
  });
});

describe('holm', () => {
  const row = (p: number | null) => ({
    metric: 'm',
    better: 'lower' as const,
    unit: 'ms' as const,
    a: 1,
    b: 2,
    p,
    significant: false,
    delta: null,
    pooledSd: null,
    repeatsNeeded: null,
  });
  it('steps down: each smaller p against 0.05 / (rows left), stopping at the first that misses', () => {
    expect(holm([row(0.001), row(0.02), row(0.03)]).map((r) => r.significant)).toEqual([
      true,
      true,
      true,
    ]);
    expect(holm([row(0.01), row(0.04), row(0.03)]).map((r) => r.significant)).toEqual([
      true,
      false,
      false,
    ]);
    // 36 figures with one at p = 0.026: alone it would pass, over the table it does not.
    const many = [row(0.026), ...Array.from({ length: 35 }, () => row(0.5))];
    expect(holm(many).some((r) => r.significant)).toBe(false);
    expect(holm([row(null), row(0.01)]).map((r) => r.significant)).toEqual([false, true]);
  });
});

describe('welchTest and repeatsNeeded', () => {
  it('match known values', () => {
    // Welch's test on [1,2,3,4,5] vs [3,4,5,6,7]: t = -2, df = 8, p = 0.0805.
    expect(welchTest([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])).toBeCloseTo(0.0805, 3);
    expect(welchTest([1, 1, 1], [1, 1, 1])).toBe(1);
    expect(welchTest([1, 1, 1], [2, 2, 2])).toBe(0);
    expect(welchTest([1], [2, 3])).toBe(1);
    // 2 (1.96 + 0.84)^2 = 15.7: a difference of one sd needs 16 repeats each.
    expect(repeatsNeeded(1, 1)).toBe(16);
    // One of 10 tests at once (α = 0.005): z = 2.81 + 0.84, 2 z² = 26.6.
    expect(repeatsNeeded(1, 1, 10)).toBe(27);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232, 5);
    expect(repeatsNeeded(0, 1)).toBe(Number.POSITIVE_INFINITY);
  });
});
