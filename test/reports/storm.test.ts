import { describe, expect, it } from 'vitest';
import {
  type FaultLike,
  faultImpacts,
  type StormPoint,
  summarizeStorm,
} from '../../reports/storm.js';

const fault = (
  label: string,
  action: string,
  target: string,
  t: number,
  extra: Partial<FaultLike> = {},
): FaultLike => ({
  label,
  action,
  target,
  t,
  tEnd: null,
  fired: true,
  ...extra,
});

describe('laying losses against faults', () => {
  it('gives each loss to the fault that hit its node, even when crashes come milliseconds apart', () => {
    const faults = [fault('crash a', 'crash', 'a', 10.0), fault('crash b', 'crash', 'b', 10.01)];
    // Three devices lost on a (two of them after b crashed), one on b.
    const drops = [10.005, 11, 1, 10.02, 11.5, 2, 10.03, -1, 3, 10.02, 12, 1];
    const dropNodes = ['a', 'a', 'a', 'b'];
    const [a, b] = faultImpacts(faults, drops, [], [], { dropNodes });
    expect(a?.affected).toBe(3);
    expect(a?.notBack).toBe(1);
    expect(a?.attempts).toBe(6);
    expect(b?.affected).toBe(1);
    // Without node information the same losses go to the latest fault by time.
    const [a2, b2] = faultImpacts(faults, drops, [], []);
    expect(a2?.affected).toBe(1);
    expect(b2?.affected).toBe(3);
  });

  it("says when a fault's devices noticed their losses: median, p99, last, and tenths", () => {
    const faults = [fault('kill', 'kill-node', 'a', 10)];
    // Ten devices lost 10-100 ms after the kill (as through a balancer).
    const drops = Array.from({ length: 10 }, (_, i) => [10 + (i + 1) / 100, 12, 1]).flat();
    const [kill] = faultImpacts(faults, drops, [], [], { dropNodes: Array(10).fill('a') });
    expect(kill?.noticed?.p50).toBeCloseTo(0.05, 6);
    expect(kill?.noticed?.p99).toBeCloseTo(0.1, 6);
    expect(kill?.noticed?.p100).toBeCloseTo(0.1, 6);
    expect(kill?.noticed?.tenths.map((s) => Math.round(s * 1000))).toEqual([
      10, 20, 30, 40, 50, 60, 70, 80, 90, 100,
    ]);
    // Nobody affected: nothing to say.
    const [none] = faultImpacts([fault('kill', 'kill-node', 'b', 10)], [], [], []);
    expect(none?.noticed).toBeUndefined();
  });

  it('lays a region fault over every node of the region, and nothing outside it', () => {
    const faults = [
      fault('slow', 'latency', 'region us', 5),
      fault('kill', 'kill-node', 'eu-1', 6),
    ];
    const drops = [7, 8, 1, 7, 8, 1];
    const regionOf = (id: string) => id.split('-')[0];
    const [slow, kill] = faultImpacts(faults, drops, [], [], {
      dropNodes: ['us-2', 'eu-1'],
      regionOf,
    });
    expect(slow?.affected).toBe(1);
    expect(kill?.affected).toBe(1);
  });

  it('measures a scale-up from when its nodes joined, over its region, with every new node present', () => {
    const grow = fault('grow', 'scale-up', 'region r', 2, { tEnd: 4, nodes: ['r-3', 'r-4'] });
    const timeline: StormPoint[] = [
      // Before the new nodes report, the old ones look even: that is not settling.
      { t: 3, connectAttempts: 0, nodes: { 'r-1': 100, 'r-2': 100 } },
      { t: 5, connectAttempts: 0, nodes: { 'r-1': 100, 'r-2': 100, 'r-3': 0, 'r-4': 0, 'x-1': 5 } },
      {
        t: 6,
        connectAttempts: 0,
        nodes: { 'r-1': 100, 'r-2': 100, 'r-3': 60, 'r-4': 60, 'x-1': 5 },
      },
      {
        t: 7,
        connectAttempts: 0,
        nodes: { 'r-1': 100, 'r-2': 100, 'r-3': 95, 'r-4': 95, 'x-1': 5 },
      },
    ];
    const regionOf = (id: string) => id.split('-')[0];
    const [impact] = faultImpacts([grow], [], timeline, [], { regionOf });
    // Skew at 6 s is 100 / 80 = 1.25; at 7 s 100 / 97.5 < 1.2: 3 s after the nodes joined.
    expect(impact?.skewSettledAfterS).toBe(3);
  });

  it('summarises the storm from reconnect attempts, not first connects', () => {
    const s = summarizeStorm(
      [1, 2, 1, 1, -1, 4],
      [
        { t: 1, connectAttempts: 900, reconnectAttempts: 0 },
        { t: 2, connectAttempts: 40, reconnectAttempts: 40 },
      ],
    );
    expect(s.peakAttemptsPerSec).toBe(40);
    expect(s.losses).toBe(2);
    expect(s.notBack).toBe(1);
    expect(s.attemptsPerDevice).toBe(2.5);
    expect(s.lossToBack.p100).toBeNull();
  });

  it("bounds a herd's p50 and p99 by order statistics, open where the devices cannot", () => {
    // 300 devices back at 0.01 s, 0.02 s, ... 3.00 s after a loss at 0.
    const back = (n: number) => Array.from({ length: n }, (_, i) => [0, (i + 1) / 100, 1]).flat();
    const s = summarizeStorm(back(300), []);
    expect(s.lossToBack.p99).toBe(2.97);
    // Binomial(300, 0.99): rank 293 below, and no rank up to 300 above (open).
    expect(s.lossToBack.ci?.p99).toEqual({ lo: 2.93, hi: null });
    // p50: ranks 133 and 168.
    expect(s.lossToBack.ci?.p50).toEqual({ lo: 1.33, hi: 1.68 });
    // 1,000 devices bound the p99 on both sides; 5 more never back open its top.
    const big = summarizeStorm(back(1000), []);
    expect(big.lossToBack.ci?.p99.lo).toBeLessThan(big.lossToBack.p99!);
    expect(big.lossToBack.ci?.p99.hi).toBeGreaterThan(big.lossToBack.p99!);
    const never = Array.from({ length: 5 }, () => [0, -1, 3]).flat();
    expect(summarizeStorm([...back(1000), ...never], []).lossToBack.ci?.p99.hi).toBeNull();
  });
});
