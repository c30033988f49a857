import { describe, expect, it } from 'vitest';
import { type HerdInput, type HerdResult, simulateHerd } from '../../capacity/simulate.js';
import { PushbenchError } from '../../core/errors.js';
import type { ReconnectPolicy, ReconnectPolicyName } from '../../scenarios/schema.js';

const policy = (
  name: ReconnectPolicyName,
  baseMs: number,
  capMs = baseMs,
  maxAttempts = 0,
): ReconnectPolicy => ({ policy: name, baseMs, capMs, maxAttempts });

/** 10 nodes of 10,000 devices, one dies; nodes never overload and absorb anything. */
const ample = (over: Partial<HerdInput> = {}): HerdInput => ({
  nodes: 10,
  devices: 100_000,
  failedNodes: 1,
  capacity: 1e9,
  absorptionPerSec: 1e9,
  balancer: 'round-robin',
  reconnect: policy('fixed', 1000),
  ...over,
});

/** The timeline point of the second ending at `tMs`. */
function second(r: HerdResult, tMs: number) {
  const p = r.timeline.find((x) => x.tMs === tMs);
  if (!p) throw new Error(`no timeline point at ${tMs}`);
  return p;
}

describe('simulateHerd: known answers', () => {
  it('brings a herd with a fixed 1 s delay back all at once, in the bucket at 1 s', () => {
    const r = simulateHerd(ample());
    expect(r.herd).toBe(10_000);
    for (const t of [r.reconnected.t50Ms, r.reconnected.t99Ms, r.reconnected.t100Ms]) {
      expect(t).toBeGreaterThanOrEqual(1000);
      expect(t).toBeLessThanOrEqual(1010);
    }
    expect(r.attemptsPerDevice).toBe(1);
    expect(second(r, 1000).attempts).toBe(0);
    expect(second(r, 2000).connects).toBe(10_000);
    expect(r.peakAttemptsPerSec).toBeCloseTo(10_000, 6);
    expect(r.cascade).toBe(false);
    expect(r.notBack).toBeCloseTo(0, 6);
  });

  it('starts each share of the herd from when it lost its connection (lossAtMs)', () => {
    // Fixed 1 s delay; half the herd hears of the failure at once, half 2 s later.
    const r = simulateHerd(ample({ lossAtMs: [0, 2000] }));
    expect(r.herd).toBe(10_000);
    expect(second(r, 2000).connects).toBe(5000);
    expect(second(r, 3000).connects).toBe(0);
    expect(second(r, 4000).connects).toBe(5000);
    expect(r.reconnected.t99Ms).toBeGreaterThanOrEqual(3000);
    expect(r.reconnected.t99Ms).toBeLessThanOrEqual(3010);
    expect(() => simulateHerd(ample({ lossAtMs: [] }))).toThrow(/lossAtMs/);
    expect(() => simulateHerd(ample({ lossAtMs: [-1] }))).toThrow(/lossAtMs/);
  });

  it('spreads a full-jitter herd (base = cap = 10 s) uniformly over 0-10 s', () => {
    const r = simulateHerd(ample({ reconnect: policy('full-jitter', 10_000) }));
    expect(r.reconnected.t50Ms).toBeGreaterThanOrEqual(4980);
    expect(r.reconnected.t50Ms).toBeLessThanOrEqual(5020);
    expect(r.reconnected.t99Ms).toBeGreaterThanOrEqual(9880);
    expect(r.reconnected.t99Ms).toBeLessThanOrEqual(9920);
    expect(r.reconnected.t100Ms).toBeLessThanOrEqual(10_020);
    for (let s = 1; s <= 10; s++) {
      expect(Math.abs(second(r, s * 1000).attempts - 1000)).toBeLessThanOrEqual(10);
    }
    expect(r.attemptsPerDevice).toBeCloseTo(1, 6);
  });

  it('equal jitter (base = cap = 10 s) spreads over 5-10 s', () => {
    const r = simulateHerd(ample({ reconnect: policy('equal-jitter', 10_000) }));
    expect(r.reconnected.t50Ms).toBeGreaterThanOrEqual(7480);
    expect(r.reconnected.t50Ms).toBeLessThanOrEqual(7520);
    expect(second(r, 5000).attempts).toBe(0);
  });

  it('decorrelated jitter starts uniform over [base, 3·base]', () => {
    const r = simulateHerd(ample({ reconnect: policy('decorrelated-jitter', 1000, 60_000) }));
    // 4096 sampled chains: the median of U(1 s, 3 s) within a few buckets.
    expect(r.reconnected.t50Ms).toBeGreaterThanOrEqual(1950);
    expect(r.reconnected.t50Ms).toBeLessThanOrEqual(2060);
    expect(r.reconnected.t100Ms).toBeLessThanOrEqual(3020);
  });

  it('limits a herd to what the survivors absorb: 9 nodes x 100/s take 10,000 devices in ~11.1 s', () => {
    const r = simulateHerd(ample({ absorptionPerSec: 100, reconnect: policy('immediate', 0) }));
    expect(r.peakConnectsPerSecPerNode).toBeCloseTo(100, 6);
    expect(second(r, 3000).connects).toBe(900);
    expect(r.reconnected.t100Ms).toBeGreaterThanOrEqual(11_000);
    expect(r.reconnected.t100Ms).toBeLessThanOrEqual(11_200);
    // Every device retries every bucket until it gets in.
    expect(r.attemptsPerDevice).toBeGreaterThan(100);
  });

  it('keeps attempt numbers apart: exponential backoff retries at 1 s, then 2 s later', () => {
    // Two nodes, one dead and still in rotation until 2.5 s: round-robin sends
    // half of the attempts at 1 s to it; those retry at 1 + 2 = 3 s and get in.
    const r = simulateHerd(
      ample({
        nodes: 2,
        devices: 20_000,
        detectMs: 2500,
        reconnect: policy('exponential', 1000, 8000),
      }),
    );
    expect(r.reconnected.t50Ms).toBe(1010);
    expect(r.reconnected.t100Ms).toBe(3010);
    expect(r.attemptsPerDevice).toBeCloseTo(1.5, 9);
    expect(second(r, 2000).failures).toBe(5000);
  });

  it('fails about a quarter of round-robin attempts while one dead node of 4 is still in rotation', () => {
    const r = simulateHerd(
      ample({
        nodes: 4,
        devices: 400_000,
        detectMs: 2000,
        reconnect: policy('full-jitter', 10_000),
      }),
    );
    for (const t of [1000, 2000]) {
      const p = second(r, t);
      expect(p.failures / p.attempts).toBeCloseTo(0.25, 2);
    }
    for (const t of [3000, 4000, 5000]) expect(second(r, t).failures).toBe(0);
  });

  it('least-connections sends every attempt into an undetected dead node (it looks emptiest)', () => {
    const r = simulateHerd(
      ample({
        nodes: 4,
        devices: 400_000,
        detectMs: 2000,
        balancer: 'least-connections',
        reconnect: policy('full-jitter', 10_000),
      }),
    );
    for (const t of [1000, 2000]) {
      const p = second(r, t);
      expect(p.attempts).toBeGreaterThan(0);
      expect(p.failures).toBe(p.attempts);
    }
    expect(second(r, 3000).failures).toBe(0);
  });

  it('decides each attempt attemptMs after it starts, and a refused one is seen as long again later', () => {
    const lc = (over: Partial<HerdInput>) =>
      simulateHerd(
        ample({
          nodes: 4,
          devices: 400,
          balancer: 'least-connections',
          detectMs: 500,
          reconnect: policy('fixed', 100),
          ...over,
        }),
      );
    // Attempts at 100 ms reach the balancer at 600 ms, after it dropped the dead node.
    const late = lc({ attemptMs: 500 });
    expect(late.attemptsPerDevice).toBe(1);
    // Decided at once, they fail until 500 ms, a retry every 100 ms after each failure.
    const atOnce = lc({});
    expect(atOnce.attemptsPerDevice).toBeGreaterThanOrEqual(4);
    // Decided 100 ms on: the first (100 ms) fails at the balancer at 200 ms, seen at
    // 300 ms; the retry starts at 400 ms and is decided at 500 ms, after detection.
    const some = lc({ attemptMs: 100 });
    expect(some.attemptsPerDevice).toBeCloseTo(2, 6);
    expect(some.reconnected.t50Ms).toBeGreaterThanOrEqual(400);
    expect(() => lc({ attemptMs: -1 })).toThrow(/attemptMs must be a finite number/);
  });

  it('gives up after maxAttempts when no attempt can succeed', () => {
    // The dead node is never detected within the horizon; least-connections
    // keeps every attempt on it.
    const r = simulateHerd(
      ample({
        nodes: 2,
        devices: 2000,
        balancer: 'least-connections',
        detectMs: 1e9,
        horizonMs: 60_000,
        reconnect: policy('fixed', 100, 100, 3),
      }),
    );
    expect(r.gaveUp).toBeCloseTo(1000, 6);
    expect(r.attemptsPerDevice).toBeCloseTo(3, 9);
    expect(r.reconnected).toEqual({ t50Ms: null, t99Ms: null, t100Ms: null });
    expect(r.simulatedMs).toBeLessThan(60_000);
  });
});

describe('simulateHerd: cascades', () => {
  it('takes every survivor down when they are already near capacity', () => {
    // 4 nodes at 90k of 100k: the 90k herd adds 30k to each of the 3 survivors.
    for (const balancer of [
      'round-robin',
      'least-connections',
      'power-of-two',
      'random',
    ] as const) {
      const r = simulateHerd({
        nodes: 4,
        devices: 360_000,
        failedNodes: 1,
        capacity: 100_000,
        absorptionPerSec: 1e6,
        balancer,
        reconnect: policy('full-jitter', 1000, 10_000),
      });
      expect(r.cascade, balancer).toBe(true);
      expect(r.failedNodes, balancer).toBe(3);
      expect(r.reconnected.t99Ms, balancer).toBeNull();
      expect(r.notBack, balancer).toBeCloseTo(360_000, 3);
      expect(r.timeline.at(-1)?.liveNodes, balancer).toBe(0);
    }
  });

  /** After a scale-up: the dying node, two old nodes at 95k, two new ones at 20k, capacity 100k. */
  const scaledUp = (balancer: HerdInput['balancer'], over: Partial<HerdInput> = {}): HerdInput => ({
    nodes: 5,
    devices: 330_000,
    loadByNode: [100_000, 95_000, 95_000, 20_000, 20_000],
    failedNodes: 1,
    capacity: 100_000,
    absorptionPerSec: 1e6,
    balancer,
    reconnect: policy('full-jitter', 1000, 10_000),
    ...over,
  });

  it('cascades under round-robin but not least-connections when the survivors are unevenly loaded', () => {
    // Round-robin gives each survivor 25k of the 100k herd (the old ones break);
    // least-connections fills the new ones to 70k each.
    const input = (balancer: HerdInput['balancer']) => scaledUp(balancer);
    const rr = simulateHerd(input('round-robin'));
    expect(rr.cascade).toBe(true);
    expect(rr.failedNodes).toBe(4);
    expect(rr.herd).toBeGreaterThan(330_000);
    const lc = simulateHerd(input('least-connections'));
    expect(lc.cascade).toBe(false);
    expect(lc.herd).toBe(100_000);
    expect(lc.reconnected.t100Ms).not.toBeNull();
  });

  it('keeps a node that cascades in rotation for detectMs after it falls, whatever attemptMs', () => {
    // attemptMs = detectMs: the first dead node is out before any attempt is decided,
    // so every failure is one routed to a node that fell in the cascade.
    const r = simulateHerd(scaledUp('round-robin', { detectMs: 1000, attemptMs: 1000 }));
    expect(r.cascade).toBe(true);
    // The two old nodes fall within the first second with ~95k devices each; for the
    // second after, round-robin still sends them two of every four attempts, over
    // 100k attempts of a herd past 200k devices: tens of thousands fail there.
    const failures = r.timeline.reduce((n, p) => n + p.failures, 0);
    expect(failures).toBeGreaterThan(40_000);
  });

  it('power-of-two concentrates on the emptier nodes, less than least-connections does', () => {
    const input = (balancer: HerdInput['balancer']): HerdInput => ({
      nodes: 5,
      devices: 330_000,
      loadByNode: [100_000, 95_000, 95_000, 20_000, 20_000],
      failedNodes: 1,
      capacity: 100_000,
      overloadAt: Number.POSITIVE_INFINITY,
      absorptionPerSec: 1e6,
      balancer,
      reconnect: policy('full-jitter', 1000, 10_000),
    });
    const peak = (b: HerdInput['balancer']) => simulateHerd(input(b)).peakConnectsPerSecPerNode;
    const rr = peak('round-robin');
    const p2c = peak('power-of-two');
    const lc = peak('least-connections');
    expect(p2c).toBeGreaterThan(rr * 1.2);
    expect(lc).toBeGreaterThan(p2c * 1.2);
  });
});

describe('simulateHerd: balancers and determinism', () => {
  it('replays a random-balancer run from its seed, close to round-robin in aggregate', () => {
    const input = ample({
      balancer: 'random',
      absorptionPerSec: 5000,
      reconnect: policy('full-jitter', 1000, 10_000),
      seed: 42,
    });
    const a = simulateHerd(input);
    const b = simulateHerd(input);
    expect({ ...a, elapsedMs: 0 }).toEqual({ ...b, elapsedMs: 0 });
    const rr = simulateHerd({ ...input, balancer: 'round-robin' });
    expect(Math.abs((a.reconnected.t99Ms ?? 0) - (rr.reconnected.t99Ms ?? 0))).toBeLessThanOrEqual(
      50,
    );
    // Multinomial noise: some node gets more than its even share in some second.
    expect(a.peakConnectsPerSecPerNode).toBeGreaterThan(rr.peakConnectsPerSecPerNode);
  });

  it('lets random absorb at the node rate even below one connection per bucket', () => {
    // 100 survivors x 2/s = 200/s for a herd of 1,000: whole devices handed to
    // nodes with 0.02 of a connection of room per 10 ms must still get in.
    const input = ample({
      nodes: 101,
      devices: 101_000,
      absorptionPerSec: 2,
      reconnect: policy('full-jitter', 1000, 10_000),
    });
    const rr = simulateHerd(input);
    const random = simulateHerd({ ...input, balancer: 'random' });
    expect(rr.reconnected.t50Ms).toBeGreaterThan(2000);
    expect(random.reconnected.t50Ms!).toBeLessThan(rr.reconnected.t50Ms! * 1.15);
  });

  it('brings back a herd of a few devices with every balancer', () => {
    for (const balancer of [
      'round-robin',
      'least-connections',
      'power-of-two',
      'random',
    ] as const) {
      const r = simulateHerd(
        ample({
          nodes: 5,
          devices: 50,
          balancer,
          absorptionPerSec: 2,
          reconnect: policy('full-jitter', 500, 5000),
        }),
      );
      expect(r.herd, balancer).toBe(10);
      expect(r.reconnected.t100Ms, balancer).not.toBeNull();
      expect(r.notBack, balancer).toBeLessThan(0.5);
    }
  });

  it('rejects bad input with every problem in one PB_USAGE error', () => {
    let err: unknown;
    try {
      simulateHerd(ample({ nodes: 0, failedNodes: 2, absorptionPerSec: -1, dtMs: 0 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PushbenchError);
    expect((err as PushbenchError).code).toBe('PB_USAGE');
    expect((err as PushbenchError).problems.length).toBeGreaterThanOrEqual(4);
  });

  it('refuses a fleet whose survivors already exceed overloadAt', () => {
    expect(() => simulateHerd(ample({ capacity: 5000 }))).toThrow(
      /already holds 10000 connections/,
    );
  });
});

describe('simulateHerd: fleet scale', () => {
  it('simulates 200,000,000 devices on 2,000 nodes losing one node and a zone of 10', () => {
    const fleet = {
      nodes: 2000,
      devices: 200_000_000,
      capacity: 200_000,
      absorptionPerSec: 2000,
      detectMs: 2000,
      reconnect: policy('full-jitter', 1000, 60_000),
    };
    for (const balancer of ['least-connections', 'round-robin'] as const) {
      const node = simulateHerd({ ...fleet, balancer, failedNodes: 1 });
      const zone = simulateHerd({ ...fleet, balancer, failedNodes: 10 });
      console.log(
        `200M devices, ${balancer}: node loss ${node.elapsedMs.toFixed(0)} ms wall ` +
          `(t99 ${node.reconnected.t99Ms} ms), zone loss ${zone.elapsedMs.toFixed(0)} ms wall ` +
          `(t99 ${zone.reconnected.t99Ms} ms, peak ${zone.peakAttemptsPerSec.toFixed(0)} attempts/s)`,
      );
      expect(node.herd).toBeCloseTo(100_000, 6);
      expect(zone.herd).toBeCloseTo(1_000_000, 6);
      for (const r of [node, zone]) {
        expect(r.cascade).toBe(false);
        expect(r.reconnected.t99Ms).not.toBeNull();
        expect(r.notBack).toBeLessThan(0.5);
        // The brief asks for this bound; it is ~10x above what this machine measures.
        expect(r.elapsedMs).toBeLessThan(10_000);
      }
    }
  });
});

describe('simulateHerd: node groups', () => {
  /** 200M devices at 3,500 per node with headroom 2: the plan for a c5-class node. */
  const planSize = (balancer: HerdInput['balancer'], failedNodes: number): HerdInput => ({
    nodes: 114_286,
    devices: 200_000_000,
    failedNodes,
    capacity: 3500,
    absorptionPerSec: 2000,
    balancer,
    detectMs: 2000,
    reconnect: policy('full-jitter', 1000, 60_000),
  });

  it('simulates a 114,286-node, 200M-device fleet as the per-node simulation did', () => {
    // Reference figures from the per-node simulation (one Float64Array slot per
    // node, ~9 s per least-connections run), same inputs.
    const reference = [
      ['least-connections', 1, [3220, 9320, 17420], 2231, 2.91],
      ['least-connections', 10, [3220, 9320, 30380], 22305, 2.91],
      ['round-robin', 10, [510, 1000, 1850], 17500, 1],
      ['power-of-two', 10, [510, 1000, 2190], 17501, 1],
    ] as const;
    for (const [balancer, failedNodes, [t50, t99, t100], peak, perDevice] of reference) {
      const r = simulateHerd(planSize(balancer, failedNodes));
      const label = `${balancer}, ${failedNodes} failed`;
      expect(r.reconnected, label).toEqual({ t50Ms: t50, t99Ms: t99, t100Ms: t100 });
      expect(Math.round(r.peakAttemptsPerSec), label).toBe(peak);
      expect(r.attemptsPerDevice, label).toBeCloseTo(perDevice, 2);
      expect(r.cascade, label).toBe(false);
      expect(r.herd, label).toBeCloseTo((failedNodes * 200_000_000) / 114_286, 3);
    }
  });

  it('gives the same answer whether nodes start grouped or each alone', () => {
    // Loads a thousandth of a connection apart put every node in its own group
    // (the per-node simulation); equal loads put the survivors in one.
    const loads = Array.from({ length: 3000 }, (_, i) => 1750 + ((i % 7) - 3) * 1e-3);
    const devices = loads.reduce((a, b) => a + b, 0);
    const fleet = {
      nodes: 3000,
      failedNodes: 10,
      capacity: 3500,
      absorptionPerSec: 2000,
      detectMs: 2000,
      reconnect: policy('full-jitter', 1000, 60_000),
    };
    for (const balancer of [
      'least-connections',
      'power-of-two',
      'round-robin',
      'random',
    ] as const) {
      const grouped = simulateHerd({ ...fleet, balancer, devices: 3000 * 1750 });
      const alone = simulateHerd({ ...fleet, balancer, devices, loadByNode: loads });
      expect(alone.reconnected, balancer).toEqual(grouped.reconnected);
      expect(alone.peakAttemptsPerSec / grouped.peakAttemptsPerSec, balancer).toBeCloseTo(1, 5);
      expect(alone.attemptsPerDevice, balancer).toBeCloseTo(grouped.attemptsPerDevice, 5);
      expect(
        alone.peakConnectsPerSecPerNode / grouped.peakConnectsPerSecPerNode,
        balancer,
      ).toBeCloseTo(1, 2);
    }
  });

  it('splits an evenly loaded group when random noise pushes some of its nodes over', () => {
    // 990 survivors at 9,800 of 9,900 take 98 more each on average: round-robin
    // stays under; random hands some nodes more, they fall, and the cascade runs.
    const input: HerdInput = {
      nodes: 1000,
      devices: 9_800_000,
      failedNodes: 10,
      capacity: 9900,
      absorptionPerSec: 1e6,
      balancer: 'random',
      reconnect: policy('full-jitter', 1000, 60_000),
    };
    expect(simulateHerd({ ...input, balancer: 'round-robin' }).cascade).toBe(false);
    const r = simulateHerd(input);
    expect(r.cascade).toBe(true);
    expect(r.failedNodes).toBe(990);
    // Some nodes fell before others: the herd carried the first fallers' load too.
    expect(r.timeline[0]?.liveNodes).toBeLessThan(990);
  });

  it('keeps random statistically per-node under heavy load (normal approximation per group)', () => {
    // 2,000 of 20,000 nodes die with 10,000 devices each: thousands of attempts
    // per bucket, groups of hundreds of nodes split by the normal approximation.
    const r = simulateHerd({
      nodes: 20_000,
      devices: 200_000_000,
      failedNodes: 2000,
      capacity: 1e6,
      absorptionPerSec: 500,
      balancer: 'random',
      detectMs: 1000,
      reconnect: policy('full-jitter', 100, 2000),
    });
    // Per-node simulation, seeds 1-3: t50 1120, t99 3230, t100 4800-4850 ms,
    // 4.333 attempts per device.
    expect(r.reconnected.t50Ms).toBe(1120);
    expect(r.reconnected.t99Ms).toBeGreaterThanOrEqual(3200);
    expect(r.reconnected.t99Ms).toBeLessThanOrEqual(3260);
    expect(r.reconnected.t100Ms).toBeGreaterThanOrEqual(4700);
    expect(r.reconnected.t100Ms).toBeLessThanOrEqual(4950);
    expect(r.attemptsPerDevice).toBeCloseTo(4.333, 2);
    expect(r.notBack).toBeLessThan(0.5);
  });
});
