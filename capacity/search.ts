/**
 * The capacity search: how much one node of a profile holds within an SLO.
 * Each step is a real run (a node process with the profile's limits enforced,
 * the device fleet, open-model pushes) at more connections and more messages
 * per second than the last, until the SLO breaks, the node falls over, or the
 * generator itself saturates; then the connect (herd) absorption rate at that
 * load. Every figure comes from the steps' reports and /proc, never assumed.
 */

import { PushbenchError } from '../core/errors.js';
import { machineFacts } from '../core/machine.js';
import { version } from '../core/version.js';
import { parseGates } from '../reports/gates.js';
import type { Report } from '../reports/report.js';
import { preflightRefusal, run } from '../run/run.js';
import type { NodeProfileInput, ScenarioInput } from '../scenarios/schema.js';
import { measureHandshakes } from './handshakes.js';
import type { CapacityReport, CapacityStep, HerdStep } from './report.js';

/** What to search and how. Every field but `profile` and `slo` has a default. */
export interface CapacityOptions {
  /** Profile name (for the report) and its definition as written in a scenario. */
  profile: { name: string; input: NodeProfileInput };
  /** Gates every step must pass, e.g. `p99(push) < 50ms`. */
  slo: string[];
  /** Connections at the first step. Default 1,000. */
  start?: number;
  /** Connections grow by this factor per step. Default 2. */
  factor?: number;
  /**
   * Never go past this many connections. Default 1,000,000. Each step is placed as
   * any run is (load agent processes, a multi-process node past one process's file
   * limit), and the machine's own limits (the preflight) stop the search first.
   */
  maxConnections?: number;
  /** Messages per second per held connection at each step. Default 0.5. */
  ratePerConnection?: number;
  /** Publishing time of each step. Default 8 s. */
  stepDurationMs?: number;
  /** Connect rate while filling a step. Default 2,000/s. */
  connectRate?: number;
  /** Bisection steps between the last pass and the first failure. Default 2. */
  refine?: number;
  /** Also find the connect rate the node absorbs at the knee. Default true. */
  herd?: boolean;
  /** First herd connect rate; doubled until the connect SLO breaks. Default 1,000/s. */
  herdStart?: number;
  /** Highest herd connect rate tried. Default 32,000/s. */
  herdMax?: number;
  /** The connect SLO of the herd steps. Default `p99(connect) < 1s`. */
  herdSlo?: string;
  /**
   * Devices connect over TLS to the node (`topology.tls: "node"`) in every
   * step, the herd's included (its connects are full handshakes), and the
   * node's CPU per full and per resumed handshake is measured (capacity/handshakes.ts)
   * for `plan`. Default false.
   */
  tls?: boolean;
  workers?: number;
  seed?: number;
  /** Results folder; each step writes its own run folder inside. */
  outDir?: string;
  /** Progress lines. */
  notice?: (line: string) => void;
}

/** Implicit conditions of every step besides the SLO: the fleet is held and the node alive. */
const STEP_GATES = ['connections.held >= 99.9%', 'nodes.crashed < 1'];

function stepScenario(
  o: Required<Pick<CapacityOptions, 'profile' | 'slo' | 'connectRate' | 'tls'>>,
  name: string,
  connections: number,
  rateHz: number,
  durationMs: number,
  gates: string[],
): ScenarioInput {
  return {
    name,
    description: `capacity step: ${connections} connections, ${rateHz} msgs/s on one ${o.profile.name} node`,
    topology: {
      regions: [{ name: 'cap', nodes: 1, profile: o.profile.name }],
      profiles: { [o.profile.name]: o.profile.input },
      ...(o.tls && { tls: 'node' as const }),
    },
    devices: { count: connections, connectRate: o.connectRate, reconnect: 'full-jitter:500ms:5s' },
    traffic: { direct: { rate: rateHz } },
    duration: durationMs,
    deliveryDeadline: '3s',
    gates,
  };
}

function nodeProcessOf(report: Report): { rssBytes?: number; cores?: number } {
  const proc = (report.server[0] as { process?: Record<string, number> } | undefined)?.process;
  if (!proc) return {};
  const cores =
    proc.publishCpuSeconds !== undefined && proc.publishSeconds
      ? proc.publishCpuSeconds / proc.publishSeconds
      : undefined;
  return {
    ...(proc.rssBytes !== undefined && { rssBytes: proc.rssBytes }),
    ...(cores !== undefined && { cores: Math.round(cores * 1000) / 1000 }),
  };
}

const GENERATOR_SATURATED = 'generator saturated';

/** A step that failed because the load generator, not the node, was the limit. */
function generatorLimited(step: { pass: boolean; failure?: string } | undefined): boolean {
  return step !== undefined && !step.pass && (step.failure ?? '').startsWith(GENERATOR_SATURATED);
}

/** Why a step did not pass, in one line; '' when it passed. */
function failureOf(report: Report): string {
  // A node that fell over is a fact of the node whatever the generator's health:
  // the generator's lag can inflate latencies, never crash a node.
  const crashed = report.faults.filter((f) => f.action === 'crash');
  if (crashed.length > 0) return `node fell over: ${crashed[0]?.error ?? crashed[0]?.label}`;
  if (!report.generator.valid) {
    return `${GENERATOR_SATURATED} (${report.generator.reasons[0] ?? 'see report'}): the node was not the limit`;
  }
  const bad = report.gates.filter((g) => g.verdict !== 'pass');
  return bad.map((g) => `${g.expr}: ${g.detail}`).join('; ');
}

function toStep(
  report: Report,
  connections: number,
  rateHz: number,
  reportPath?: string,
): CapacityStep {
  const proc = nodeProcessOf(report);
  const publishS = Math.max(0.001, report.config.durationMs / 1000);
  const failure = failureOf(report);
  return {
    connections,
    rateHz,
    held: report.devices.heldAtEnd,
    heldAtServer: report.devices.heldAtServer,
    deliveredPerSec: Math.round(report.delivery.delivered / publishS),
    lost: report.delivery.lost,
    push: {
      p50: report.latency.push.p50,
      p99: report.latency.push.p99,
      max: report.latency.push.max,
    },
    connectP99: report.latency.connect.p99,
    ...(proc.rssBytes !== undefined && { nodeRssBytes: proc.rssBytes }),
    ...(proc.cores !== undefined && { nodeCores: proc.cores }),
    pass: failure === '',
    generatorValid: report.generator.valid,
    ...(failure !== '' && { failure }),
    gates: report.gates.map((g) => ({ expr: g.expr, actual: g.actualText, verdict: g.verdict })),
    ...(reportPath && { reportPath }),
  };
}

/** Least-squares slope of y over x; null with fewer than two distinct x. */
export function slope(points: ReadonlyArray<[number, number]>): number | null {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
  }
  return sxx > 0 ? sxy / sxx : null;
}

/**
 * The largest count up to `want` that `refusalAt` does not refuse (the
 * machine's preflight), by bisection above `floor` (which fits, or is 0) to
 * within 1 % (at least 50), with the refusal of `want`; `want` itself when it
 * fits.
 */
export async function largestFit(
  want: number,
  floor: number,
  refusalAt: (connections: number) => Promise<string | undefined>,
): Promise<{ connections: number; refusal?: string }> {
  const refusal = await refusalAt(want);
  if (refusal === undefined) return { connections: want };
  let lo = floor;
  let hi = want;
  while (hi - lo > Math.max(50, hi * 0.01)) {
    const mid = Math.round((lo + hi) / 2);
    if ((await refusalAt(mid)) === undefined) lo = mid;
    else hi = mid;
  }
  return { connections: lo, refusal };
}

/**
 * Runs the search and returns its report. Throws `PB_BAD_GATE` for a bad SLO
 * and `PB_USAGE` for bad options before any step starts.
 */
export async function searchCapacity(options: CapacityOptions): Promise<CapacityReport> {
  const o = {
    start: 1000,
    factor: 2,
    maxConnections: 1_000_000,
    ratePerConnection: 0.5,
    stepDurationMs: 8000,
    connectRate: 2000,
    refine: 2,
    herd: true,
    herdStart: 1000,
    herdMax: 32_000,
    herdSlo: 'p99(connect) < 1s',
    tls: false,
    workers: undefined as number | undefined,
    seed: 1,
    ...options,
  };
  if (o.slo.length === 0) throw new PushbenchError('PB_USAGE', 'capacity needs at least one --slo');
  parseGates([...o.slo, o.herdSlo]);
  if (!(o.factor > 1))
    throw new PushbenchError('PB_USAGE', `--factor must be > 1, got ${o.factor}`);
  if (!(o.start >= 1) || o.start > o.maxConnections) {
    throw new PushbenchError(
      'PB_USAGE',
      `--start must be between 1 and --max-connections (${o.maxConnections}), got ${o.start}`,
    );
  }
  const startedAt = new Date();
  const notice = o.notice ?? (() => {});
  const gates = [...o.slo, ...STEP_GATES];
  const steps: CapacityStep[] = [];
  let stepNo = 0;

  const runStep = async (connections: number): Promise<CapacityStep> => {
    const rateHz = Math.max(1, Math.round(connections * o.ratePerConnection));
    stepNo++;
    notice(`step ${stepNo}: ${connections} connections, ${rateHz} msgs/s`);
    const scenario = stepScenario(
      o,
      `capacity-${o.profile.name}-${connections}`,
      connections,
      rateHz,
      o.stepDurationMs,
      gates,
    );
    const { report, reportPath } = await run(scenario, {
      ...(o.workers !== undefined && { workers: o.workers }),
      seed: o.seed,
      ...(o.outDir
        ? { outDir: `${o.outDir}/step-${String(stepNo).padStart(2, '0')}-${connections}` }
        : { write: false }),
    });
    const step = toStep(report, connections, rateHz, reportPath);
    steps.push(step);
    notice(
      `  ${step.pass ? 'pass' : 'FAIL'}: held ${step.held}, ${step.deliveredPerSec} msgs/s, push p99 ${step.push.p99} ms` +
        (step.failure ? ` (${step.failure})` : ''),
    );
    return step;
  };

  const machineFit = (want: number, floor: number) =>
    largestFit(want, floor, (n) =>
      preflightRefusal(stepScenario(o, 'capacity-fit', n, 1, o.stepDurationMs, gates)),
    );

  // Grow until something breaks, or the machine cannot carry the next step.
  let lastPass: CapacityStep | undefined;
  let firstFail: CapacityStep | undefined;
  let machineLimit: string | undefined;
  let connections = o.start;
  for (;;) {
    const fit = await machineFit(connections, lastPass?.connections ?? 0);
    if (fit.refusal !== undefined) {
      machineLimit = fit.refusal;
      notice(`this machine cannot carry ${connections} connections: ${fit.refusal}`);
      if (fit.connections <= (lastPass?.connections ?? 0)) break;
      connections = fit.connections;
    }
    const step = await runStep(connections);
    if (!step.pass) {
      firstFail = step;
      break;
    }
    lastPass = step;
    if (connections >= o.maxConnections || machineLimit !== undefined) break;
    connections = Math.min(o.maxConnections, Math.round(connections * o.factor));
  }
  // Bisect between the last pass and the first failure (unless the generator was the limit).
  if (!generatorLimited(firstFail)) {
    let lo = lastPass?.connections ?? 0;
    let hi = firstFail?.connections;
    for (let i = 0; hi !== undefined && i < o.refine && hi - lo > Math.max(50, hi * 0.05); i++) {
      const mid = Math.round((lo + hi) / 2);
      if (mid <= 0) break;
      const step = await runStep(mid);
      if (step.pass) {
        lo = mid;
        if (!lastPass || step.connections > lastPass.connections) lastPass = step;
      } else {
        hi = mid;
        if (generatorLimited(step)) break;
      }
    }
  }

  // The herd: how fast the node takes new connections at its knee.
  const herdSteps: HerdStep[] = [];
  let absorption: number | null = null;
  let herdLimitedBy = '';
  if (o.herd && lastPass) {
    const devices = lastPass.connections;
    for (let rate = o.herdStart; rate <= o.herdMax; rate *= 2) {
      stepNo++;
      notice(`herd step: ${devices} devices connecting at ${rate}/s`);
      const scenario = stepScenario(
        { ...o, connectRate: rate },
        `capacity-${o.profile.name}-herd-${rate}`,
        devices,
        Math.max(1, Math.round(devices * o.ratePerConnection)),
        2000,
        [o.herdSlo, ...STEP_GATES],
      );
      const { report } = await run(scenario, {
        ...(o.workers !== undefined && { workers: o.workers }),
        seed: o.seed,
        write: false,
      });
      const failure = failureOf(report);
      const attempts = report.timeline.filter((p) => p.phase === 'connecting');
      const herd: HerdStep = {
        connectRate: rate,
        devices,
        held: report.devices.heldAtEnd,
        connectP50: report.latency.connect.p50,
        connectP99: report.latency.connect.p99,
        peakAcceptedPerSec: Math.max(
          0,
          ...attempts.map((p) => p.connectAttempts - p.connectFailures),
        ),
        pass: failure === '',
        generatorValid: report.generator.valid,
        ...(failure !== '' && { failure }),
      };
      herdSteps.push(herd);
      notice(
        `  ${herd.pass ? 'pass' : 'FAIL'}: connect p99 ${herd.connectP99} ms${herd.failure ? ` (${herd.failure})` : ''}`,
      );
      if (!herd.pass) {
        herdLimitedBy = herd.failure ?? 'herd SLO';
        break;
      }
      absorption = rate;
      // Past the fleet size a faster rate is one burst: nothing more to learn.
      if (rate >= devices) {
        herdLimitedBy = `the knee's ${devices} devices all connect within a second at ${rate}/s (a lower bound)`;
        break;
      }
    }
  }

  let handshakes: CapacityReport['tls'];
  if (o.tls) {
    notice('TLS handshakes: full and resumed, against a node of their own');
    const c = await measureHandshakes(HANDSHAKE_DEVICES);
    handshakes = {
      devices: c.devices,
      plainConnectUs: Math.round(c.plain.nodeUs),
      fullConnectUs: Math.round(c.full.nodeUs),
      resumedConnectUs: Math.round(c.resumed.nodeUs),
      resumedShare: c.resumed.open > 0 ? c.resumed.resumed / c.resumed.open : 0,
      plainKbPerDevice: Math.round(c.plain.nodeKb * 100) / 100,
      tlsKbPerDevice: Math.round(c.full.nodeKb * 100) / 100,
    };
    notice(
      `  node CPU per connect: plain ${handshakes.plainConnectUs} us, full handshake ${handshakes.fullConnectUs} us, resumed ${handshakes.resumedConnectUs} us`,
    );
  }

  const passing = steps.filter((s) => s.pass);
  const memory = slope(
    passing
      .filter((s) => s.nodeRssBytes !== undefined)
      .map((s) => [s.held, s.nodeRssBytes!] as [number, number]),
  );
  const cpu = slope(
    passing
      .filter((s) => s.nodeCores !== undefined)
      .map((s) => [s.deliveredPerSec, s.nodeCores!] as [number, number]),
  );
  const limitedBy =
    lastPass === undefined
      ? firstFail === undefined && machineLimit !== undefined
        ? `this machine cannot carry the first step: ${machineLimit}`
        : 'the first step failed'
      : firstFail === undefined
        ? machineLimit !== undefined
          ? `this machine's limits, not the node (a lower bound): ${machineLimit}`
          : `--max-connections ${o.maxConnections} reached without breaking the SLO (a lower bound)`
        : generatorLimited(firstFail)
          ? 'the load generator saturated first (the knee is a lower bound)'
          : (firstFail.failure ?? 'SLO');
  return {
    schemaVersion: 1,
    kind: 'capacity',
    tool: { name: 'pushbench', version },
    profile: o.profile.name,
    profileInput: o.profile.input,
    slo: o.slo,
    startedAt: startedAt.toISOString(),
    wallTimeMs: Date.now() - startedAt.getTime(),
    settings: {
      start: o.start,
      factor: o.factor,
      maxConnections: o.maxConnections,
      ratePerConnection: o.ratePerConnection,
      stepDurationMs: o.stepDurationMs,
      connectRate: o.connectRate,
      herdSlo: o.herdSlo,
      tls: o.tls ? 'node' : 'off',
    },
    steps: [...steps].sort((a, b) => a.connections - b.connections),
    knee: lastPass
      ? { connections: lastPass.held, messagesPerSec: lastPass.deliveredPerSec }
      : null,
    limitedBy,
    memoryPerConnectionBytes: memory === null ? null : Math.round(memory),
    coresPer1kMsgsPerSec: cpu === null ? null : Math.round(cpu * 1000 * 10_000) / 10_000,
    herd: {
      steps: herdSteps,
      absorptionPerSec: absorption,
      slo: o.herdSlo,
      limitedBy:
        herdLimitedBy ||
        (o.herd ? `--herd-max ${o.herdMax}/s reached (a lower bound)` : 'not measured'),
    },
    ...(handshakes && { tls: handshakes }),
    price: typeof o.profile.input.price === 'number' ? o.profile.input.price : null,
    machine: machineFacts(),
  };
}

/** Connections per round of the handshake measurement: enough to average, one process's files. */
const HANDSHAKE_DEVICES = 4000;
