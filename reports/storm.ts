/**
 * Reconnect storms and skew, summarised from what the run recorded: every
 * connection loss with the time the device was back (`drops`), the per-second
 * timeline, and the faults applied. Pure functions: report.ts calls them.
 */

import { quantileRanks } from './percentile-ci.js';
import { skewOf } from './skew.js';
import type { FaultWindows } from './windows.js';

/** A fault or scripted action, as the report carries it (topology/chaos.ts FaultRecord). */
export interface FaultLike {
  label: string;
  action: string;
  target: string;
  /** Seconds since the fleet started. */
  t: number;
  tEnd: number | null;
  fired: boolean;
  /** Set when the action could not be carried out. */
  error?: string;
  /** Nodes it started or stopped (scale-up/down). */
  nodes?: string[];
}

/** The timeline fields this module reads. */
export interface StormPoint {
  t: number;
  /** All connect attempts, first connects included. */
  connectAttempts: number;
  reconnectAttempts?: number;
  losses?: number;
  nodes?: Record<string, number>;
}

/** Times from a fault (or a loss) until a share of the affected devices was connected again, in seconds. */
export interface ReconnectTimes {
  p50: number | null;
  p99: number | null;
  /** Null while some device never came back. */
  p100: number | null;
  /**
   * Where the true p50 and p99 lie, 19 times in 20, were the same herd replayed:
   * order statistics of the devices' own times (distribution-free). A bound is
   * null where the sample cannot set it (too few devices, or devices never back).
   * A herd of a few hundred cannot pin its p99 down: its 3rd-slowest device decides it.
   */
  ci?: { p50: TimeBounds; p99: TimeBounds };
}

/** A 95 % interval in seconds; null: open on that side. */
export interface TimeBounds {
  lo: number | null;
  hi: number | null;
}

/** The herd one fault caused. */
export interface FaultImpact extends FaultLike {
  /** Connections lost that this fault is the latest explanation for. */
  affected: number;
  /** Of those, devices never connected again before the run ended. */
  notBack: number;
  /** Reconnect attempts those devices made (a device back on its first attempt made 1). */
  attempts: number;
  attemptsPerDevice: number | null;
  /** Seconds from the fault's start until 50/99/100 % of affected devices were back. */
  reconnected: ReconnectTimes;
  /**
   * Seconds from the fault's start until its devices saw their connections lost:
   * a kill's reach the devices within milliseconds, a blackhole's only when a
   * heartbeat or TCP gives up. `tenths`: the midpoints of ten equal shares of
   * the devices (5th, 15th … 95th percentile), for a simulation to replay.
   * Absent when the fault affected no device.
   */
  noticed?: LossNoticed;
  /** Peak reconnect attempts per second between this fault and the next. */
  peakAttemptsPerSec: number;
  /** Accepted messages that were never delivered, scheduled between this fault and the next. */
  lostMessages: number;
  /** For scale-up: seconds from the fault until per-node skew fell below 1.2 (null: never). */
  skewSettledAfterS?: number | null;
  /** For a fault that lasted: latency while it stood, and as long a stretch before it. */
  windows?: FaultWindows;
  /**
   * For a `datastore-restart`: pushes answered 404 `not_connected` scheduled from the
   * moment Redis answered again until the next fault, and how long after it the last one
   * was (0 when none): the window in which connected devices could not be found.
   */
  notFoundAfter?: { count: number; forS: number };
}

/** When a fault's devices lost their connections, in seconds from its start (see {@link FaultImpact.noticed}). */
export interface LossNoticed {
  p50: number;
  p99: number;
  p100: number;
  tenths: number[];
}

/** Run-wide storm figures. */
export interface StormSummary {
  /** Connections lost during the run (not counting deliberate periodic reconnects). */
  losses: number;
  /** Reconnect attempts after losses. */
  reconnectAttempts: number;
  /** Attempts per lost connection (amplification); null without losses. */
  attemptsPerDevice: number | null;
  /** Most reconnect attempts in one interval (1 s), and when. */
  peakAttemptsPerSec: number;
  peakAtS: number | null;
  /** Time from each loss to that device being back (s). */
  lossToBack: ReconnectTimes;
  /** Devices that never came back. */
  notBack: number;
}

/** Which faults explain connection losses (scaling up or adding devices does not drop anyone). */
const DISRUPTIVE = new Set([
  'kill-node',
  'stop-node',
  'scale-down',
  'latency',
  'blackhole',
  'reset',
  'conntrack-limit',
  'admission-rate',
  'crash',
  // Datastore faults drop no device, but they own the messages lost while they stand.
  'partition',
  'datastore-latency',
  'datastore-down',
  'datastore-restart',
]);

function quantileSorted(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] ?? null;
}

function round2(x: number | null): number | null {
  return x === null ? null : Math.round(x * 100) / 100;
}

function times(backs: number[], notBack: number): ReconnectTimes {
  const sorted = [...backs].sort((a, b) => a - b);
  const n = sorted.length + notBack;
  const at = (q: number) => {
    // A share that includes devices never back has no time.
    const need = Math.ceil(q * n);
    return need > sorted.length ? null : round2(sorted[Math.max(0, need - 1)] ?? null);
  };
  const bounds = (q: number): TimeBounds => {
    // Ranks past the devices that came back (devices never back are the slowest) are open.
    const [l, u] = quantileRanks(n, q);
    return {
      lo: l >= 1 && l <= sorted.length ? round2(sorted[l - 1]!) : null,
      hi: u <= sorted.length ? round2(sorted[u - 1]!) : null,
    };
  };
  return {
    p50: at(0.5),
    p99: at(0.99),
    p100: notBack > 0 ? null : round2(quantileSorted(sorted, 1)),
    ...(n > 0 && { ci: { p50: bounds(0.5), p99: bounds(0.99) } }),
  };
}

/** Loss times after a fault, summarised (empty: undefined); ms precision. */
function noticedOf(after: number[]): LossNoticed | undefined {
  if (after.length === 0) return undefined;
  const sorted = [...after].sort((a, b) => a - b);
  const at = (q: number) => Math.round(Math.max(0, quantileSorted(sorted, q) ?? 0) * 1000) / 1000;
  return {
    p50: at(0.5),
    p99: at(0.99),
    p100: at(1),
    tenths: Array.from({ length: 10 }, (_, i) => at((i + 0.5) / 10)),
  };
}

/** Drops as triples [lossAtS, backAtS (−1: never), attempts]. */
export type DropTriples = ArrayLike<number>;

/** Reconnect attempts of one interval (first connects are not a storm); old reports: all attempts. */
function attemptsOf(p: StormPoint): number {
  return p.reconnectAttempts ?? p.connectAttempts;
}

/** Run-wide storm summary. */
export function summarizeStorm(drops: DropTriples, timeline: readonly StormPoint[]): StormSummary {
  const backs: number[] = [];
  let notBack = 0;
  let attempts = 0;
  for (let i = 0; i + 2 < drops.length; i += 3) {
    const loss = drops[i]!;
    const back = drops[i + 1]!;
    attempts += drops[i + 2]!;
    if (back < 0) notBack++;
    else backs.push(back - loss);
  }
  const losses = drops.length / 3;
  let peak = 0;
  let peakAt: number | null = null;
  for (const p of timeline) {
    const attempts = attemptsOf(p);
    if (attempts > peak) {
      peak = attempts;
      peakAt = p.t;
    }
  }
  return {
    losses,
    reconnectAttempts: attempts,
    attemptsPerDevice: losses > 0 ? round2(attempts / losses) : null,
    peakAttemptsPerSec: peak,
    peakAtS: peakAt,
    lossToBack: times(backs, notBack),
    notBack,
  };
}

/** How long after its sockets died a node's crash may be noticed (exit observed, cgroup removed). */
const CRASH_NOTICE_S = 1;

/** What the attribution may know besides times: where each loss happened, and where nodes are. */
export interface AttributionContext {
  /** Node each loss in `drops` happened on ('' when unknown), parallel to the triples. */
  dropNodes?: readonly string[];
  /** Region of a node id. */
  regionOf?: (nodeId: string) => string | undefined;
}

/** The nodes a fault hit, when that can be known from its record. */
function nodesHit(f: FaultLike, regionOf?: (nodeId: string) => string | undefined) {
  if (f.action === 'scale-down') return (id: string) => f.nodes?.includes(id) ?? false;
  if (f.target.startsWith('region ')) {
    const region = f.target.slice('region '.length);
    return regionOf ? (id: string) => regionOf(id) === region : undefined;
  }
  return (id: string) => id === f.target;
}

/**
 * Attributes each loss to the latest disruptive fault that started at or
 * before it and hit the node the device was on (when the device heard which
 * node it was on); a loss on an unknown node goes to the latest disruptive
 * fault at all. Lost messages (by scheduled send time) go to the latest
 * disruptive fault. Then summarises the herd per fault.
 */
export function faultImpacts(
  faults: readonly FaultLike[],
  drops: DropTriples,
  timeline: readonly StormPoint[],
  lostAtS: readonly number[],
  ctx: AttributionContext = {},
): FaultImpact[] {
  const fired = faults.filter((f) => f.fired).sort((a, b) => a.t - b.t);
  const disruptive = fired.filter((f) => DISRUPTIVE.has(f.action));
  const hits = new Map(disruptive.map((f) => [f, nodesHit(f, ctx.regionOf)]));
  const owner = (t: number, node = ''): FaultLike | undefined => {
    let found: FaultLike | undefined;
    for (const f of disruptive) {
      const hit = hits.get(f);
      const onNode = node !== '' && hit !== undefined && hit(node);
      // A crash is recorded when its exit is noticed, a moment after the sockets died.
      const slack = onNode && f.action === 'crash' ? CRASH_NOTICE_S : 1e-9;
      if (f.t > t + slack) continue;
      if (node === '' || hit === undefined || onNode) {
        if (!found || f.t >= found.t) found = f;
      }
    }
    return found;
  };
  const acc = new Map<
    FaultLike,
    { backs: number[]; notBack: number; attempts: number; lost: number; after: number[] }
  >();
  for (const f of disruptive) {
    acc.set(f, { backs: [], notBack: 0, attempts: 0, lost: 0, after: [] });
  }
  for (let i = 0, k = 0; i + 2 < drops.length; i += 3, k++) {
    const f = owner(drops[i]!, ctx.dropNodes?.[k] ?? '');
    const a = f && acc.get(f);
    if (!a || !f) continue;
    const back = drops[i + 1]!;
    a.after.push(drops[i]! - f.t);
    a.attempts += drops[i + 2]!;
    if (back < 0) a.notBack++;
    else a.backs.push(back - f.t);
  }
  for (const t of lostAtS) {
    const f = owner(t);
    const a = f && acc.get(f);
    if (a) a.lost++;
  }
  return fired.map((f) => {
    const a = acc.get(f);
    // The peak of the intervals that end after this fault and no later than the next
    // one starts; faults within the same second (a cascade) share one window.
    const next = fired.find((g) => g.t >= f.t + 1 && DISRUPTIVE.has(g.action));
    let peak = 0;
    for (const p of timeline) {
      if (p.t > f.t && (next === undefined || p.t <= next.t)) peak = Math.max(peak, attemptsOf(p));
    }
    const affected = a ? a.backs.length + a.notBack : 0;
    const impact: FaultImpact = {
      ...f,
      affected,
      notBack: a?.notBack ?? 0,
      attempts: a?.attempts ?? 0,
      attemptsPerDevice: a && affected > 0 ? round2(a.attempts / affected) : null,
      reconnected: a ? times(a.backs, a.notBack) : { p50: null, p99: null, p100: null },
      peakAttemptsPerSec: DISRUPTIVE.has(f.action) ? peak : 0,
      lostMessages: a?.lost ?? 0,
    };
    const noticed = a && noticedOf(a.after);
    if (noticed) impact.noticed = noticed;
    if (f.action === 'scale-up')
      impact.skewSettledAfterS = scaleUpSettled(f, timeline, ctx.regionOf);
    return impact;
  });
}

/**
 * Seconds from the moment a scale-up's nodes were behind the balancer (its
 * `tEnd`) until the per-node skew of its region first fell below 1.2, counting
 * only samples in which every new node reports; null if it never did.
 */
function scaleUpSettled(
  f: FaultLike,
  timeline: readonly StormPoint[],
  regionOf?: (nodeId: string) => string | undefined,
): number | null {
  const start = f.tEnd ?? f.t;
  const region = f.target.startsWith('region ') ? f.target.slice('region '.length) : undefined;
  const inRegion = (id: string) => !region || !regionOf || regionOf(id) === region;
  const own = timeline
    .filter(
      (p) => p.t >= start && p.nodes && (f.nodes ?? []).every((id) => p.nodes![id] !== undefined),
    )
    .map((p) => ({
      ...p,
      nodes: Object.fromEntries(Object.entries(p.nodes!).filter(([id]) => inRegion(id))),
    }));
  const settled = skewSettledAfter(own, start, 1.2);
  return settled;
}

/** Seconds from `t` until the first sample whose per-node skew is below `threshold`; null if never. */
export function skewSettledAfter(
  timeline: readonly StormPoint[],
  t: number,
  threshold: number,
): number | null {
  for (const p of timeline) {
    if (p.t < t || !p.nodes) continue;
    const s = skewOf(p.nodes);
    if (s !== null && s < threshold) return round2(p.t - t);
  }
  return null;
}
