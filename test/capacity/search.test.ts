import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadProfiles, resolveProfile } from '../../capacity/profiles.js';
import { formatCapacity, readCapacityReport, writeCapacityReport } from '../../capacity/report.js';
import { largestFit, searchCapacity, slope } from '../../capacity/search.js';
import { preflightRefusal } from '../../run/run.js';

describe('capacity search', () => {
  it('finds the knee of a node that falls over past 1,800 connections, and its herd absorption', async () => {
    const lines: string[] = [];
    const report = await searchCapacity({
      profile: { name: 'tiny', input: { capacity: 1800, overload: 'crash' } },
      slo: ['p99(push) < 200ms'],
      start: 500,
      factor: 2,
      maxConnections: 2000,
      stepDurationMs: 2000,
      connectRate: 2000,
      refine: 1,
      herdStart: 1000,
      herdMax: 2000,
      workers: 2,
      notice: (l) => lines.push(l),
    });
    // 500 and 1,000 pass, 2,000 crashes the node, the bisection finds 1,500 holds (300 spare:
    // an attempt the client gave up on that the node admitted late must not tip it over).
    // The message says why a step failed, should one that must pass not.
    expect(
      report.steps.map((s) => [s.connections, s.pass]),
      JSON.stringify(report.steps.map((s) => [s.connections, s.failure])),
    ).toEqual([
      [500, true],
      [1000, true],
      [1500, true],
      [2000, false],
    ]);
    expect(report.steps.at(-1)?.failure).toMatch(/node fell over/);
    expect(report.knee).toEqual({ connections: 1500, messagesPerSec: 750 });
    expect(report.limitedBy).toMatch(/node fell over/);
    expect(report.memoryPerConnectionBytes).not.toBeNull();
    expect(report.steps[0]?.nodeRssBytes).toBeGreaterThan(10 * 2 ** 20);
    // The herd's first step (1,000/s) is absorbed, unless the load generator itself was the
    // limit on this shared machine: then the herd is reported as limited by it, not the node.
    const firstHerd = report.herd.steps[0];
    expect(firstHerd).toBeDefined();
    if (firstHerd?.failure?.startsWith('generator saturated')) {
      expect(report.herd.limitedBy).toMatch(/^generator saturated/);
    } else {
      expect(report.herd.absorptionPerSec).toBeGreaterThanOrEqual(1000);
    }
    expect(lines.some((l) => l.startsWith('step 1: 500 connections'))).toBe(true);

    const dir = mkdtempSync(join(tmpdir(), 'pb-cap-'));
    const files = writeCapacityReport(report, dir);
    expect(readCapacityReport(files[0]!).knee?.connections).toBe(1500);
    expect(readFileSync(files[1]!, 'utf8')).toContain('data-chart="capacity"');
    expect(formatCapacity(report)).toMatch(/herd absorption: .* within p99\(connect\) < 1s/);
    // Without the herd search, the summary says so rather than "n/a … limited by not measured".
    const noHerd = {
      ...report,
      herd: { ...report.herd, steps: [], absorptionPerSec: null, limitedBy: 'not measured' },
    };
    expect(formatCapacity(noHerd)).toMatch(/^herd absorption: not measured \(--no-herd\)$/m);
  }, 180_000);

  it("--tls: steps over TLS, and the node's CPU per full and per resumed handshake for plan", async () => {
    const report = await searchCapacity({
      profile: { name: 'tls', input: {} },
      slo: ['p99(push) < 500ms'],
      start: 300,
      factor: 2,
      maxConnections: 300,
      stepDurationMs: 2000,
      connectRate: 300,
      herdStart: 300,
      herdMax: 300,
      workers: 2,
      tls: true,
    });
    expect(report.settings.tls).toBe('node');
    expect(report.steps[0]?.held).toBe(300);
    const t = report.tls!;
    expect(t.plainConnectUs).toBeGreaterThan(0);
    // A full handshake costs the node more than a plain connect, a resumed one less than a full.
    expect(t.fullConnectUs).toBeGreaterThan(t.plainConnectUs);
    expect(t.resumedConnectUs).toBeGreaterThan(0);
    expect(t.resumedConnectUs).toBeLessThan(t.fullConnectUs);
    expect(t.resumedShare).toBe(1);
    expect(t.tlsKbPerDevice).toBeGreaterThan(0);
    expect(formatCapacity(report)).toMatch(/^TLS \(devices over wss:\/\/.*full handshake \d+ us/m);
  }, 240_000);

  it('refuses a bad profile, SLO or option before any step runs', async () => {
    const profiles = await loadProfiles();
    expect(() => resolveProfile(profiles, 'huge')).toThrow(/unknown profile "huge"/);
    expect(() => resolveProfile({ bad: { memory: 'lots' } }, 'bad')).toThrow(
      /topology\.profiles\.bad\.memory: must be a size/,
    );
    const profile = { name: 'x', input: {} };
    await expect(searchCapacity({ profile, slo: ['p99(pushes) < 5ms'] })).rejects.toMatchObject({
      code: 'PB_BAD_GATE',
    });
    await expect(searchCapacity({ profile, slo: [] })).rejects.toThrow(/at least one --slo/);
    await expect(searchCapacity({ profile, slo: ['p99(push) < 5ms'], factor: 1 })).rejects.toThrow(
      /--factor must be > 1/,
    );
  });

  it('reads a capacity report back, refusing anything else with one line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-cap-'));
    expect(() => readCapacityReport(join(dir, 'nope.json'))).toThrow(/does not exist/);
  });

  it('fits slopes by least squares', () => {
    expect(
      slope([
        [1000, 50e6],
        [2000, 54e6],
        [4000, 62e6],
      ]),
    ).toBeCloseTo(4000, 6);
    expect(slope([[1, 1]])).toBeNull();
  });

  it('finds the largest step the machine carries, within 1 %, and keeps the refusal', async () => {
    const asked: number[] = [];
    const limit = 123_456;
    const fit = await largestFit(1_000_000, 64_000, async (n) => {
      asked.push(n);
      return n > limit ? `${n} will not fit` : undefined;
    });
    expect(fit.refusal).toBe('1000000 will not fit');
    expect(fit.connections).toBeLessThanOrEqual(limit);
    expect(fit.connections).toBeGreaterThanOrEqual(limit * 0.99 - 50);
    expect(asked.length).toBeLessThan(20);
    expect(await largestFit(5000, 0, async () => undefined)).toEqual({ connections: 5000 });
  });

  it("places a step past one process's file limit instead of refusing it; refuses what no placement fits", async () => {
    const step = (count: number) => ({
      name: 'fit',
      topology: { nodes: 1 },
      devices: { count },
      traffic: { direct: { rate: 1 } },
      duration: '8s',
    });
    // 250,000 devices: agent processes and a multi-process node, as `hold` places them.
    expect(await preflightRefusal(step(250_000))).toBeUndefined();
    expect(await preflightRefusal(step(1_000_000_000))).toMatch(/will not fit/);
  });
});
