import { describe, expect, it } from 'vitest';
import {
  formatPlan,
  formatReconnectSpec,
  herdAbsorption,
  parseReconnectSpec,
  planFleet,
} from '../../capacity/plan.js';
import { PushbenchError } from '../../core/errors.js';

const node = { connectionsPerNode: 50_000, absorptionPerSec: 1000 };

describe('planFleet with TLS handshake costs', () => {
  const tlsNode = { ...node, tls: { fullConnectUs: 500, resumedConnectUs: 300 } };

  it('scales the herd absorption, measured with full handshakes, by the herd mix of resumed and full', () => {
    expect(herdAbsorption(tlsNode, 0)).toBeCloseTo(1000, 9);
    expect(herdAbsorption(tlsNode, 1)).toBeCloseTo(1000 * (500 / 300), 9);
    expect(herdAbsorption(tlsNode, 0.5)).toBeCloseTo(1000 * (500 / 400), 9);
    expect(herdAbsorption(node, 1)).toBe(1000);
  });

  it('a herd that resumes is absorbed sooner than one that makes full handshakes', () => {
    const plan = (resumedShare: number) =>
      planFleet({
        devices: 400_000,
        capacity: tlsNode,
        resumedShare,
        reconnect: parseReconnectSpec('full-jitter:100ms:2s'),
      });
    const resumed = plan(1);
    const full = plan(0);
    expect(resumed.herdAbsorptionPerSec).toBeGreaterThan(full.herdAbsorptionPerSec);
    expect(resumed.nodeLoss.reconnected.t99Ms!).toBeLessThan(full.nodeLoss.reconnected.t99Ms!);
    expect(formatPlan(resumed)).toMatch(
      /TLS handshakes .*500 us full, 300 us resumed; herd 100% resumed/,
    );
  });

  it('refuses a resumed share without handshake figures, or outside 0-1, in one line', () => {
    expect(() => planFleet({ devices: 10, capacity: node, resumedShare: 1 })).toThrow(
      /resumedShare needs the node's TLS handshake figures/,
    );
    expect(() => planFleet({ devices: 10, capacity: tlsNode, resumedShare: 2 })).toThrow(
      /resumedShare must be 0-1, got 2/,
    );
  });
});

describe('planFleet', () => {
  it('passes attemptMs to the herd: attempts decided later fall less into the dead node', () => {
    const plan = (attemptMs?: number) =>
      planFleet({
        devices: 400_000,
        capacity: { ...node, absorptionPerSec: 1e9 },
        detectMs: 1000,
        reconnect: parseReconnectSpec('full-jitter:500ms:5s'),
        ...(attemptMs !== undefined && { attemptMs }),
      });
    const atOnce = plan();
    const late = plan(400);
    expect(atOnce.attemptMs).toBe(0);
    expect(late.attemptMs).toBe(400);
    expect(late.nodeLoss.attemptsPerDevice).toBeLessThan(atOnce.nodeLoss.attemptsPerDevice);
    expect(formatPlan(late)).toMatch(/attempt decided +400 ?ms after it starts/);
    expect(formatPlan(atOnce)).not.toMatch(/attempt decided/);
  });

  it('sizes the fleet as ceil(devices x headroom / connectionsPerNode)', () => {
    const plan = planFleet({ devices: 1_000_000, capacity: { ...node, price: 0.25 } });
    expect(plan.nodes).toBe(40);
    expect(plan.devicesPerNode).toBe(25_000);
    expect(plan.costPerHour).toBe(10);
    expect(plan.nodeLoss.herd).toBeCloseTo(25_000, 6);
    expect(planFleet({ devices: 1_000_000, capacity: node, headroom: 1.5 }).nodes).toBe(30);
    expect(planFleet({ devices: 1_000_001, capacity: node }).nodes).toBe(41);
    expect(planFleet({ devices: 1_000_000, capacity: node }).costPerHour).toBeNull();
  });

  it('plans 200M devices at 200k per node with headroom 2: 2,000 nodes, a 100k herd, and survives', () => {
    const plan = planFleet({
      devices: 200_000_000,
      capacity: {
        connectionsPerNode: 200_000,
        absorptionPerSec: 2000,
        price: 0.34,
        profile: 'c5.xlarge',
      },
      zoneNodes: 10,
    });
    expect(plan.nodes).toBe(2000);
    expect(plan.devicesPerNode).toBe(100_000);
    expect(plan.costPerHour).toBeCloseTo(680, 9);
    expect(plan.balancer).toBe('least-connections');
    expect(plan.reconnect).toEqual({
      policy: 'full-jitter',
      baseMs: 1000,
      capMs: 60_000,
      maxAttempts: 0,
    });
    expect(plan.nodeLoss.herd).toBeCloseTo(100_000, 6);
    expect(plan.nodeLoss.label).toBe('one node');
    expect(plan.zoneLoss?.herd).toBeCloseTo(1_000_000, 6);
    expect(plan.zoneLoss?.label).toBe('zone of 10 nodes');
    expect(plan.nodeLoss.cascade).toBe(false);
    expect(plan.nodeLoss.reconnected.t99Ms).not.toBeNull();
    expect(plan.verdict).toMatch(/^survives: /);
    expect(plan.verdict).not.toContain('\n');
    const text = formatPlan(plan);
    console.log(text);
    expect(text).toContain('200,000,000 devices on profile c5.xlarge');
    expect(text).toMatch(/nodes\s+2,000/);
    expect(text).toContain('full-jitter:1s:60s');
    expect(text).toMatch(/zone of 10 nodes\s+1,000,000/);
    expect(text).toContain(`verdict: ${plan.verdict}`);
  });

  it('reports a cascade when nodes run at their full capacity (headroom 1)', () => {
    const plan = planFleet({
      devices: 1_000_000,
      capacity: node,
      headroom: 1,
      balancer: 'round-robin',
    });
    expect(plan.nodes).toBe(20);
    expect(plan.nodeLoss.cascade).toBe(true);
    expect(plan.nodeLoss.failedNodes).toBe(19);
    expect(plan.verdict).toMatch(/^cascades: one node lost -> 19 more nodes fall over/);
    expect(formatPlan(plan)).toContain('+19 nodes');
  });

  it('rejects a zone as large as the fleet and a headroom below 1', () => {
    expect(() => planFleet({ devices: 1_000_000, capacity: node, zoneNodes: 40 })).toThrow(
      /zone of 40 nodes is the whole fleet of 40/,
    );
    expect(() => planFleet({ devices: 1_000_000, capacity: node, headroom: 0.5 })).toThrow(
      PushbenchError,
    );
  });
});

describe('parseReconnectSpec', () => {
  it('reads policy:base:cap with the scenario defaults', () => {
    expect(parseReconnectSpec('full-jitter:1s:60s')).toEqual({
      policy: 'full-jitter',
      baseMs: 1000,
      capMs: 60_000,
      maxAttempts: 0,
    });
    expect(parseReconnectSpec('exponential')).toEqual({
      policy: 'exponential',
      baseMs: 500,
      capMs: 10_000,
      maxAttempts: 0,
    });
    expect(parseReconnectSpec('fixed:20s').capMs).toBe(20_000);
    expect(parseReconnectSpec('decorrelated-jitter:250ms:30s:5')).toEqual({
      policy: 'decorrelated-jitter',
      baseMs: 250,
      capMs: 30_000,
      maxAttempts: 5,
    });
  });

  it('round-trips through formatReconnectSpec', () => {
    for (const spec of ['full-jitter:1s:60s', 'equal-jitter:250ms:10s:3']) {
      expect(formatReconnectSpec(parseReconnectSpec(spec))).toBe(spec);
    }
  });

  it('rejects garbage with one PB_USAGE line naming the flag and the expected form', () => {
    for (const bad of [
      'jitter:1s',
      'full-jitter:soon',
      'full-jitter:10s:1s',
      'fixed:1s:2s:x',
      'a:b:c:d:e',
      '',
    ]) {
      let err: unknown;
      try {
        parseReconnectSpec(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(PushbenchError);
      expect((err as PushbenchError).code).toBe('PB_USAGE');
      const message = (err as PushbenchError).message;
      expect(message).toContain('--reconnect');
      expect(message).toContain('full-jitter:1s:60s');
      expect(message).not.toContain('\n');
    }
  });
});
