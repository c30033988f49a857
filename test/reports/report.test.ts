import { describe, expect, it } from 'vitest';
import type { LoadResult } from '../../loadgen/coordinator.js';
import { parseGates } from '../../reports/gates.js';
import { createLatencyHistogram, recordUs } from '../../reports/histogram.js';
import { Bitset, reconcileLedger } from '../../reports/ledger.js';
import { colourFor, renderSummary } from '../../reports/outputs/text.js';
import { buildReport } from '../../reports/report.js';
import { validateScenario } from '../../scenarios/schema.js';

const scenario = validateScenario(
  { name: 't', devices: { count: 10 }, duration: '1s' },
  { cores: 2 },
);

function load(opts: {
  delivered: number;
  accepted: number;
  valid?: boolean;
  pushUs?: number;
}): LoadResult {
  const accepted = new Bitset();
  const delivered = new Bitset();
  for (let i = 0; i < opts.accepted; i++) accepted.add(i);
  for (let i = 0; i < opts.delivered; i++) delivered.add(i);
  const push = createLatencyHistogram();
  for (let i = 0; i < opts.delivered; i++) recordUs(push, opts.pushUs ?? 2000);
  return {
    connections: {
      requested: 10,
      established: 10,
      heldAtEnd: 10,
      failed: 0,
      failuresByReason: {},
      closesByCode: {},
    },
    ledger: reconcileLedger(
      { sent: opts.accepted, accepted, rejectedByStatus: {} },
      { delivered, late: new Bitset(), duplicates: 0 },
    ),
    histograms: { push, connect: createLatencyHistogram(), api: createLatencyHistogram() },
    timeline: [],
    generator: {
      valid: opts.valid ?? true,
      reasons:
        opts.valid === false ? ['devices-0: event-loop delay p99 reached 80ms (limit 50ms)'] : [],
      workers: [],
      skippedSends: 0,
    },
    badFrames: 0,
    intervals: [],
    markers: [],
    unaddressed: 0,
    marks: { startUs: 0, publishStartUs: 0, publishEndUs: 0, endUs: 0 },
  };
}

function report(l: LoadResult, gates: string[]) {
  return buildReport(l, {
    scenario,
    gates: parseGates(gates),
    startedAt: new Date(0),
    wallTimeMs: 1000,
    version: 'test',
    machine: {
      cores: 2,
      cpuModel: 'x',
      memoryBytes: 1,
      node: 'v20',
      platform: 'linux',
      arch: 'x64',
      openFilesLimit: 20000,
    },
    server: [{ connections: 10 }],
  });
}

describe('report verdicts and exit codes', () => {
  it('passes (exit 0) when every gate passes', () => {
    const r = report(load({ accepted: 5000, delivered: 5000 }), [
      'delivery >= 99.9%',
      'p99(push) < 50ms',
    ]);
    expect(r.verdict).toBe('pass');
    expect(r.exitCode).toBe(0);
    expect(r.devices.heldAtServer).toBe(10);
  });

  it('fails (exit 3) when a latency gate fails', () => {
    const r = report(load({ accepted: 5000, delivered: 5000, pushUs: 80_000 }), [
      'delivery >= 99.9%',
      'p99(push) < 50ms',
    ]);
    expect(r.verdict).toBe('fail');
    expect(r.exitCode).toBe(3);
  });

  it('is inconclusive (exit 4) when too few messages were accepted to show the delivery target', () => {
    const r = report(load({ accepted: 1000, delivered: 1000 }), ['delivery >= 99.9%']);
    expect(r.verdict).toBe('inconclusive');
    expect(r.exitCode).toBe(4);
    expect(r.gates[0]?.needed).toBe(2995);
  });

  it('is invalid (exit 5) when the generator saturated, whatever the gates say', () => {
    const r = report(load({ accepted: 5000, delivered: 5000, valid: false }), ['p99(push) < 50ms']);
    expect(r.verdict).toBe('invalid');
    expect(r.exitCode).toBe(5);
    const text = renderSummary(r, colourFor({ isTTY: false } as NodeJS.WriteStream));
    expect(text).toMatch(/generator saturated/);
    expect(text).toMatch(/verdict: INVALID\s+\(exit 5\)/);
  });

  it('keeps the encoded histograms so a report can be re-rendered', () => {
    const r = report(load({ accepted: 10, delivered: 10 }), []);
    expect(typeof r.histograms.push).toBe('string');
    expect(r.latency.push.count).toBe(10);
  });
});
