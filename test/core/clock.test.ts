import { afterEach, describe, expect, it } from 'vitest';
import {
  clockOffsetUs,
  estimateOffset,
  hostMonoUs,
  monoNowUs,
  setClockOffsetUs,
} from '../../core/clock.js';

describe('the clock offset onto a reference clock', () => {
  afterEach(() => setClockOffsetUs(0));

  it("takes the shortest round trip's midpoint (Cristian), within half that round trip", () => {
    // The reference runs 5 s ahead; the exchanges were delayed 100-900 µs each way, unevenly.
    const truth = 5_000_000;
    const exchange = (sentUs: number, outUs: number, backUs: number) => ({
      sentUs,
      referenceUs: sentUs + outUs + truth,
      receivedUs: sentUs + outUs + backUs,
    });
    const est = estimateOffset([
      exchange(1000, 900, 100),
      exchange(2000, 120, 300),
      exchange(3000, 400, 700),
    ]);
    expect(est).toBeDefined();
    expect(est!.roundTripUs).toBe(420);
    expect(est!.uncertaintyUs).toBe(210);
    expect(est!.samples).toBe(3);
    // Asymmetric delays put the estimate off by (back - out) / 2 = 90 µs, inside ± 210.
    expect(est!.offsetUs).toBe(truth + (120 - 300) / 2);
    expect(Math.abs(est!.offsetUs - truth)).toBeLessThanOrEqual(est!.uncertaintyUs);
  });

  it('ignores answers that came back before they were asked, and has no estimate without a usable one', () => {
    expect(estimateOffset([])).toBeUndefined();
    expect(estimateOffset([{ sentUs: 10, referenceUs: 5, receivedUs: 9 }])).toBeUndefined();
    expect(
      estimateOffset([
        { sentUs: 10, referenceUs: 5, receivedUs: 9 },
        { sentUs: 20, referenceUs: 1_000_025, receivedUs: 30 },
      ]),
    ).toMatchObject({ offsetUs: 1_000_000, samples: 1 });
  });

  it("moves this thread's clock onto the reference and refuses a non-finite offset", () => {
    const before = monoNowUs();
    setClockOffsetUs(-3_000_000);
    expect(clockOffsetUs()).toBe(-3_000_000);
    const host = hostMonoUs();
    const shifted = monoNowUs();
    expect(shifted).toBeLessThan(before);
    expect(Math.abs(shifted - (host - 3_000_000))).toBeLessThan(50_000);
    expect(() => setClockOffsetUs(Number.NaN)).toThrow(/finite/);
  });
});
