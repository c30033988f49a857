import { createLatencyHistogram, recordUs } from '../../core/measure/histogram.js';
import { Bitset, reconcileLedger } from '../../core/measure/ledger.js';
import type { LoadResult } from '../../core/result.js';
import { parseGates } from '../../reports/gates.js';
import { buildReport, type Report } from '../../reports/report.js';
import { validateScenario } from '../../scenarios/schema.js';

/** What a fabricated run looked like. */
export interface FakeRun {
  /** Messages accepted (numbered 0..accepted-1). */
  accepted: number;
  /** The first `lost` accepted messages never arrived. Default 0. */
  lost?: number;
  /** Latency recorded for every delivered message, µs. Default 2000. */
  pushUs?: number;
  /** Latency of delivered message i, µs, instead of one value for all. */
  pushAtUs?: (i: number) => number;
  /** False marks the generator saturated. Default true. */
  valid?: boolean;
}

/**
 * A load result built from real parts (bitset ledger, real HdrHistograms) for
 * tests of what comes after the run: reports, verdicts, outputs, comparisons.
 */
export function fakeLoad(run: FakeRun): LoadResult {
  const lost = run.lost ?? 0;
  const accepted = new Bitset();
  const delivered = new Bitset();
  for (let i = 0; i < run.accepted; i++) accepted.add(i);
  for (let i = lost; i < run.accepted; i++) delivered.add(i);
  const push = createLatencyHistogram();
  for (let i = lost; i < run.accepted; i++) recordUs(push, run.pushAtUs?.(i) ?? run.pushUs ?? 2000);
  const ledger = reconcileLedger(
    { sent: run.accepted, accepted, rejectedByStatus: {} },
    { delivered, late: new Bitset(), duplicates: 0 },
  );
  const empty = reconcileLedger(
    { sent: 0, accepted: new Bitset(), rejectedByStatus: {} },
    { delivered: new Bitset(), late: new Bitset(), duplicates: 0 },
  );
  return {
    connections: {
      requested: 10,
      established: 10,
      heldAtEnd: 10,
      failed: 0,
      failuresByReason: {},
      closesByCode: {},
      lossesByCause: {},
      reconnectingAtEnd: 0,
    },
    drops: new Float64Array(0),
    dropNodes: [],
    lostAtS: [],
    gaveUp: 0,
    ledger,
    traffic: {
      direct: ledger,
      indirect: empty,
      room: { ...empty, recovered: 0, resyncs: 0, expected: 0, messages: { sent: 0, accepted: 0 } },
      d2d: { ...empty, notSent: 0, statuses: {} },
      combined: {
        accepted: ledger.accepted,
        delivered: ledger.delivered,
        lost: ledger.lost,
        rate: ledger.rate,
      },
    },
    histograms: { push, connect: createLatencyHistogram(), api: createLatencyHistogram() },
    timeline: [],
    generator: {
      valid: run.valid ?? true,
      reasons:
        run.valid === false ? ['devices-0: event-loop delay p99 reached 80ms (limit 50ms)'] : [],
      warnings: [],
      workers: [],
      skippedSends: 0,
      placement: {
        processes: 1,
        threadsPerProcess: 1,
        devicesByProcess: [100],
        agentPids: [],
        sourceAddresses: {},
        reasons: [],
      },
    },
    badFrames: 0,
    intervals: [],
    markers: [],
    unaddressed: 0,
    marks: { startUs: 0, publishStartUs: 0, publishEndUs: 0, endUs: 0 },
  };
}

/** Builds the report of a fake load with these gates, on a fixed 10-device, 10 s scenario. */
export function fakeReport(
  load: LoadResult,
  gates: string[],
  server = [{ connections: 10 }],
): Report {
  return buildReport(load, {
    scenario: validateScenario(
      { name: 'fake', devices: { count: 10 }, duration: '10s' },
      { cores: 2 },
    ),
    gates: parseGates(gates),
    startedAt: new Date(0),
    wallTimeMs: 12_000,
    version: 'test',
    machine: {
      cores: 2,
      cpuModel: 'x',
      memoryBytes: 2 ** 34,
      node: 'v20',
      platform: 'linux',
      arch: 'x64',
      openFilesLimit: 20000,
    },
    server,
  });
}
