import { describe, expect, it } from 'vitest';
import {
  createLatencyHistogram,
  decodeHistogram,
  encodeHistogram,
  mergeSnapshot,
  recordedValues,
  recordUs,
  summarize,
} from '../../../core/measure/histogram.js';

describe('histogram snapshots', () => {
  it('merging encoded snapshots equals recording everything in one histogram', () => {
    const parts = [createLatencyHistogram(), createLatencyHistogram(), createLatencyHistogram()];
    const whole = createLatencyHistogram();
    for (let i = 1; i <= 30_000; i++) {
      const us = (i * 7919) % 250_000;
      recordUs(parts[i % 3]!, us);
      recordUs(whole, us);
    }
    const merged = createLatencyHistogram();
    let counted = 0;
    for (const p of parts) counted += mergeSnapshot(merged, encodeHistogram(p));
    expect(counted).toBe(30_000);
    expect(merged.totalCount).toBe(whole.totalCount);
    for (const q of [50, 90, 99, 99.9, 100]) {
      expect(merged.getValueAtPercentile(q)).toBe(whole.getValueAtPercentile(q));
    }
  });

  it('summarizes microseconds as milliseconds', () => {
    const h = createLatencyHistogram();
    for (let i = 0; i < 99; i++) recordUs(h, 1000);
    recordUs(h, 50_000);
    const s = summarize(h);
    expect(s.count).toBe(100);
    expect(s.p50).toBeCloseTo(1, 2);
    expect(s.max).toBeCloseTo(50, 0);
    expect(summarize(decodeHistogram(encodeHistogram(h)))).toEqual(s);
  });

  it('records negative clock differences as zero and summarizes empty histograms as zeros', () => {
    const h = createLatencyHistogram();
    expect(summarize(h).count).toBe(0);
    recordUs(h, -5);
    expect(h.totalCount).toBe(1);
    expect(h.maxValue).toBe(0);
  });
});

describe('recorded values', () => {
  it('lists each distinct value with its count, lowest first', () => {
    const h = createLatencyHistogram();
    for (const v of [1000, 1000, 2_000_000, 5]) recordUs(h, v);
    const values = recordedValues(decodeHistogram(encodeHistogram(h)));
    expect(values.map((v) => v.count)).toEqual([1, 2, 1]);
    expect(values[0]?.valueUs).toBe(5);
    expect(Math.abs((values[2]?.valueUs ?? 0) - 2_000_000)).toBeLessThan(2_000_000 / 1000);
  });
});
