import { ExitCode, type ExitCodeValue } from '../core/exit-codes.js';
import type { MachineFacts } from '../core/machine.js';
import type { LoadResult, RunMarker, TimelinePoint, WorkerHealth } from '../loadgen/coordinator.js';
import type { Scenario } from '../scenarios/schema.js';
import { evaluateGates, type Gate, type GateResult, worstVerdict } from './gates.js';
import { encodeHistogram, type LatencySummary, summarize } from './histogram.js';
import type { DeliveryLedger } from './ledger.js';
import { type SkewSummary, summarizeSkew } from './skew.js';

export { type SkewSummary, skewOf, summarizeSkew } from './skew.js';

/** A run's overall outcome, worst first: invalid > fail > inconclusive > pass. */
export type Verdict = 'pass' | 'fail' | 'inconclusive' | 'invalid';

/** The exit code of each verdict. */
export const exitCodeOfVerdict: Record<Verdict, ExitCodeValue> = {
  pass: ExitCode.Pass,
  fail: ExitCode.GateFailed,
  inconclusive: ExitCode.Inconclusive,
  invalid: ExitCode.Invalid,
};

const verdictRank: Record<Verdict, number> = { pass: 0, inconclusive: 1, fail: 2, invalid: 3 };

/** The worst of several verdicts (invalid > fail > inconclusive > pass) and its exit code. */
export function worstVerdictOf(verdicts: readonly Verdict[]): {
  verdict: Verdict;
  exitCode: ExitCodeValue;
} {
  let worst: Verdict = 'pass';
  for (const v of verdicts) if (verdictRank[v] > verdictRank[worst]) worst = v;
  return { verdict: worst, exitCode: exitCodeOfVerdict[worst] };
}

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
  /** The ledger, plus `unaddressed`: scheduled messages not sent because no device was connected. */
  delivery: DeliveryLedger & { unaddressed: number };
  latency: { push: LatencySummary; connect: LatencySummary; api: LatencySummary };
  gates: GateResult[];
  generator: {
    valid: boolean;
    reasons: string[];
    workers: WorkerHealth[];
    skippedSends: number;
  };
  timeline: TimelinePoint[];
  /** Labelled instants on the timeline (phase changes; faults once they exist). */
  markers: RunMarker[];
  /** Per-node connection skew, max/mean over nodes, from the nodes' own counts. */
  skew: SkewSummary;
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
  const skew = summarizeSkew(load.timeline);
  const gates = evaluateGates(ctx.gates, {
    delivery: load.ledger,
    latency,
    connections: load.connections,
    skew,
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
    delivery: { ...load.ledger, unaddressed: load.unaddressed },
    latency,
    gates,
    generator: load.generator,
    timeline: load.timeline,
    markers: load.markers,
    skew,
    histograms: Object.fromEntries(
      Object.entries(load.histograms).map(([k, h]) => [k, encodeHistogram(h)]),
    ),
    server: ctx.server,
    machine: ctx.machine,
  };
}
