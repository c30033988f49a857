import { ExitCode, type ExitCodeValue } from '../core/exit-codes.js';
import type { MachineFacts } from '../core/machine.js';
import { encodeHistogram, type LatencySummary } from '../core/measure/histogram.js';
import { addCounts, type DeliveryLedger } from '../core/measure/ledger.js';
import {
  type ConnectionTotals,
  type LoadAgentRecord,
  type LoadResult,
  type PlacementSummary,
  RUN_SERIES,
  type RunMarker,
  type TimelinePoint,
  type WorkerHealth,
} from '../core/result.js';
import type { Scenario } from '../scenarios/schema.js';
import { evaluateGates, type Gate, type GateResult, worstVerdict } from './gates.js';
import { summarizeWithIntervals, withBatchIntervals } from './percentile-ci.js';
import { type SkewSummary, summarizeSkew } from './skew.js';
import {
  type FaultImpact,
  type FaultLike,
  faultImpacts,
  type StormSummary,
  summarizeStorm,
} from './storm.js';
import { faultWindows } from './windows.js';

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
  /** The fleet's connections, and what the server itself counted just before the fleet closed. */
  devices: ConnectionTotals & { heldAtServer: number | null };
  /** The ledger, plus `unaddressed`: scheduled messages not sent because no device was connected. */
  delivery: DeliveryLedger & { unaddressed: number };
  /** The ledger of each traffic kind; `delivery` is their sum (room deliveries count message x member). */
  deliveryByKind?: Record<'direct' | 'indirect' | 'room' | 'd2d', DeliveryLedger>;
  /** Summaries of every latency series with samples (`push`, `connect`, `api` always; `reconnect`, `room`, `d2d`, `push@<region>` when recorded). */
  latency: { push: LatencySummary; connect: LatencySummary; api: LatencySummary } & Record<
    string,
    LatencySummary
  >;
  gates: GateResult[];
  generator: {
    valid: boolean;
    /** Why the result is invalid; empty when valid. */
    reasons: string[];
    /** Generator lag that reached too few samples to invalidate the result (absent in older reports). */
    warnings?: string[];
    workers: WorkerHealth[];
    skippedSends: number;
    /** How the fleet was spread over processes (absent in reports from before placement). */
    placement?: PlacementSummary;
    /** The load generator's processes from /proc just before the fleet closed. */
    resources?: { processes: number; rssBytes: number; cpuSeconds: number };
    /** Load agents on other hosts (`--agents`), each with its clock offset and resources. */
    agents?: LoadAgentRecord[];
    /**
     * With agents: the largest clock uncertainty of any agent, µs. Every latency
     * figure measured on an agent is within ± this of the truth (besides its own error).
     */
    clockUncertaintyUs?: number;
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
  /** The reconnect storm over the whole run. */
  storm: StormSummary;
  /** Every timeline action and unscripted crash, with the herd each caused and messages lost in it. */
  faults: FaultImpact[];
  /** Per-region figures: nodes that fell over on their own, skew over the region's nodes. */
  regions: Record<string, { crashed: number; skew: SkewSummary }>;
  /** The processes of the system under test and the balancers' view over time. */
  topology: TopologyReport;
}

/** The system under test as it ran. */
export interface TopologyReport {
  /** Every node over its life (restarts keep the id), with how each process ended. */
  nodes: Array<{
    nodeId: string;
    region: string;
    state: string;
    /** The profile's cpu / memory / openFiles limits: enforced or not, how, and why not. */
    limits?: Array<{ limit: string; value: number; enforced: boolean; how: string; why?: string }>;
    lives: Array<{
      pid: number;
      exit?: { exitCode: number | undefined; signal: string | undefined; lastError: string };
    }>;
  }>;
  hubPid?: number;
  /**
   * The hub's process (the shared registry and broker without Redis) at the end,
   * from /proc, and its CPU from the start of publishing, as each node's is.
   */
  hubProcess?: {
    pid: number;
    rssBytes: number;
    cpuSeconds: number;
    publishCpuSeconds?: number;
    publishSeconds?: number;
  };
  networkPid?: number;
  /** The network engine the run used (`userland` or `kernel`) and why (asked, or what `auto` found). */
  network?: { engine: 'userland' | 'kernel'; why: string };
  /** One sample per second of the balancers: per-backend connections and health. */
  balancer: Array<{
    t: number;
    backends: Record<
      string,
      {
        connections: number;
        healthy: boolean;
        inRotation: boolean;
        conntrackHeld: number;
        /** When its health last changed (s since start), when it ever did. */
        healthChangedAtS?: number;
        /** Health checks so far that timed out while the node starved for a CPU on this machine, counted neither way; absent when none. */
        checksStarved?: number;
        /** HAProxy: connects to it so far that failed and were retried (`wretr`); absent when none. */
        retries?: number;
        /** Connects so far that failed on it and went to another node (HAProxy `wredis`, or the builtin balancer with redispatch); absent when none. */
        redispatches?: number;
        /** Devices so far that left while they waited at the builtin balancer for one of this node's connect slots (`maxConnecting`); absent when none. */
        queueAbandoned?: number;
        /** Devices so far that the builtin balancer reset after they waited `queueTimeout` for one of this node's connect slots; absent when none. */
        queueTimedOut?: number;
      }
    >;
    /** With a global entry: devices routed so far, home region -> region it was sent to. */
    routed?: Record<string, Record<string, number>>;
    /** With a global entry: each region's health as the global checks see it. */
    regionsHealthy?: Record<string, boolean>;
  }>;
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
  /** What the chaos director did (topology/chaos.ts FaultRecord). */
  faults?: FaultLike[];
  topology?: TopologyReport;
  /** Scheduled send times (s since start) of messages accepted and never delivered. */
  lostAtS?: number[];
  /** Load agents on other hosts, when the run had them. */
  agents?: LoadAgentRecord[];
}

/** Assembles the report, evaluates the gates and decides the verdict. */
/** Sums ledgers: counts add, statuses add by key, the rate is recomputed. */
export function sumLedgers(ledgers: readonly DeliveryLedger[]): DeliveryLedger {
  const out: DeliveryLedger = {
    sent: 0,
    accepted: 0,
    delivered: 0,
    lost: 0,
    rejected: 0,
    rejectedByStatus: {},
    duplicates: 0,
    late: 0,
    unconfirmed: 0,
    rate: 1,
  };
  for (const l of ledgers) {
    out.sent += l.sent;
    out.accepted += l.accepted;
    out.delivered += l.delivered;
    out.lost += l.lost;
    out.rejected += l.rejected;
    out.duplicates += l.duplicates;
    out.late += l.late;
    out.unconfirmed += l.unconfirmed;
    addCounts(out.rejectedByStatus, l.rejectedByStatus);
  }
  out.rate = out.accepted === 0 ? 1 : out.delivered / out.accepted;
  return out;
}

export function buildReport(load: LoadResult, ctx: ReportContext): Report {
  // Direct and indirect pushes are load.ledger; rooms and d2d add their own.
  const delivery = load.traffic
    ? sumLedgers([load.ledger, load.traffic.room, load.traffic.d2d])
    : load.ledger;
  const latency = {} as Report['latency'];
  for (const [series, h] of Object.entries(load.histograms)) {
    if (h.totalCount > 0 || RUN_SERIES.includes(series as (typeof RUN_SERIES)[number])) {
      // Every second that recorded the series, in time order: the batches of batch means.
      const perSecond = load.intervals
        .filter((iv) => (iv.histograms[series]?.totalCount ?? 0) > 0)
        .map((iv) => iv.histograms[series]!);
      latency[series] = withBatchIntervals(summarizeWithIntervals(h), perSecond);
    }
  }
  const skew = summarizeSkew(load.timeline);
  const faultRecords = ctx.faults ?? [];
  const storm = summarizeStorm(load.drops, load.timeline);
  const regionOf = new Map((ctx.topology?.nodes ?? []).map((n) => [n.nodeId, n.region]));
  const faults = faultImpacts(faultRecords, load.drops, load.timeline, ctx.lostAtS ?? [], {
    dropNodes: load.dropNodes,
    regionOf: (id) => regionOf.get(id),
  });
  const publishStartS = Math.max(0, (load.marks.publishStartUs - load.marks.startUs) / 1e6);
  const notFoundAtS = load.notFoundAtS ?? [];
  for (const f of faults) {
    const windows = faultWindows(f, load.intervals, publishStartS);
    if (windows) f.windows = windows;
    if (f.action === 'datastore-restart' && f.tEnd !== null) {
      const from = f.tEnd;
      const next = faults.find((g) => g.t > from);
      const within = notFoundAtS.filter((t) => t >= from && (next === undefined || t < next.t));
      f.notFoundAfter = {
        count: within.length,
        forS: within.length > 0 ? Math.round((within[within.length - 1]! - from) * 1000) / 1000 : 0,
      };
    }
  }
  const regions: Report['regions'] = {};
  for (const r of ctx.scenario.topology.regions) {
    const inRegion = (id: string) => regionOf.get(id) === r.name;
    const own = load.timeline.map((p) => ({
      phase: p.phase,
      nodes: p.nodes && Object.fromEntries(Object.entries(p.nodes).filter(([id]) => inRegion(id))),
    }));
    regions[r.name] = {
      crashed: faultRecords.filter((f) => f.action === 'crash' && inRegion(f.target)).length,
      skew: summarizeSkew(own),
    };
  }
  const heldAtServer = ctx.server.reduce<number | null>((sum, s) => {
    const n = typeof s.connections === 'number' ? s.connections : null;
    return n === null || sum === null ? null : sum + n;
  }, 0);
  const gates = evaluateGates(ctx.gates, {
    delivery,
    latency,
    connections: {
      ...load.connections,
      heldAtServer: ctx.server.length > 0 ? heldAtServer : null,
    },
    skew,
    storm,
    faults,
    regions,
    crashed: faultRecords.filter((f) => f.action === 'crash').length,
  });
  const verdict: Verdict = load.generator.valid ? worstVerdict(gates) : 'invalid';
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
    delivery: { ...delivery, unaddressed: load.unaddressed },
    ...(load.traffic && {
      deliveryByKind: {
        direct: load.traffic.direct,
        indirect: load.traffic.indirect,
        room: load.traffic.room,
        d2d: load.traffic.d2d,
      },
    }),
    latency,
    gates,
    generator: {
      ...load.generator,
      ...(ctx.agents && {
        agents: ctx.agents,
        clockUncertaintyUs: Math.max(0, ...ctx.agents.map((a) => a.clock?.worstUncertaintyUs ?? 0)),
      }),
    },
    timeline: load.timeline,
    markers: [
      ...load.markers,
      ...faultRecords
        .filter((f) => f.fired)
        .map((f) => ({
          t: f.t,
          kind: 'fault' as const,
          label: f.label,
          ...(f.tEnd !== null && f.tEnd !== f.t && { tEnd: f.tEnd }),
        })),
    ].sort((a, b) => a.t - b.t),
    skew,
    histograms: Object.fromEntries(
      Object.entries(load.histograms).map(([k, h]) => [k, encodeHistogram(h)]),
    ),
    server: ctx.server,
    machine: ctx.machine,
    storm,
    faults,
    regions,
    topology: ctx.topology ?? { nodes: [], balancer: [] },
  };
}

/** Latency series to show, in order: push, connect, api, then every other series with samples. */
export function latencySeriesOf(report: Pick<Report, 'latency'>): string[] {
  const known = ['push', 'connect', 'api'];
  const others = Object.keys(report.latency)
    .filter((k) => !known.includes(k) && (report.latency[k]?.count ?? 0) > 0)
    .sort();
  return [...known, ...others];
}
