/**
 * A fleet-scale simulation of a reconnect herd: k nodes die at t=0, their
 * devices reconnect by a client policy through a balancer onto the survivors,
 * each node absorbs a measured number of new connections per second, and a
 * node pushed past `overloadAt` falls over and adds its devices to the herd.
 *
 * Devices are counts in time buckets, never objects, and nodes are groups:
 * nodes in the same state (connections held, absorption tokens, connects this
 * second) are one group with a node count, and the state is the groups plus a
 * calendar of future attempts per attempt number. A group splits only when its
 * nodes must diverge (random's draws; see `routeRandom`) and alike groups are
 * merged again, so a fleet of 114,000 evenly loaded nodes is a handful of
 * groups and 200 million devices on it run in tens of milliseconds. Uneven
 * `loadByNode` fleets start as one group per distinct load. Least-connections,
 * power-of-two and round-robin give every node of a group the same attempts,
 * so their results are those of a node-by-node simulation up to floating-point
 * rounding; random on up to `RANDOM_PER_NODE_NODES` survivors runs node by node
 * (same draws, same results), and on bigger fleets is the same in distribution.
 *
 * What is modelled, and how (the approximations are deliberate; each says why):
 *
 * - **Fluid counts.** Counts are expected values (reals), not integers: the
 *   calendar spreads a failed bucket's devices over future buckets by the
 *   policy's distribution instead of drawing one delay per device. "All back"
 *   (`t100Ms`) therefore means "fewer than half a device still out".
 * - **Delays** come from the same formulas as `loadgen/reconnect.ts`, per
 *   attempt number, so exponential and jittered policies are exact in
 *   distribution: full-jitter is uniform over [0, w], equal-jitter over
 *   [w/2, w], exponential/fixed/immediate are points, w = min(cap, base·2^(n-1)).
 *   `server-hint` is simulated as full-jitter (a node dying by SIGKILL sends no
 *   goaway, so no hint exists). `decorrelated-jitter` depends on the device's
 *   previous delay; the simulation uses the *marginal* distribution of the n-th
 *   delay (sampled with `nextDelayMs` itself, 32 quantile pieces), which keeps
 *   each attempt's delay right but forgets the correlation between one device's
 *   consecutive delays.
 * - **Time.** A failure in bucket b is taken to happen at b's start; a retry
 *   lands at least one bucket later (a refused connect takes a round trip).
 *   A connect in bucket b counts as done at b's end, so reported times are
 *   late by less than one bucket, never early.
 * - **Balancers** split a bucket's attempts over the nodes in rotation (live
 *   nodes plus dead ones the health checks have not noticed yet, `detectMs`):
 *   round-robin evenly; random by a multinomial draw from the seeded Rng
 *   (exact for small counts, normal approximation for large ones, and within
 *   a large group of nodes in eight parts, see `routeRandom`);
 *   least-connections fills the emptiest nodes up to a common level (a dead,
 *   undetected node holds nothing, so it looks emptiest and swallows attempts
 *   first: the least-connections black hole, which the harness's own balancer
 *   in topology/network/balancer.ts shows too: a refused connect is not
 *   retried elsewhere); power-of-two gives the node of load rank r
 *   (0 = emptiest of m) the expected share of "sample two distinct nodes,
 *   take the lesser" (as that balancer does), 2(m-1-r)/(m(m-1)), with nodes
 *   within half a connection of each other sharing their group's average —
 *   no sampling noise. Loads are the balancer's view at the bucket's start.
 * - **Absorption.** A live node accepts at most `absorptionPerSec·dt` attempts
 *   per bucket; the rest fail and retry as the next attempt number. Below one
 *   connection per bucket this is a token bucket holding one connection, so a
 *   node absorbing 2/s still takes a whole device now and then when the random
 *   balancer hands it whole devices (a hard cap of 0.02 per 10 ms would not).
 * - **Attempt time** (`attemptMs`, default 0): an attempt is decided that long
 *   after its scheduled start (so the balancer's detection falls that much
 *   earlier on the attempts' clock) and a refused one is seen by the device as
 *   long again later, before its next delay starts. Successful attempts are
 *   still counted done at their decision bucket's end.
 * - **The herd's losses** happen at t=0, or with `lossAtMs` in equal shares at
 *   the given times (a live run's `noticed.tenths`: through a balancer a kill
 *   reaches the last of 1,000 devices ~0.1 s later), each share starting its
 *   first delay then.
 * - **Dead nodes stay dead**: no restarts, no autoscaling within the horizon;
 *   once no node is left (and none is still in rotation) the simulation stops,
 *   since nothing can connect any more.
 */
import { performance } from 'node:perf_hooks';
import { PushbenchError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { nextDelayMs } from '../loadgen/reconnect.js';
import {
  BALANCER_ALGORITHMS,
  type BalancerAlgorithmName,
  RECONNECT_POLICIES,
  type ReconnectPolicy,
} from '../scenarios/schema.js';

/** What to simulate: a fleet, the nodes that die at t=0, and how devices come back. */
export interface HerdInput {
  /** Nodes before the failure. */
  nodes: number;
  /** Devices connected before the failure, spread evenly over the nodes. */
  devices: number;
  /** Nodes that die at t=0 (1 = a node; k = a zone); their devices are the herd. */
  failedNodes: number;
  /** Connections a node holds within its SLO (from a capacity report). */
  capacity: number;
  /**
   * Connections past which a node falls over and its devices join the herd (a
   * cascade). Default `capacity`; `Infinity` disables cascades.
   */
  overloadAt?: number;
  /** New connections per second one node accepts; attempts beyond that fail and retry. */
  absorptionPerSec: number;
  /** How attempts are spread over the nodes in rotation. */
  balancer: BalancerAlgorithmName;
  /** The devices' reconnect policy. */
  reconnect: ReconnectPolicy;
  /** Time until the balancer takes a dead node out of rotation; attempts routed to it fail. Default 0. */
  detectMs?: number;
  /**
   * How long an attempt takes from its scheduled start to the balancer's
   * choice, and a refused one as long again to be seen by the device (so a
   * failed attempt takes twice this: what the fleet records as
   * `connect_failed`). Default 0: decided in the attempt's own bucket, the
   * failure seen one bucket later.
   */
  attemptMs?: number;
  /**
   * When the herd's devices see their connections lost, in ms after t=0: equal
   * shares of the herd, one per entry (a live run's `noticed.tenths`). Default:
   * all at t=0. A killed node's devices hear of it over tens of milliseconds
   * through a balancer, a blackholed one's only when a heartbeat gives up.
   */
  lossAtMs?: readonly number[];
  /** Bucket width. Default 10 ms. */
  dtMs?: number;
  /** Simulated time after which the simulation stops even if devices are still out. Default 600 s. */
  horizonMs?: number;
  /** Seed of the random balancer and the decorrelated-jitter sampling. Default 1. */
  seed?: number;
  /**
   * Connections each node holds before the failure, in node order, replacing
   * the even spread (`devices` must equal their sum). The first `failedNodes`
   * entries are the nodes that die. For unevenly loaded fleets (after a scale-up).
   */
  loadByNode?: readonly number[];
}

/** One second of a simulated herd. */
export interface HerdPoint {
  /** End of the one-second window, from the failure. */
  tMs: number;
  /** Connect attempts in the window, whole fleet. */
  attempts: number;
  /** Successful connects in the window. */
  connects: number;
  /** Failed attempts in the window (dead node, over absorption, no node at all). */
  failures: number;
  /** Connects since t=0, cumulative, at the end of the window. */
  reconnected: number;
  /** Live nodes at the end of the window. */
  liveNodes: number;
}

/** What a simulated herd did. Counts are expected values and may be fractional. */
export interface HerdResult {
  /** Connections lost: the failed nodes' devices plus those of nodes that cascaded. */
  herd: number;
  /** Times from t=0 until 50/99/100 % of the herd is connected again; null = not within the horizon. */
  reconnected: { t50Ms: number | null; t99Ms: number | null; t100Ms: number | null };
  /** Most connect attempts in one second, whole fleet. */
  peakAttemptsPerSec: number;
  /** Most successful connects on one node in one second. */
  peakConnectsPerSecPerNode: number;
  /** Attempts per lost connection (1 = every device got in on its first try). */
  attemptsPerDevice: number;
  /** Whether any node beyond the initial k fell over. */
  cascade: boolean;
  /** Nodes that fell over beyond the initial k. */
  failedNodes: number;
  /** Devices that used up `maxAttempts` and gave up. */
  gaveUp: number;
  /** Devices still not connected when the simulation ended (including those that gave up). */
  notBack: number;
  /** Simulated time covered: until everyone was back (or gave up), or the horizon. */
  simulatedMs: number;
  /** One point per second. */
  timeline: HerdPoint[];
  /** Wall time of the simulation itself. */
  elapsedMs: number;
}

/** `mass` (a fraction of 1) spread uniformly over [loMs, hiMs]; a point when they are equal. */
interface DelayPiece {
  loMs: number;
  hiMs: number;
  mass: number;
}

/** Attempt numbers of decorrelated jitter that are sampled; later ones reuse the last. */
const DECORRELATED_ATTEMPTS = 32;
const DECORRELATED_CHAINS = 4096;
const DECORRELATED_PIECES = 32;
/** Power-of-two treats nodes whose loads differ by at most this as tied. */
const P2C_TIE_CONNECTIONS = 0.5;
/** Arrivals below this in a bucket (rounding residue of the difference arrays) count as none. */
const DUST = 1e-9;

/** The exponential window min(cap, base·2^(n-1)) from `nextDelayMs` itself, so the formulas live in one place. */
function windowMs(policy: ReconnectPolicy, attempt: number, rng: Rng): number {
  return nextDelayMs({ ...policy, policy: 'exponential' }, attempt, policy.baseMs, rng);
}

/** The first attempt number from which a policy's delay distribution stops changing. */
function saturationAttempt(policy: ReconnectPolicy, rng: Rng): number {
  switch (policy.policy) {
    case 'immediate':
    case 'fixed':
      return 1;
    case 'decorrelated-jitter':
      return DECORRELATED_ATTEMPTS;
    case 'exponential':
    case 'full-jitter':
    case 'equal-jitter':
    case 'server-hint': {
      let n = 1;
      while (n < 64 && windowMs(policy, n + 1, rng) > windowMs(policy, n, rng)) n++;
      return n;
    }
  }
}

/**
 * The delay distribution before each attempt number 1..`attempts`, as uniform
 * pieces. Decorrelated jitter is sampled by running `nextDelayMs` chains.
 */
function delayPieces(policy: ReconnectPolicy, attempts: number, rng: Rng): DelayPiece[][] {
  const out: DelayPiece[][] = [];
  if (policy.policy === 'decorrelated-jitter') {
    const prev = new Float64Array(DECORRELATED_CHAINS).fill(policy.baseMs);
    const sorted = new Float64Array(DECORRELATED_CHAINS);
    for (let n = 1; n <= attempts; n++) {
      for (let s = 0; s < DECORRELATED_CHAINS; s++) {
        const d = nextDelayMs(policy, n, prev[s]!, rng);
        prev[s] = d;
        sorted[s] = d;
      }
      sorted.sort();
      const pieces: DelayPiece[] = [];
      const per = DECORRELATED_CHAINS / DECORRELATED_PIECES;
      for (let j = 0; j < DECORRELATED_PIECES; j++) {
        const lo = sorted[j * per]!;
        const hi = sorted[Math.min(DECORRELATED_CHAINS - 1, (j + 1) * per)]!;
        pieces.push({ loMs: lo, hiMs: hi, mass: 1 / DECORRELATED_PIECES });
      }
      out.push(pieces);
    }
    return out;
  }
  for (let n = 1; n <= attempts; n++) {
    const w = windowMs(policy, n, rng);
    switch (policy.policy) {
      case 'immediate':
      case 'fixed':
      case 'exponential': {
        // Deterministic policies: the delay itself, from the shared formula.
        const v = nextDelayMs(policy, n, policy.baseMs, rng);
        out.push([{ loMs: v, hiMs: v, mass: 1 }]);
        break;
      }
      case 'full-jitter':
      case 'server-hint':
        out.push([{ loMs: 0, hiMs: w, mass: 1 }]);
        break;
      case 'equal-jitter':
        out.push([{ loMs: w / 2, hiMs: w, mass: 1 }]);
        break;
    }
  }
  return out;
}

/**
 * Future attempts per attempt number, on a ring of buckets: point masses plus a
 * difference array of per-bucket amounts, so a uniform spread over thousands of
 * buckets costs O(1) to schedule and O(1) per bucket to read.
 */
class Calendar {
  private readonly direct: Float64Array;
  private readonly slope: Float64Array;
  private readonly rate: Float64Array;
  /** +1 where a uniform range starts, -1 where it ends; with `open`, lets a rate return to exactly 0. */
  private readonly edges: Int32Array;
  private readonly open: Int32Array;
  /** Devices scheduled and not yet arrived. */
  pending = 0;

  constructor(
    classes: number,
    private readonly ring: number,
  ) {
    this.direct = new Float64Array(classes * ring);
    this.slope = new Float64Array(classes * ring);
    this.rate = new Float64Array(classes);
    this.edges = new Int32Array(classes * ring);
    this.open = new Int32Array(classes);
  }

  /**
   * Schedules `count` devices of class `cls` whose delays follow `pieces`,
   * measured from the start of bucket `from`; nothing lands before bucket
   * `from + minOffset`.
   */
  schedule(
    cls: number,
    from: number,
    minOffset: number,
    count: number,
    pieces: DelayPiece[],
    dtMs: number,
  ): void {
    this.pending += count;
    const floor = from + minOffset;
    for (const piece of pieces) {
      const m = count * piece.mass;
      const lo = from + piece.loMs / dtMs;
      const hi = from + piece.hiMs / dtMs;
      if (hi <= floor) {
        this.point(cls, floor, m);
      } else if (lo < floor) {
        const early = (floor - lo) / (hi - lo);
        this.point(cls, floor, m * early);
        this.uniform(cls, floor, hi, m * (1 - early));
      } else {
        this.uniform(cls, lo, hi, m);
      }
    }
  }

  /** Devices of class `cls` arriving in bucket `b`; clears the slot. Buckets must be read in order. */
  take(cls: number, b: number): number {
    const i = cls * this.ring + (b % this.ring);
    // Rounding leaves a residue when ranges close; once no range is open the
    // rate is exactly 0 again (a magnitude threshold would eat real small rates).
    const open = this.open[cls]! + this.edges[i]!;
    const rate = open === 0 ? 0 : this.rate[cls]! + this.slope[i]!;
    this.open[cls] = open;
    this.rate[cls] = rate;
    this.slope[i] = 0;
    this.edges[i] = 0;
    const n = this.direct[i]! + rate;
    this.direct[i] = 0;
    if (n < DUST) return 0;
    this.pending -= n;
    return n;
  }

  private point(cls: number, at: number, count: number): void {
    const i = cls * this.ring + (Math.floor(at) % this.ring);
    this.direct[i] = this.direct[i]! + count;
  }

  /** `count` spread uniformly over the continuous bucket range [x0, x1). */
  private uniform(cls: number, x0: number, x1: number, count: number): void {
    const k0 = Math.floor(x0);
    const k1 = Math.floor(x1);
    if (x1 - x0 < 1e-9 || k0 === k1) {
      this.point(cls, k0, count);
      return;
    }
    const density = count / (x1 - x0);
    this.point(cls, k0, density * (k0 + 1 - x0));
    if (k1 > k0 + 1) {
      const base = cls * this.ring;
      const a = base + ((k0 + 1) % this.ring);
      const z = base + (k1 % this.ring);
      this.slope[a] = this.slope[a]! + density;
      this.slope[z] = this.slope[z]! - density;
      this.edges[a] = this.edges[a]! + 1;
      this.edges[z] = this.edges[z]! - 1;
    }
    if (x1 > k1) this.point(cls, k1, density * (x1 - k1));
  }
}

/** A standard normal draw (Box-Muller). */
function normal(rng: Rng): number {
  const u = 1 - rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** A Binomial(n, p) draw: exact by inversion for small means, normal approximation above. */
function binomial(n: number, p: number, rng: Rng): number {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  const mean = n * p;
  if (mean < 30) {
    const q = 1 - p;
    const s = p / q;
    const a = (n + 1) * s;
    let r = q ** n;
    let u = rng.next();
    let x = 0;
    while (u > r && x < n) {
      u -= r;
      x++;
      r *= a / x - s;
    }
    return x;
  }
  const x = Math.round(mean + Math.sqrt(mean * (1 - p)) * normal(rng));
  return Math.min(n, Math.max(0, x));
}

function validate(input: HerdInput): string[] {
  const problems: string[] = [];
  const positiveInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) problems.push(`${name} must be an integer >= 1, got ${v}`);
  };
  positiveInt('nodes', input.nodes);
  positiveInt('failedNodes', input.failedNodes);
  if (Number.isInteger(input.failedNodes) && input.failedNodes > input.nodes) {
    problems.push(`failedNodes (${input.failedNodes}) must not exceed nodes (${input.nodes})`);
  }
  if (!(Number.isFinite(input.devices) && input.devices > 0)) {
    problems.push(`devices must be a number > 0, got ${input.devices}`);
  }
  if (!(Number.isFinite(input.capacity) && input.capacity > 0)) {
    problems.push(`capacity must be a number > 0, got ${input.capacity}`);
  }
  if (input.overloadAt !== undefined && !(input.overloadAt > 0)) {
    problems.push(`overloadAt must be > 0 (Infinity disables cascades), got ${input.overloadAt}`);
  }
  if (!(Number.isFinite(input.absorptionPerSec) && input.absorptionPerSec > 0)) {
    problems.push(`absorptionPerSec must be a number > 0, got ${input.absorptionPerSec}`);
  }
  if (!(BALANCER_ALGORITHMS as readonly string[]).includes(input.balancer)) {
    problems.push(
      `balancer must be one of ${BALANCER_ALGORITHMS.join(', ')}, got ${JSON.stringify(input.balancer)}`,
    );
  }
  const r = input.reconnect;
  if (!(RECONNECT_POLICIES as readonly string[]).includes(r.policy)) {
    problems.push(
      `reconnect.policy must be one of ${RECONNECT_POLICIES.join(', ')}, got ${JSON.stringify(r.policy)}`,
    );
  }
  if (!(Number.isFinite(r.baseMs) && r.baseMs >= 0)) {
    problems.push(`reconnect.baseMs must be >= 0, got ${r.baseMs}`);
  }
  if (!(Number.isFinite(r.capMs) && r.capMs >= r.baseMs)) {
    problems.push(`reconnect.capMs must be finite and >= baseMs (${r.baseMs}), got ${r.capMs}`);
  }
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 0) {
    problems.push(`reconnect.maxAttempts must be an integer >= 0, got ${r.maxAttempts}`);
  }
  const dtMs = input.dtMs ?? 10;
  if (!(dtMs > 0 && dtMs <= 1000)) problems.push(`dtMs must be in (0, 1000], got ${dtMs}`);
  const horizonMs = input.horizonMs ?? 600_000;
  if (!(Number.isFinite(horizonMs) && horizonMs > 0)) {
    problems.push(`horizonMs must be a finite number > 0, got ${horizonMs}`);
  } else if (dtMs > 0 && horizonMs / dtMs > 10_000_000) {
    problems.push(`horizonMs / dtMs is ${horizonMs / dtMs} buckets; keep it under 10,000,000`);
  }
  if (input.detectMs !== undefined && !(Number.isFinite(input.detectMs) && input.detectMs >= 0)) {
    problems.push(`detectMs must be a finite number >= 0, got ${input.detectMs}`);
  }
  if (
    input.attemptMs !== undefined &&
    !(Number.isFinite(input.attemptMs) && input.attemptMs >= 0 && input.attemptMs <= 60_000)
  ) {
    problems.push(`attemptMs must be a finite number in [0, 60000], got ${input.attemptMs}`);
  }
  if (
    input.lossAtMs !== undefined &&
    !(
      input.lossAtMs.length > 0 &&
      input.lossAtMs.every((v) => Number.isFinite(v) && v >= 0 && v <= horizonMs)
    )
  ) {
    problems.push(`lossAtMs must be one or more finite numbers in [0, horizonMs ${horizonMs}]`);
  }
  if (input.loadByNode !== undefined) {
    const loads = input.loadByNode;
    if (loads.length !== input.nodes) {
      problems.push(`loadByNode has ${loads.length} entries for ${input.nodes} nodes`);
    } else if (!loads.every((v) => Number.isFinite(v) && v >= 0)) {
      problems.push('loadByNode entries must be finite numbers >= 0');
    } else {
      const sum = loads.reduce((a, b) => a + b, 0);
      if (Math.abs(sum - input.devices) > 0.5) {
        problems.push(`loadByNode sums to ${sum} but devices is ${input.devices}`);
      }
    }
  }
  return problems;
}

/**
 * Nodes that are in the same state, simulated as one: `count` nodes, each
 * holding `conn` connections with `tokens` of absorption left as of bucket
 * `refilledAt`. Nodes of a group get the same attempts, so they stay alike
 * until a balancer must treat them differently (random's noise), when the group
 * is split; groups that become alike again are merged.
 */
interface NodeGroup {
  count: number;
  /** Connections held per node. */
  conn: number;
  /** Absorption tokens per node, refilled lazily from `refilledAt`. */
  tokens: number;
  refilledAt: number;
  /** Connects per node in the current one-second window (for the per-node peak). */
  secConnects: number;
  /** Attempts routed to each node of the group in the current bucket; 0 between buckets. */
  att: number;
  /** Sort and merge key: `conn`, `secConnects` and `tokens` on the merge grid (set by `regroup`). */
  keyConn: number;
  keySec: number;
  keyTokens: number;
}

/**
 * Groups whose connections, tokens and window connects agree to this grid are
 * merged: it only absorbs floating-point rounding (water-filling two groups to
 * one level leaves them a few ulps apart), far below a device.
 */
const MERGE_GRID = 1e6;
/** Random: a group of more nodes than this splits by the normal approximation rather than exactly. */
const EXACT_SPLIT_NODES = 64;
/** Random: fleets of at most this many survivors are simulated node by node. */
const RANDOM_PER_NODE_NODES = 4096;
/** Random: past this many groups, the closest in load are merged (see `coalesce`). */
const MAX_RANDOM_GROUPS = 4096;
/**
 * E[Z | Z in the j-th eighth of the standard normal]: the per-node values of a
 * group split in eight equal parts by the normal approximation.
 */
const OCTILE_MEANS = [
  -1.646828, -0.895384, -0.491349, -0.157976, 0.157976, 0.491349, 0.895384, 1.646828,
] as const;

function copyGroup(g: NodeGroup, count: number, att: number): NodeGroup {
  return {
    count,
    conn: g.conn,
    tokens: g.tokens,
    refilledAt: g.refilledAt,
    secConnects: g.secConnects,
    att,
    keyConn: 0,
    keySec: 0,
    keyTokens: 0,
  };
}

/** Orders groups by load, then window connects, then tokens, all on the merge grid. */
function compareGroups(a: NodeGroup, b: NodeGroup): number {
  return a.keyConn - b.keyConn || a.keySec - b.keySec || a.keyTokens - b.keyTokens;
}

/** Folds `b` into `a`: a count-weighted average (exact when the two agree). */
function absorbGroup(a: NodeGroup, b: NodeGroup): void {
  const w = b.count / (a.count + b.count);
  if (a.conn !== b.conn) a.conn += (b.conn - a.conn) * w;
  if (a.tokens !== b.tokens) a.tokens += (b.tokens - a.tokens) * w;
  if (a.secConnects !== b.secConnects) a.secConnects += (b.secConnects - a.secConnects) * w;
  a.count += b.count;
}

/**
 * Simulates the reconnect herd after `failedNodes` nodes die at t=0 and returns
 * its reconnect times, peaks, amplification and whether it cascaded. Pure given
 * the input (the seed fixes every random draw) apart from `elapsedMs`. Throws
 * `PB_USAGE` listing every invalid field.
 */
export function simulateHerd(input: HerdInput): HerdResult {
  const problems = validate(input);
  if (problems.length > 0) {
    const head =
      problems.length === 1 ? problems[0] : `${problems.length} problems: ${problems.join('; ')}`;
    throw new PushbenchError('PB_USAGE', `herd simulation: ${head}`, problems);
  }
  const started = performance.now();
  const N = input.nodes;
  const k = input.failedNodes;
  const dtMs = input.dtMs ?? 10;
  const horizonMs = input.horizonMs ?? 600_000;
  const detectMs = input.detectMs ?? 0;
  // Attempts are counted at their scheduled start and decided attemptMs later, so
  // the balancer's detection falls attemptMs earlier on the attempts' clock.
  const attemptMs = input.attemptMs ?? 0;
  const detectSeenMs = detectMs - attemptMs;
  /** Buckets from a refused attempt's start to the device seeing the failure. */
  const failBuckets = Math.round((2 * attemptMs) / dtMs);
  const overloadAt = input.overloadAt ?? input.capacity;
  const overloadLimit = overloadAt * (1 + 1e-12) + 1e-9;
  const perBucket = (input.absorptionPerSec * dtMs) / 1000;
  const burst = Math.max(perBucket, 1);
  const policy = input.reconnect;
  const balancer = input.balancer;
  const rng = new Rng(input.seed ?? 1);
  const pickRng = rng.fork(1);

  // Survivors, grouped by equal load; failed nodes only add their devices to the herd.
  const loadOf = (i: number): number => input.loadByNode?.[i] ?? input.devices / N;
  let herd = 0;
  for (let i = 0; i < k; i++) herd += loadOf(i);
  const byLoad = new Map<number, number>();
  for (let i = k; i < N; i++) {
    const load = loadOf(i);
    if (load > overloadLimit) {
      throw new PushbenchError(
        'PB_USAGE',
        `herd simulation: node ${i} already holds ${load} connections, over overloadAt ${overloadAt}; plan more nodes or raise overloadAt`,
      );
    }
    byLoad.set(load, (byLoad.get(load) ?? 0) + 1);
  }
  const group = (conn: number, count: number): NodeGroup => ({
    count,
    conn,
    tokens: burst,
    refilledAt: 0,
    secConnects: 0,
    att: 0,
    keyConn: 0,
    keySec: 0,
    keyTokens: 0,
  });
  // Random on a small fleet keeps one group per node in node order, never
  // merged: exactly the per-node simulation (same draws, same results), at
  // about its cost. Bigger fleets group nodes, which random's draws treat alike.
  const perNode = balancer === 'random' && N - k <= RANDOM_PER_NODE_NODES;
  let groups: NodeGroup[] = perNode
    ? Array.from({ length: N - k }, (_, i) => group(loadOf(k + i), 1))
    : [...byLoad].sort((a, b) => a[0] - b[0]).map(([conn, count]) => group(conn, count));
  let liveCount = N - k;
  const sorted = balancer === 'least-connections' || balancer === 'power-of-two';
  let regroupAbove = 2 * groups.length + 64;
  const randomScratch = new RandomScratch(balancer === 'random' ? N - k : 0);

  // Delay distributions per class (class c = attempt number c+1).
  const nSat = saturationAttempt(policy, rng);
  const classes = policy.maxAttempts > 0 ? policy.maxAttempts : nSat;
  const pieceTable = delayPieces(policy, Math.min(nSat, classes), rng.fork(2));
  const piecesOf = (cls: number): DelayPiece[] => pieceTable[Math.min(cls, pieceTable.length - 1)]!;
  let maxDelayMs = 0;
  for (const pieces of pieceTable)
    for (const p of pieces) maxDelayMs = Math.max(maxDelayMs, p.hiMs);
  const lossAtMs = input.lossAtMs ?? [0];
  const lastLossBuckets = Math.floor(Math.max(...lossAtMs) / dtMs);
  const ring = Math.ceil(maxDelayMs / dtMs) + failBuckets + lastLossBuckets + 3;
  if (classes * ring > 25_000_000) {
    throw new PushbenchError(
      'PB_USAGE',
      `herd simulation: ${classes} attempt classes x ${ring} buckets of delay is too much state; lower maxAttempts or raise dtMs`,
    );
  }
  const calendar = new Calendar(classes, ring);

  // Dead nodes still in rotation: a count, and when the balancer notices how many, in time order.
  const detectAtMs: number[] = [];
  const detectCount: number[] = [];
  let undetected = 0;
  if (detectMs > 0) {
    detectAtMs.push(detectSeenMs);
    detectCount.push(k);
    undetected = k;
  }
  let detectHead = 0;
  // The herd loses its connections at t=0, or in equal shares when it heard of the failure.
  for (const atMs of lossAtMs) {
    calendar.schedule(0, Math.floor(atMs / dtMs), 0, herd / lossAtMs.length, piecesOf(0), dtMs);
  }

  const buckets = Math.ceil(horizonMs / dtMs);
  const cumConnects = new Float64Array(buckets);
  const arrivals = new Float64Array(classes);
  const timeline: HerdPoint[] = [];

  let totalAttempts = 0;
  let totalConnects = 0;
  let gaveUp = 0;
  let cascaded = 0;
  let peakAttempts = 0;
  let peakNodeConnects = 0;
  /** Most connects per node this second among nodes that have since fallen over. */
  let deadSecConnects = 0;
  let sec = 0;
  let secAttempts = 0;
  let secConnectsAll = 0;
  let secFailures = 0;
  let lastBucket = -1;
  let lastActive = 0;

  const flushSecond = () => {
    let maxNode = deadSecConnects;
    for (const g of groups) {
      if (g.secConnects > maxNode) maxNode = g.secConnects;
      g.secConnects = 0;
    }
    deadSecConnects = 0;
    peakNodeConnects = Math.max(peakNodeConnects, maxNode);
    peakAttempts = Math.max(peakAttempts, secAttempts);
    timeline.push({
      tMs: (sec + 1) * 1000,
      attempts: Math.round(secAttempts),
      connects: Math.round(secConnectsAll),
      failures: Math.round(secFailures),
      reconnected: Math.round(totalConnects),
      liveNodes: liveCount,
    });
    secAttempts = 0;
    secConnectsAll = 0;
    secFailures = 0;
  };

  for (let b = 0; b < buckets; b++) {
    const tMs = b * dtMs;
    const s = Math.floor(tMs / 1000);
    if (s !== sec) {
      flushSecond();
      sec = s;
      // A new window zeroes every group's window connects: the best moment to merge.
      if (!perNode) {
        groups = regroup(groups, b, perBucket, burst);
        regroupAbove = 2 * groups.length + 64;
      }
    }
    while (detectHead < detectAtMs.length && detectAtMs[detectHead]! <= tMs) {
      undetected -= detectCount[detectHead]!;
      detectHead++;
    }
    let total = 0;
    for (let c = 0; c < classes; c++) {
      const n = calendar.take(c, b);
      arrivals[c] = n;
      total += n;
    }
    lastBucket = b;
    if (total > 0) {
      lastActive = b;
      const m = liveCount + undetected;
      if (m > 0) {
        switch (balancer) {
          case 'round-robin': {
            const share = total / m;
            for (const g of groups) g.att = share;
            break;
          }
          case 'random':
            routeRandom(total, undetected, liveCount, groups, pickRng, randomScratch, perNode);
            break;
          case 'least-connections':
            routeLeastConnections(total, undetected, groups);
            break;
          case 'power-of-two':
            routePowerOfTwo(total, undetected, liveCount, groups);
            break;
        }
      }
      let accepted = 0;
      let dying = 0;
      for (const g of groups) {
        const a = g.att;
        if (a === 0) continue;
        g.att = 0;
        const refill = g.tokens + (b - g.refilledAt) * perBucket;
        const room = Math.min(refill, burst);
        const got = Math.min(a, room);
        g.tokens = room - got;
        g.refilledAt = b;
        g.conn += got;
        g.secConnects += got;
        accepted += got * g.count;
        if (g.conn > overloadLimit) dying++;
      }
      const failed = Math.max(0, total - accepted);
      totalAttempts += total;
      totalConnects += accepted;
      secAttempts += total;
      secConnectsAll += accepted;
      secFailures += failed;
      if (failed > 0) {
        const failShare = failed / total;
        for (let c = 0; c < classes; c++) {
          const f = arrivals[c]! * failShare;
          if (f === 0) continue;
          if (policy.maxAttempts > 0 && c === classes - 1) gaveUp += f;
          else {
            const next = Math.min(c + 1, classes - 1);
            // The device sees the failure failBuckets on, then waits its policy's delay.
            calendar.schedule(
              next,
              b + failBuckets,
              failBuckets > 0 ? 0 : 1,
              f,
              piecesOf(next),
              dtMs,
            );
          }
        }
      }
      if (dying > 0) {
        // Cascade: these nodes fall over now; their devices start over at attempt 1.
        const kept: NodeGroup[] = [];
        let fell = 0;
        for (const g of groups) {
          if (g.conn <= overloadLimit) {
            kept.push(g);
            continue;
          }
          const lost = g.conn * g.count;
          herd += lost;
          fell += g.count;
          deadSecConnects = Math.max(deadSecConnects, g.secConnects);
          // Their devices lose the connection when the node falls, attemptMs on.
          const fallBuckets = Math.round(attemptMs / dtMs);
          calendar.schedule(0, b + fallBuckets, fallBuckets > 0 ? 0 : 1, lost, piecesOf(0), dtMs);
        }
        groups = kept;
        liveCount -= fell;
        cascaded += fell;
        if (detectMs > 0) {
          // These nodes fall when this bucket's attempts are decided (attemptMs on) and
          // the balancer drops them detectMs after that: attempts starting from
          // tMs + detectMs on are decided after it.
          detectAtMs.push(tMs + detectMs);
          detectCount.push(fell);
          undetected += fell;
        }
      }
      // Least-connections and power-of-two need load order every bucket; the
      // others only need alike groups merged now and then (random splits
      // groups every bucket; merging each time would cost more than it saves).
      if (sorted || (!perNode && groups.length > regroupAbove)) {
        groups = regroup(groups, b + 1, perBucket, burst);
        if (balancer === 'random' && groups.length > MAX_RANDOM_GROUPS) groups = coalesce(groups);
        regroupAbove = 2 * groups.length + 64;
      }
    }
    cumConnects[b] = totalConnects;
    // Done when (almost) nobody is still scheduled, or when nothing has
    // happened for longer than the longest delay (only rounding residue is left).
    if (calendar.pending < 1e-3 || b - lastActive > ring) break;
    // No node left, none even in rotation: nothing can connect any more, so
    // stop rather than count retries against an empty fleet until the horizon.
    if (liveCount === 0 && undetected === 0) break;
  }
  flushSecond();

  const simulatedMs = (lastBucket + 1) * dtMs;
  const timeTo = (target: number): number | null => {
    for (let b = 0; b <= lastBucket; b++) if (cumConnects[b]! >= target) return (b + 1) * dtMs;
    return null;
  };
  const slack = herd * 1e-9;
  return {
    herd,
    reconnected: {
      t50Ms: timeTo(0.5 * herd - slack),
      t99Ms: timeTo(0.99 * herd - slack),
      t100Ms: timeTo(Math.max(0.99 * herd - slack, herd - 0.5)),
    },
    peakAttemptsPerSec: peakAttempts,
    peakConnectsPerSecPerNode: peakNodeConnects,
    attemptsPerDevice: herd > 0 ? totalAttempts / herd : 0,
    cascade: cascaded > 0,
    failedNodes: cascaded,
    gaveUp,
    notBack: Math.max(0, herd - totalConnects),
    simulatedMs,
    timeline,
    elapsedMs: performance.now() - started,
  };
}

/**
 * Brings every group's tokens up to bucket `at` (the same lazy refill, so the
 * figures do not change), restores load order and merges groups that became
 * alike. A bucket changes the order little, and the built-in sort (a merge of
 * runs) is linear on nearly sorted input.
 */
function regroup(groups: NodeGroup[], at: number, perBucket: number, burst: number): NodeGroup[] {
  for (const g of groups) {
    if (g.refilledAt < at) {
      g.tokens = Math.min(g.tokens + (at - g.refilledAt) * perBucket, burst);
      g.refilledAt = at;
    }
    g.keyConn = Math.round(g.conn * MERGE_GRID);
    g.keySec = Math.round(g.secConnects * MERGE_GRID);
    g.keyTokens = Math.round(g.tokens * MERGE_GRID);
  }
  groups.sort(compareGroups);
  let w = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    const prev = w > 0 ? groups[w - 1]! : undefined;
    if (prev && compareGroups(prev, g) === 0) absorbGroup(prev, g);
    else groups[w++] = g;
  }
  groups.length = w;
  return groups;
}

/**
 * Random under heavy load on a large fleet: merges neighbours in load order
 * whose loads differ by less than a tolerance (half a connection, doubled until
 * at most half of `MAX_RANDOM_GROUPS` groups remain). Loads and tokens are
 * averaged; window connects keep the larger, so the per-node peak errs high.
 */
function coalesce(groups: NodeGroup[]): NodeGroup[] {
  let tolerance = P2C_TIE_CONNECTIONS;
  let out = groups;
  while (out.length > MAX_RANDOM_GROUPS / 2) {
    const merged: NodeGroup[] = [];
    for (const g of out) {
      const prev = merged.at(-1);
      if (prev && g.conn - prev.conn <= tolerance) {
        const peak = Math.max(prev.secConnects, g.secConnects);
        absorbGroup(prev, g);
        prev.secConnects = peak;
      } else merged.push(g);
    }
    out = merged;
    tolerance *= 2;
  }
  return out;
}

/** The random balancer's scratch space, reused across buckets. */
class RandomScratch {
  /** Whole attempts drawn per live position in this bucket; all 0 between buckets. */
  readonly hitsAt: Int32Array;
  /** Positions with hits, in draw order. */
  touched = new Int32Array(256);
  /** First live position of each group, and the live count at the end. */
  starts = new Float64Array(256);
  /** Whole attempts drawn per group (singletons) or per node of it (split later). */
  byGroup = new Float64Array(256);

  constructor(liveNodes: number) {
    this.hitsAt = new Int32Array(liveNodes);
  }

  /** Makes the per-group arrays hold `groups` groups. */
  fit(groups: number): void {
    if (this.starts.length > groups) return;
    const size = 2 * groups + 1;
    this.starts = new Float64Array(size);
    this.byGroup = new Float64Array(size);
  }
}

/**
 * Random: a multinomial draw of the bucket's whole attempts over the m nodes in
 * rotation; the fractional remainder of the fluid count is spread evenly. A
 * group whose nodes draw different counts splits into one group per count (the
 * new groups are appended to `groups`).
 *
 * - Few attempts (at most 4 per node): one uniform draw per attempt, exact.
 * - Many: sequential binomials over the dead nodes and then each group (exact
 *   in distribution), and within a group of more than `EXACT_SPLIT_NODES`
 *   nodes the normal approximation: the group splits into eight equal parts,
 *   each taking the mean of its eighth of N(μ, μ(1-1/n)), μ = attempts per
 *   node. Means and spread are kept; the extreme tail is not drawn (a node's
 *   share beyond its eighth's mean), so the per-node peak there is a little low
 *   in that regime (hundreds of thousands of attempts per 10 ms on big fleets).
 */
function routeRandom(
  total: number,
  dead: number,
  liveCount: number,
  groups: NodeGroup[],
  rng: Rng,
  scratch: RandomScratch,
  perNode: boolean,
): void {
  const m = dead + liveCount;
  const whole = Math.floor(total);
  const even = (total - whole) / m;
  const G = groups.length;
  if (whole <= 4 * m) {
    // Draw positions (dead nodes first, then each group's nodes in order) and
    // count the attempts each node drew.
    const { hitsAt } = scratch;
    if (scratch.touched.length < whole) scratch.touched = new Int32Array(2 * whole);
    const { touched } = scratch;
    let t = 0;
    for (let i = 0; i < whole; i++) {
      const r = rng.int(m);
      if (r < dead) continue;
      const p = r - dead;
      const before = hitsAt[p]!;
      hitsAt[p] = before + 1;
      if (before === 0) touched[t++] = p;
    }
    if (G === liveCount) {
      // One node per group (a small or fully diverged fleet): positions are groups.
      for (let i = 0; i < G; i++) groups[i]!.att = even;
      for (let j = 0; j < t; j++) {
        const p = touched[j]!;
        groups[p]!.att = even + hitsAt[p]!;
        hitsAt[p] = 0;
      }
      return;
    }
    scratch.fit(G);
    const { starts, byGroup } = scratch;
    let start = 0;
    for (let i = 0; i < G; i++) {
      starts[i] = start;
      byGroup[i] = 0;
      start += groups[i]!.count;
    }
    starts[G] = start;
    // Hit nodes of groups bigger than one, by group: how many drew c attempts.
    let split: Map<number, number[]> | undefined;
    for (let j = 0; j < t; j++) {
      const p = touched[j]!;
      const c = hitsAt[p]!;
      hitsAt[p] = 0;
      let lo = 0;
      let hi = G - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid]! <= p) lo = mid;
        else hi = mid - 1;
      }
      if (groups[lo]!.count === 1) byGroup[lo] = c;
      else {
        split ??= new Map();
        const nodesWith = split.get(lo) ?? [];
        nodesWith[c] = (nodesWith[c] ?? 0) + 1;
        split.set(lo, nodesWith);
      }
    }
    for (let i = 0; i < G; i++) {
      const g = groups[i]!;
      const nodesWith = split?.get(i);
      if (nodesWith) splitByCounts(g, nodesWith, even, groups);
      else g.att = even + byGroup[i]!;
    }
    return;
  }
  let left = whole;
  let remaining = m;
  // One draw per dead node in per-node mode (the per-node simulation's draws), else one for all.
  for (let d = perNode ? dead : Math.min(dead, 1); d > 0; d--) {
    const share = perNode ? 1 : dead;
    const x = remaining === share ? left : binomial(left, share / remaining, rng);
    left -= x;
    remaining -= share;
  }
  for (let i = 0; i < G; i++) {
    const g = groups[i]!;
    const x = remaining === g.count ? left : binomial(left, g.count / remaining, rng);
    left -= x;
    remaining -= g.count;
    splitGroup(g, x, even, rng, groups);
  }
}

/**
 * Splits `g`: `nodesWith[c]` of its nodes drew c whole attempts and move to new
 * groups appended to `out`; the rest drew none and stay in `g`.
 */
function splitByCounts(g: NodeGroup, nodesWith: number[], even: number, out: NodeGroup[]): void {
  let hitNodes = 0;
  for (let c = 1; c < nodesWith.length; c++) {
    const n = nodesWith[c];
    if (n === undefined) continue;
    hitNodes += n;
    if (hitNodes === g.count) {
      // Every node drew something: `g` itself takes the last count.
      g.count = n;
      g.att = even + c;
      return;
    }
    out.push(copyGroup(g, n, even + c));
  }
  g.count -= hitNodes;
  g.att = even;
}

/** Spreads `x` whole attempts uniformly at random over the nodes of `g`; split-off groups are appended to `out`. */
function splitGroup(g: NodeGroup, x: number, even: number, rng: Rng, out: NodeGroup[]): void {
  const n = g.count;
  if (n === 1 || x === 0) {
    g.att = even + x;
  } else if (x <= 4 * n) {
    const picks = new Float64Array(x);
    for (let i = 0; i < x; i++) picks[i] = rng.int(n);
    picks.sort();
    const nodesWith: number[] = [];
    for (let i = 0; i < x; ) {
      let j = i + 1;
      while (j < x && picks[j] === picks[i]) j++;
      nodesWith[j - i] = (nodesWith[j - i] ?? 0) + 1;
      i = j;
    }
    splitByCounts(g, nodesWith, even, out);
  } else if (n <= EXACT_SPLIT_NODES) {
    let left = x;
    for (let i = 0; i < n - 1; i++) {
      const y = binomial(left, 1 / (n - i), rng);
      left -= y;
      out.push(copyGroup(g, 1, even + y));
    }
    g.count = 1;
    g.att = even + left;
  } else {
    const mean = x / n;
    const sd = Math.sqrt(mean * (1 - 1 / n));
    const parts = OCTILE_MEANS.length;
    // Equal parts up to rounding; re-centre so the parts still sum to x.
    const sizes = OCTILE_MEANS.map(
      (_, j) => Math.round(((j + 1) * n) / parts) - Math.round((j * n) / parts),
    );
    let offset = 0;
    for (let j = 0; j < parts; j++) offset += sizes[j]! * OCTILE_MEANS[j]!;
    offset /= n;
    for (let j = 1; j < parts; j++) {
      const size = sizes[j]!;
      if (size > 0) out.push(copyGroup(g, size, even + mean + sd * (OCTILE_MEANS[j]! - offset)));
    }
    g.count = sizes[0]!;
    g.att = even + mean + sd * (OCTILE_MEANS[0]! - offset);
  }
}

/**
 * Least-connections: water-fills the bucket's attempts into the emptiest nodes
 * (dead undetected ones hold 0) up to a common level; every node of a group
 * sits at the same load, so groups never split. `groups` is in load order.
 */
function routeLeastConnections(total: number, dead: number, groups: NodeGroup[]): void {
  // Loads are taken relative to the emptiest node: a bucket's few attempts
  // against 1e8 connections would otherwise vanish in rounding.
  const floor = dead > 0 ? 0 : groups[0]!.conn;
  let filledNodes = dead;
  let sum = 0;
  let next = 0; // groups filled so far
  if (dead === 0) {
    filledNodes = groups[0]!.count;
    next = 1;
  }
  let level = 0;
  for (;;) {
    const g = groups[next];
    const excess = g ? g.conn - floor : Number.POSITIVE_INFINITY;
    if (filledNodes * excess - sum >= total || !g) {
      level = (total + sum) / filledNodes;
      break;
    }
    filledNodes += g.count;
    sum += g.count * excess;
    next++;
  }
  for (let i = 0; i < next; i++) {
    const g = groups[i]!;
    g.att = Math.max(0, level - (g.conn - floor));
  }
}

/**
 * Power-of-two choices in aggregate: the node of load rank r among m gets the
 * expected share 2(m-1-r)/(m(m-1)) of the bucket's attempts (two distinct
 * nodes sampled, the lesser taken); a run of tied nodes (within half a
 * connection of the run's first) shares its ranks' average. Dead nodes in
 * rotation rank first (they hold 0). `groups` is in load order.
 */
function routePowerOfTwo(
  total: number,
  dead: number,
  liveCount: number,
  groups: NodeGroup[],
): void {
  const m = dead + liveCount;
  if (m === 1) {
    if (liveCount === 1) groups[0]!.att = total;
    return;
  }
  const pairs = m * (m - 1);
  // Segments in rank order: the dead (load 0) as one, then each group.
  const segments = groups.length + (dead > 0 ? 1 : 0);
  const countOf = (i: number): number =>
    dead > 0 ? (i === 0 ? dead : groups[i - 1]!.count) : groups[i]!.count;
  const loadOf = (i: number): number =>
    dead > 0 ? (i === 0 ? 0 : groups[i - 1]!.conn) : groups[i]!.conn;
  let seg = 0;
  let a = 0; // rank of the run's first node
  while (seg < segments) {
    const first = loadOf(seg);
    let end = seg;
    let z = a;
    while (end < segments && loadOf(end) - first <= P2C_TIE_CONNECTIONS) z += countOf(end++);
    // Sum over ranks r in [a, z) of 2(m-1-r) = (z-a)(2m-1-a-z); per node (2m-1-a-z).
    const perNode = (total * (2 * m - 1 - a - z)) / pairs;
    for (let i = seg; i < end; i++)
      if (dead === 0 || i > 0) groups[i - (dead > 0 ? 1 : 0)]!.att = perNode;
    seg = end;
    a = z;
  }
}
