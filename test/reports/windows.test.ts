import { describe, expect, it } from 'vitest';
import { createLatencyHistogram, recordUs } from '../../core/measure/histogram.js';
import type { IntervalHistograms } from '../../core/result.js';
import { faultWindows } from '../../reports/windows.js';

/** One-second intervals from 0 to `seconds`, each holding `valueMs(t)` ten times in `push`. */
function intervals(seconds: number, valueMs: (t: number) => number): IntervalHistograms[] {
  const out: IntervalHistograms[] = [];
  for (let t = 0; t < seconds; t++) {
    const h = createLatencyHistogram();
    for (let i = 0; i < 10; i++) recordUs(h, valueMs(t) * 1000);
    out.push({ startMs: t * 1000, endMs: (t + 1) * 1000, histograms: { push: h } });
  }
  return out;
}

describe('fault windows', () => {
  const slowFrom5To8 = intervals(12, (t) => (t >= 5 && t < 8 ? 50 : 2));

  it('merges the intervals inside the fault, and as long a stretch before it', () => {
    const w = faultWindows({ t: 5, tEnd: 8 }, slowFrom5To8, 0);
    expect(w?.during).toMatchObject({ fromS: 5, toS: 8 });
    expect(w?.during.latency.push?.count).toBe(30);
    expect(w?.during.latency.push?.p50).toBeCloseTo(50, 0);
    expect(w?.before).toMatchObject({ fromS: 2, toS: 5 });
    expect(w?.before.latency.push?.p99).toBeCloseTo(2, 1);
  });

  it('starts the before window no earlier than publishing', () => {
    const w = faultWindows({ t: 5, tEnd: 8 }, slowFrom5To8, 4);
    expect(w?.before).toMatchObject({ fromS: 4, toS: 5 });
    expect(w?.before.latency.push?.count).toBe(10);
  });

  it('has none for an instant fault, or when no interval falls before it', () => {
    expect(faultWindows({ t: 5, tEnd: null }, slowFrom5To8, 0)).toBeNull();
    expect(faultWindows({ t: 0.2, tEnd: 3 }, slowFrom5To8, 0)).toBeNull();
  });
});
