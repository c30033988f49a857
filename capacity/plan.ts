/**
 * Fleet plan: how many nodes a fleet of N devices needs given one node's
 * measured capacity, and what happens when one node (or a zone of k nodes)
 * dies, by simulating the herd at full fleet scale (capacity/simulate.ts).
 */
import { PushbenchError } from '../core/errors.js';
import { formatCount, formatMs, parseDurationMs } from '../core/units.js';
import {
  BALANCER_ALGORITHMS,
  type BalancerAlgorithmName,
  RECONNECT_POLICIES,
  type ReconnectPolicy,
  type ReconnectPolicyName,
} from '../scenarios/schema.js';
import { type HerdResult, simulateHerd } from './simulate.js';

/** What a fleet plan starts from: the fleet size and one node's measured capacity (a report's knee). */
export interface PlanInput {
  /** Devices the fleet must hold. */
  devices: number;
  /** One node's capacity: connections within SLO, connect absorption per second, price per node-hour. */
  capacity: {
    connectionsPerNode: number;
    absorptionPerSec: number;
    price?: number | null;
    profile?: string;
    /**
     * From a capacity report made with `--tls`: the node's CPU per connect with
     * a full handshake and with a resumed one, µs. `absorptionPerSec` was then
     * measured with full handshakes (the herd steps' devices were new).
     */
    tls?: { fullConnectUs: number; resumedConnectUs: number };
  };
  /**
   * With `capacity.tls`: the share of a herd's reconnects that resume their TLS
   * session on the node they land on (1: the nodes share ticket keys; 0: each
   * has its own, so every reconnect to a survivor is a full handshake). Default 1.
   */
  resumedShare?: number;
  /** Plan so the average node holds `connectionsPerNode / headroom`. Default 2 (Pushy: 200k average, 400k headroom). */
  headroom?: number;
  /** Balancer in front of the nodes. Default least-connections. */
  balancer?: BalancerAlgorithmName;
  /** Client reconnect policy. Default full-jitter 1 s .. 60 s, never giving up. */
  reconnect?: ReconnectPolicy;
  /** Also simulate a zone of this many nodes dying. Default: no zone. */
  zoneNodes?: number;
  /** Time until the balancer's health checks take a dead node out. Default 2000 ms. */
  detectMs?: number;
  /**
   * Time from a reconnect attempt's start to the balancer's choice; a refused one
   * is seen as long again later (simulateHerd's `attemptMs`). Default 0.
   */
  attemptMs?: number;
  /** Seed of the simulation's random draws. Default 1. */
  seed?: number;
}

/** A simulated loss with a label for reports (`one node`, `zone of 10 nodes`). */
export type LabelledHerd = HerdResult & { label: string };

/** A fleet plan: nodes, cost, and the simulated loss of a node (and of a zone). */
export interface FleetPlan {
  /** Devices planned for. */
  devices: number;
  /** Nodes needed: ceil(devices · headroom / connectionsPerNode). */
  nodes: number;
  /** Average devices per node. */
  devicesPerNode: number;
  /** Nodes × price per node-hour; null when the profile has no price. */
  costPerHour: number | null;
  /** The inputs the plan used, defaults filled. */
  headroom: number;
  capacity: PlanInput['capacity'];
  balancer: BalancerAlgorithmName;
  reconnect: ReconnectPolicy;
  detectMs: number;
  attemptMs: number;
  /**
   * Connects per second one node takes in a herd: the measured absorption, and
   * with TLS scaled by the node's CPU per connect with the herd's mix of full
   * and resumed handshakes over its CPU per full one.
   */
  herdAbsorptionPerSec: number;
  /** With TLS: the share of the herd's reconnects that resume. */
  resumedShare?: number;
  /** One node dies. */
  nodeLoss: LabelledHerd;
  /** A zone of `zoneNodes` nodes dies, when asked for. */
  zoneLoss?: LabelledHerd;
  /** One line: whether the fleet survives or cascades. */
  verdict: string;
}

/** The reconnect policy when none is given: full jitter from 1 s, capped at 60 s. */
export const DEFAULT_PLAN_RECONNECT: ReconnectPolicy = {
  policy: 'full-jitter',
  baseMs: 1000,
  capMs: 60_000,
  maxAttempts: 0,
};

const SPEC_HELP = 'write policy[:base[:cap[:maxAttempts]]], e.g. full-jitter:1s:60s';

/**
 * Parses a reconnect policy written as `policy[:base[:cap[:maxAttempts]]]`
 * (`full-jitter:1s:60s`), with the scenario file's rules: base defaults to
 * 500 ms, cap to max(10 s, base), cap >= base, maxAttempts to 0 (never give up;
 * the optional fourth field is an addition for the command line). Throws
 * `PB_USAGE` with one line on anything else.
 */
export function parseReconnectSpec(text: string): ReconnectPolicy {
  const fail = (why: string): never => {
    throw new PushbenchError(
      'PB_USAGE',
      `--reconnect ${JSON.stringify(text)}: ${why}; ${SPEC_HELP}`,
    );
  };
  const parts = text.trim().split(':');
  if (parts.length > 4) fail(`${parts.length} fields, at most 4`);
  const [name = '', base, cap, max] = parts;
  if (!(RECONNECT_POLICIES as readonly string[]).includes(name)) {
    fail(`unknown policy "${name}" (one of ${RECONNECT_POLICIES.join(', ')})`);
  }
  const duration = (field: string, value: string | undefined, fallback: number): number => {
    if (value === undefined || value.trim() === '') return fallback;
    try {
      return parseDurationMs(value, field);
    } catch {
      return fail(`${field} "${value}" is not a duration like 500ms, 1s, 2m`);
    }
  };
  const baseMs = duration('base', base, 500);
  const capMs = duration('cap', cap, Math.max(10_000, baseMs));
  if (capMs < baseMs) fail(`cap (${capMs}ms) is below base (${baseMs}ms)`);
  let maxAttempts = 0;
  if (max !== undefined && max.trim() !== '') {
    maxAttempts = Number(max);
    if (!Number.isInteger(maxAttempts) || maxAttempts < 0) {
      fail(`maxAttempts "${max}" is not an integer >= 0`);
    }
  }
  return { policy: name as ReconnectPolicyName, baseMs, capMs, maxAttempts };
}

/** Writes a reconnect policy back in the `--reconnect` form: `full-jitter:1s:60s`. */
export function formatReconnectSpec(p: ReconnectPolicy): string {
  const d = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
  return `${p.policy}:${d(p.baseMs)}:${d(p.capMs)}${p.maxAttempts > 0 ? `:${p.maxAttempts}` : ''}`;
}

function validate(input: PlanInput, headroom: number, detectMs: number): string[] {
  const problems: string[] = [];
  const c = input.capacity;
  if (!(Number.isFinite(input.devices) && input.devices > 0)) {
    problems.push(`devices must be a number > 0, got ${input.devices}`);
  }
  if (!(Number.isFinite(c.connectionsPerNode) && c.connectionsPerNode > 0)) {
    problems.push(`capacity.connectionsPerNode must be > 0, got ${c.connectionsPerNode}`);
  }
  if (!(Number.isFinite(c.absorptionPerSec) && c.absorptionPerSec > 0)) {
    problems.push(`capacity.absorptionPerSec must be > 0, got ${c.absorptionPerSec}`);
  }
  if (c.price != null && !(Number.isFinite(c.price) && c.price >= 0)) {
    problems.push(`capacity.price must be >= 0, got ${c.price}`);
  }
  if (!(Number.isFinite(headroom) && headroom >= 1)) {
    problems.push(`headroom must be >= 1 (2 = nodes run at half their capacity), got ${headroom}`);
  }
  if (
    input.balancer !== undefined &&
    !(BALANCER_ALGORITHMS as readonly string[]).includes(input.balancer)
  ) {
    problems.push(
      `balancer must be one of ${BALANCER_ALGORITHMS.join(', ')}, got ${JSON.stringify(input.balancer)}`,
    );
  }
  if (
    input.zoneNodes !== undefined &&
    !(Number.isInteger(input.zoneNodes) && input.zoneNodes >= 1)
  ) {
    problems.push(`zoneNodes must be an integer >= 1, got ${input.zoneNodes}`);
  }
  if (!(Number.isFinite(detectMs) && detectMs >= 0)) {
    problems.push(`detectMs must be >= 0, got ${detectMs}`);
  }
  const share = input.resumedShare;
  if (share !== undefined) {
    if (c.tls === undefined) {
      problems.push(
        "resumedShare needs the node's TLS handshake figures (a capacity report made with --tls)",
      );
    } else if (!(Number.isFinite(share) && share >= 0 && share <= 1)) {
      problems.push(`resumedShare must be 0-1, got ${share}`);
    }
  }
  if (c.tls !== undefined && !(c.tls.fullConnectUs > 0 && c.tls.resumedConnectUs > 0)) {
    problems.push('capacity.tls handshake costs must be > 0');
  }
  return problems;
}

/**
 * The connects per second a node takes in a herd. Absorption is CPU-bound:
 * with TLS, measured with full handshakes, it scales by full / (the herd's
 * mix of resumed and full) CPU per connect.
 */
export function herdAbsorption(capacity: PlanInput['capacity'], resumedShare: number): number {
  const t = capacity.tls;
  if (t === undefined) return capacity.absorptionPerSec;
  const mixUs = resumedShare * t.resumedConnectUs + (1 - resumedShare) * t.fullConnectUs;
  return (capacity.absorptionPerSec * t.fullConnectUs) / mixUs;
}

/** What one simulated loss means, in a few words. */
function lossSummary(r: LabelledHerd): string {
  if (r.cascade) return `${r.label} lost -> ${formatCount(r.failedNodes)} more nodes fall over`;
  if (r.reconnected.t99Ms === null) {
    return `${r.label} lost -> ${formatCount(r.notBack)} devices still out after ${formatMs(r.simulatedMs)}`;
  }
  return (
    `${r.label} lost -> 99% back in ${formatMs(r.reconnected.t99Ms)}` +
    ` (peak ${perNodeRate(r.peakConnectsPerSecPerNode)} connects/s on one node)`
  );
}

/**
 * Plans a fleet: nodes = ceil(devices · headroom / connectionsPerNode), then
 * simulates the loss of one node (and of a zone when `zoneNodes` is given) with
 * nodes falling over past `connectionsPerNode`. Throws `PB_USAGE` listing every
 * invalid input.
 */
export function planFleet(input: PlanInput): FleetPlan {
  const headroom = input.headroom ?? 2;
  const detectMs = input.detectMs ?? 2000;
  const attemptMs = input.attemptMs ?? 0;
  const problems = validate(input, headroom, detectMs);
  if (problems.length > 0) {
    const head =
      problems.length === 1 ? problems[0] : `${problems.length} problems: ${problems.join('; ')}`;
    throw new PushbenchError('PB_USAGE', `fleet plan: ${head}`, problems);
  }
  const c = input.capacity;
  const resumedShare = c.tls === undefined ? undefined : (input.resumedShare ?? 1);
  const absorption = herdAbsorption(c, resumedShare ?? 0);
  const balancer = input.balancer ?? 'least-connections';
  const reconnect = input.reconnect ?? DEFAULT_PLAN_RECONNECT;
  // Rounded first so that e.g. 200e6·2/200e3 stays exactly 2000 under floating point.
  const nodes = Math.max(
    1,
    Math.ceil(Math.round(((input.devices * headroom) / c.connectionsPerNode) * 1e9) / 1e9),
  );
  if (input.zoneNodes !== undefined && input.zoneNodes >= nodes) {
    throw new PushbenchError(
      'PB_USAGE',
      `fleet plan: a zone of ${input.zoneNodes} nodes is the whole fleet of ${nodes}; give --zone fewer nodes`,
    );
  }
  const simulate = (failedNodes: number, label: string): LabelledHerd => ({
    label,
    ...simulateHerd({
      nodes,
      devices: input.devices,
      failedNodes,
      capacity: c.connectionsPerNode,
      overloadAt: c.connectionsPerNode,
      absorptionPerSec: absorption,
      balancer,
      reconnect,
      detectMs,
      attemptMs,
      seed: input.seed ?? 1,
    }),
  });
  const nodeLoss = simulate(1, 'one node');
  const zoneLoss =
    input.zoneNodes === undefined
      ? undefined
      : simulate(input.zoneNodes, `zone of ${input.zoneNodes} nodes`);
  const losses = zoneLoss ? [nodeLoss, zoneLoss] : [nodeLoss];
  const summaries = losses.map(lossSummary).join('; ');
  const verdict = losses.some((l) => l.cascade)
    ? `cascades: ${summaries}`
    : losses.some((l) => l.reconnected.t99Ms === null)
      ? `does not recover: ${summaries}`
      : `survives: ${summaries}`;
  return {
    devices: input.devices,
    nodes,
    devicesPerNode: input.devices / nodes,
    costPerHour: c.price == null ? null : nodes * c.price,
    headroom,
    capacity: c,
    balancer,
    reconnect,
    detectMs,
    attemptMs,
    herdAbsorptionPerSec: absorption,
    ...(resumedShare !== undefined && { resumedShare }),
    nodeLoss,
    ...(zoneLoss ? { zoneLoss } : {}),
    verdict,
  };
}

/** Left-aligns the first column and right-aligns the rest, two spaces apart. */
function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A plain-text summary of a plan for a terminal: fleet, cost, the simulated losses, the verdict. */
export function formatPlan(plan: FleetPlan): string {
  const c = plan.capacity;
  const t = (ms: number | null) => (ms === null ? 'never' : formatMs(ms));
  const out: string[] = [];
  out.push(
    `fleet plan: ${formatCount(plan.devices)} devices${c.profile ? ` on profile ${c.profile}` : ''}`,
  );
  out.push('');
  const facts: Array<[string, string]> = [
    ['nodes', formatCount(plan.nodes)],
    ['devices per node', formatCount(plan.devicesPerNode)],
    [
      'node capacity',
      `${formatCount(c.connectionsPerNode)} connections, ${formatCount(c.absorptionPerSec)} connects/s`,
    ],
    ...(c.tls
      ? ([
          [
            'TLS handshakes',
            `node CPU per connect ${c.tls.fullConnectUs} us full, ${c.tls.resumedConnectUs} us resumed; herd ${Math.round((plan.resumedShare ?? 0) * 100)}% resumed: ${formatCount(plan.herdAbsorptionPerSec)} connects/s per node`,
          ],
        ] as Array<[string, string]>)
      : []),
    ['headroom', `${plan.headroom}x`],
    ['cost per hour', plan.costPerHour === null ? '- (no price)' : formatCount(plan.costPerHour)],
    ['balancer', plan.balancer],
    ['reconnect', formatReconnectSpec(plan.reconnect)],
    ['dead node noticed', `after ${formatMs(plan.detectMs)}`],
    ...(plan.attemptMs > 0
      ? ([
          [
            'attempt decided',
            `${formatMs(plan.attemptMs)} after it starts (a refusal seen as long again later)`,
          ],
        ] as Array<[string, string]>)
      : []),
  ];
  const keyWidth = Math.max(...facts.map(([k]) => k.length));
  for (const [k, v] of facts) out.push(`${k.padEnd(keyWidth)}  ${v}`);
  out.push('');
  const losses = plan.zoneLoss ? [plan.nodeLoss, plan.zoneLoss] : [plan.nodeLoss];
  out.push(
    table([
      [
        'lost',
        'herd',
        'peak att/s',
        'peak conn/s/node',
        'att/device',
        '50% back',
        '99% back',
        'all back',
        'cascade',
        'sim wall',
      ],
      ...losses.map((l) => [
        l.label,
        formatCount(l.herd),
        formatCount(l.peakAttemptsPerSec),
        perNodeRate(l.peakConnectsPerSecPerNode),
        l.attemptsPerDevice.toFixed(2),
        t(l.reconnected.t50Ms),
        t(l.reconnected.t99Ms),
        t(l.reconnected.t100Ms),
        l.cascade ? `+${formatCount(l.failedNodes)} nodes` : 'no',
        formatMs(l.elapsedMs),
      ]),
    ]),
  );
  out.push(
    '  times from the failure; simulated as device counts in 10 ms buckets (capacity/simulate.ts)',
  );
  out.push('');
  out.push(`verdict: ${plan.verdict}`);
  return out.join('\n');
}

/** A per-node rate: small herds over many nodes give fractions, which must not read as 0. */
function perNodeRate(v: number): string {
  return v >= 10 ? formatCount(v) : v.toFixed(2);
}
