/**
 * A fleet-scale simulation of a reconnect herd: k nodes die at t=0, their
 * devices reconnect by a client policy through a balancer onto the survivors,
 * each node absorbs a measured number of new connections per second, and a
 * node pushed past `overloadAt` falls over and adds its devices to the herd.
 *
 * Devices are counts in time buckets, never objects: the state is one number
 * per node (connections held) and a calendar of future attempts per attempt
 * number, so 200 million devices over thousands of nodes run in seconds.
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
 *   (exact for small counts, normal approximation for large ones);
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
  const overloadAt = input.overloadAt ?? input.capacity;
  const overloadLimit = overloadAt * (1 + 1e-12) + 1e-9;
  const perBucket = (input.absorptionPerSec * dtMs) / 1000;
  const burst = Math.max(perBucket, 1);
  const policy = input.reconnect;
  const balancer = input.balancer;
  const rng = new Rng(input.seed ?? 1);
  const pickRng = rng.fork(1);

  // Connections held per node.
  const conn = new Float64Array(N);
  if (input.loadByNode) conn.set(input.loadByNode);
  else conn.fill(input.devices / N);
  for (let i = k; i < N; i++) {
    if (conn[i]! > overloadLimit) {
      throw new PushbenchError(
        'PB_USAGE',
        `herd simulation: node ${i} already holds ${conn[i]} connections, over overloadAt ${overloadAt}; plan more nodes or raise overloadAt`,
      );
    }
  }

  // Delay distributions per class (class c = attempt number c+1).
  const nSat = saturationAttempt(policy, rng);
  const classes = policy.maxAttempts > 0 ? policy.maxAttempts : nSat;
  const pieceTable = delayPieces(policy, Math.min(nSat, classes), rng.fork(2));
  const piecesOf = (cls: number): DelayPiece[] => pieceTable[Math.min(cls, pieceTable.length - 1)]!;
  let maxDelayMs = 0;
  for (const pieces of pieceTable)
    for (const p of pieces) maxDelayMs = Math.max(maxDelayMs, p.hiMs);
  const ring = Math.ceil(maxDelayMs / dtMs) + 3;
  if (classes * ring > 25_000_000) {
    throw new PushbenchError(
      'PB_USAGE',
      `herd simulation: ${classes} attempt classes x ${ring} buckets of delay is too much state; lower maxAttempts or raise dtMs`,
    );
  }
  const calendar = new Calendar(classes, ring);

  // Live nodes, by position; least-connections and power-of-two keep them sorted by load.
  let live = new Int32Array(N - k);
  for (let i = k; i < N; i++) live[i - k] = i;
  let liveCount = N - k;
  const sorted = balancer === 'least-connections' || balancer === 'power-of-two';
  if (sorted) live.sort((a, b) => conn[a]! - conn[b]!);
  // Dead nodes still in rotation: a count and the times the balancer notices them, in order.
  const detectAt: number[] = [];
  let undetected = 0;
  let herd = 0;
  for (let i = 0; i < k; i++) {
    herd += conn[i]!;
    conn[i] = 0;
    if (detectMs > 0) {
      detectAt.push(detectMs);
      undetected++;
    }
  }
  let detectHead = 0;
  calendar.schedule(0, 0, 0, herd, piecesOf(0), dtMs);

  const att = new Float64Array(N); // attempts routed to each live position this bucket
  // Absorption tokens per node, refilled lazily when the node is next offered attempts.
  const tokens = new Float64Array(N).fill(burst);
  const refilledAt = new Float64Array(N);
  const secConnects = new Float64Array(N);
  const dying: number[] = [];
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
  let sec = 0;
  let secAttempts = 0;
  let secConnectsAll = 0;
  let secFailures = 0;
  let lastBucket = -1;
  let lastActive = 0;

  const flushSecond = () => {
    let maxNode = 0;
    for (let i = 0; i < N; i++) if (secConnects[i]! > maxNode) maxNode = secConnects[i]!;
    secConnects.fill(0);
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
    }
    while (detectHead < detectAt.length && detectAt[detectHead]! <= tMs) {
      detectHead++;
      undetected--;
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
      let touched = 0; // live positions 0..touched-1 may hold attempts
      if (m > 0) {
        switch (balancer) {
          case 'round-robin': {
            const share = total / m;
            att.fill(share, 0, liveCount);
            touched = liveCount;
            break;
          }
          case 'random':
            touched = routeRandom(total, undetected, liveCount, att, pickRng);
            break;
          case 'least-connections':
            touched = routeLeastConnections(total, undetected, live, liveCount, conn, att);
            break;
          case 'power-of-two':
            touched = routePowerOfTwo(total, undetected, live, liveCount, conn, att);
            break;
        }
      }
      let accepted = 0;
      for (let pos = 0; pos < touched; pos++) {
        const a = att[pos]!;
        if (a === 0) continue;
        att[pos] = 0;
        const node = live[pos]!;
        const refill = tokens[node]! + (b - refilledAt[node]!) * perBucket;
        const room = Math.min(refill, burst);
        const got = Math.min(a, room);
        tokens[node] = room - got;
        refilledAt[node] = b;
        conn[node] = conn[node]! + got;
        secConnects[node] = secConnects[node]! + got;
        accepted += got;
        if (conn[node]! > overloadLimit) dying.push(pos);
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
            calendar.schedule(next, b, 1, f, piecesOf(next), dtMs);
          }
        }
      }
      if (dying.length > 0) {
        // Cascade: these nodes fall over now; their devices start over at attempt 1.
        for (const pos of dying) {
          const node = live[pos]!;
          const lost = conn[node]!;
          conn[node] = 0;
          herd += lost;
          cascaded++;
          calendar.schedule(0, b, 1, lost, piecesOf(0), dtMs);
          if (detectMs > 0) {
            detectAt.push(tMs + detectMs);
            undetected++;
          }
        }
        const gone = new Set(dying);
        const kept = new Int32Array(liveCount - dying.length);
        let w = 0;
        for (let pos = 0; pos < liveCount; pos++) if (!gone.has(pos)) kept[w++] = live[pos]!;
        live = kept;
        liveCount = w;
        dying.length = 0;
      }
      if (sorted) insertionSort(live, liveCount, conn);
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
 * Random: a multinomial draw of the bucket's whole attempts over the m nodes in
 * rotation (one draw per attempt when few, sequential binomials when many); the
 * fractional remainder of the fluid count is spread evenly. Returns the number
 * of live positions written.
 */
function routeRandom(
  total: number,
  dead: number,
  liveCount: number,
  att: Float64Array,
  rng: Rng,
): number {
  const m = dead + liveCount;
  const whole = Math.floor(total);
  const even = (total - whole) / m;
  if (liveCount > 0 && even > 0) att.fill(even, 0, liveCount);
  if (whole <= 4 * m) {
    for (let i = 0; i < whole; i++) {
      const r = rng.int(m);
      if (r >= dead) att[r - dead] = att[r - dead]! + 1;
    }
  } else {
    let left = whole;
    for (let i = 0; i < m && left > 0; i++) {
      const x = i === m - 1 ? left : binomial(left, 1 / (m - i), rng);
      left -= x;
      if (i >= dead) att[i - dead] = att[i - dead]! + x;
    }
  }
  return liveCount;
}

/**
 * Least-connections: water-fills the bucket's attempts into the emptiest nodes
 * (dead undetected ones hold 0) up to a common level. `live` is sorted by load.
 * Returns how many live positions, from the front, received attempts.
 */
function routeLeastConnections(
  total: number,
  dead: number,
  live: Int32Array,
  liveCount: number,
  conn: Float64Array,
  att: Float64Array,
): number {
  const m = dead + liveCount;
  // Loads are taken relative to the emptiest node: a bucket's few attempts
  // against 1e8 connections would otherwise vanish in rounding.
  const floor = dead > 0 ? 0 : conn[live[0]!]!;
  const excess = (i: number): number => (i < dead ? 0 : conn[live[i - dead]!]! - floor);
  let sum = 0;
  let filled = 0;
  let level = 0;
  for (filled = 1; filled <= m; filled++) {
    sum += excess(filled - 1);
    const next = filled < m ? excess(filled) : Number.POSITIVE_INFINITY;
    if (filled * next - sum >= total) {
      level = (total + sum) / filled;
      break;
    }
  }
  const liveFilled = Math.max(0, Math.min(filled, m) - dead);
  for (let pos = 0; pos < liveFilled; pos++) {
    att[pos] = Math.max(0, level - (conn[live[pos]!]! - floor));
  }
  return liveFilled;
}

/**
 * Power-of-two choices in aggregate: the node of load rank r among m gets the
 * expected share 2(m-1-r)/(m(m-1)) of the bucket's attempts (two distinct
 * nodes sampled, the lesser taken); a group of tied nodes
 * (within half a connection) shares its ranks' average. `live` is sorted by load.
 */
function routePowerOfTwo(
  total: number,
  dead: number,
  live: Int32Array,
  liveCount: number,
  conn: Float64Array,
  att: Float64Array,
): number {
  const m = dead + liveCount;
  const load = (i: number): number => (i < dead ? 0 : conn[live[i - dead]!]!);
  if (m === 1) {
    if (liveCount === 1) att[0] = total;
    return liveCount;
  }
  const pairs = m * (m - 1);
  let a = 0;
  while (a < m) {
    const first = load(a);
    let z = a + 1;
    while (z < m && load(z) - first <= P2C_TIE_CONNECTIONS) z++;
    // Sum over ranks r in [a, z) of 2(m-1-r) = (z-a)(2m-1-a-z); per node (2m-1-a-z).
    const perNode = (total * (2 * m - 1 - a - z)) / pairs;
    for (let i = Math.max(a, dead); i < z; i++) att[i - dead] = perNode;
    a = z;
  }
  return liveCount;
}

/** Restores ascending load order after a bucket's small changes (near-sorted input: O(n)). */
function insertionSort(live: Int32Array, count: number, conn: Float64Array): void {
  for (let i = 1; i < count; i++) {
    const node = live[i]!;
    const v = conn[node]!;
    let j = i - 1;
    if (conn[live[j]!]! <= v) continue;
    while (j >= 0 && conn[live[j]!]! > v) {
      live[j + 1] = live[j]!;
      j--;
    }
    live[j + 1] = node;
  }
}
