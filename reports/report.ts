import { ExitCode, type ExitCodeValue } from '../core/exit-codes.js';
import type { MachineFacts } from '../core/machine.js';
import type { LoadResult, TimelinePoint, WorkerHealth } from '../loadgen/coordinator.js';
import type { Scenario } from '../scenarios/schema.js';
import { evaluateGates, type Gate, type GateResult, worstVerdict } from './gates.js';
import { encodeHistogram, type LatencySummary, summarize } from './histogram.js';
import type { DeliveryLedger } from './ledger.js';

/** A run's overall outcome, worst first: invalid > fail > inconclusive > pass. */
export type Verdict = 'pass' | 'fail' | 'inconclusive' | 'invalid';

/** The exit code of each verdict. */
export const exitCodeOfVerdict: Record<Verdict, ExitCodeValue> = {
  pass: ExitCode.Pass,
  fail: ExitCode.GateFailed,
  inconclusive: ExitCode.Inconclusive,
  invalid: ExitCode.Invalid,
};

/** What the harness read from the nodes' own `/metrics` just before devices closed. */
export type ServerCounts = Record<string, unknown>;

/**
 * report.json: everything a run measured, self-describing and stable. Later
 * tools (`pushbench report`, `compare`) read only this file and the logs.
 */
export interface Report {
  schemaVersion: 1;
  tool: { name: 'pushbench'; version: string };
  scenario: string;
  description: string;
  /** The scenario as run, after defaults and overrides. */
  config: Scenario;
  startedAt: string;
  wallTimeMs: number;
  verdict: Verdict;
  exitCode: ExitCodeValue;
  devices: {
    requested: number;
    established: number;
    heldAtEnd: number;
    failed: number;
    failuresByReason: Record<string, number>;
    closesByCode: Record<string, number>;
    /** Connections the server itself counted just before the fleet closed. */
    heldAtServer: number | null;
  };
  delivery: DeliveryLedger;
  latency: { push: LatencySummary; connect: LatencySummary; api: LatencySummary };
  gates: GateResult[];
  generator: {
    valid: boolean;
    reasons: string[];
    workers: WorkerHealth[];
    skippedSends: number;
  };
  timeline: TimelinePoint[];
  /** Final merged histograms as compressed base64 (HdrHistogram V2), microseconds. */
  histograms: Record<string, string>;
  server: ServerCounts[];
  machine: MachineFacts;
}

/** Inputs of {@link buildReport} besides the load result. */
export interface ReportContext {
  scenario: Scenario;
  gates: readonly Gate[];
  startedAt: Date;
  wallTimeMs: number;
  version: string;
  machine: MachineFacts;
  server: ServerCounts[];
}

/** Assembles the report, evaluates the gates and decides the verdict. */
export function buildReport(load: LoadResult, ctx: ReportContext): Report {
  const latency = {
    push: summarize(load.histograms.push!),
    connect: summarize(load.histograms.connect!),
    api: summarize(load.histograms.api!),
  };
  const gates = evaluateGates(ctx.gates, {
    delivery: load.ledger,
    latency,
    connections: load.connections,
  });
  const verdict: Verdict = load.generator.valid ? worstVerdict(gates) : 'invalid';
  const heldAtServer = ctx.server.reduce<number | null>((sum, s) => {
    const n = typeof s.connections === 'number' ? s.connections : null;
    return n === null || sum === null ? null : sum + n;
  }, 0);
  return {
    schemaVersion: 1,
    tool: { name: 'pushbench', version: ctx.version },
    scenario: ctx.scenario.name,
    description: ctx.scenario.description,
    config: ctx.scenario,
    startedAt: ctx.startedAt.toISOString(),
    wallTimeMs: Math.round(ctx.wallTimeMs),
    verdict,
    exitCode: exitCodeOfVerdict[verdict],
    devices: { ...load.connections, heldAtServer: ctx.server.length > 0 ? heldAtServer : null },
    delivery: load.ledger,
    latency,
    gates,
    generator: load.generator,
    timeline: load.timeline,
    histograms: Object.fromEntries(
      Object.entries(load.histograms).map(([k, h]) => [k, encodeHistogram(h)]),
    ),
    server: ctx.server,
    machine: ctx.machine,
  };
}
