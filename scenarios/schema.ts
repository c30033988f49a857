import { PushbenchError } from '../core/errors.js';
import { parseBytes } from '../core/units.js';
import { checkKeys, type DurationInput, duration, num, Problems, section } from './fields.js';
import { validateTimeline } from './timeline.js';

export type { DurationInput } from './fields.js';

/** Active health checks as written in a scenario. */
export interface HealthCheckInput {
  /** Time between checks. Default `1s` (balancers), `1s` (global routing). */
  interval?: DurationInput;
  /** A check unanswered within this fails. Default `1s` (balancers), `500ms` (global routing). */
  timeout?: DurationInput;
  /** Consecutive failures that take a target out. Default 2. */
  fall?: number;
  /** Consecutive successes that put it back. Default 2. */
  rise?: number;
}

/** A region's L4 balancer as written in a scenario. */
export interface BalancerInput {
  /** Default `round-robin`. */
  algorithm?: BalancerAlgorithmName;
  /** A node that joins ramps its share of new connections from 0 to full over this. Default 0 (off). */
  slowStart?: DurationInput;
  health?: HealthCheckInput;
}

/** A node profile as written in a scenario. */
export interface NodeProfileInput {
  /** Connections a node holds. Default unlimited. */
  capacity?: number;
  /** Over capacity: `refuse` upgrades (503, the default), turn `unhealthy` (health checks fail, still accepts), or `crash` (the process exits). */
  overload?: 'refuse' | 'unhealthy' | 'crash';
  /** Default: `topology.heartbeatInterval`. */
  heartbeatInterval?: DurationInput;
  /** Default: `topology.heartbeatTimeout`. */
  heartbeatTimeout?: DurationInput;
  /** A graceful drain spreads its goaways over this. Default `10s`. */
  drainWindow?: DurationInput;
  /** Connection lifetime before a server goaway. Default the node's (30 min). */
  maxLifetime?: DurationInput;
  /** Upgrades per second a node admits. Default unlimited. */
  admissionRate?: number;
  /** CPU quota as a fraction of one core (`0.5`), enforced with a cgroup. Default unlimited. */
  cpu?: number;
  /** Memory limit (`"256MiB"` or bytes), enforced with a cgroup: over it the kernel OOM-kills the node. */
  memory?: string | number;
  /** Connection-tracking table size in front of the node (the network fabric's conntrack emulation). */
  conntrack?: number;
  /** Open-file limit of the node process (RLIMIT_NOFILE, set with prlimit; can only be lowered). */
  openFiles?: number;
  /**
   * Worker processes of each node, sharing its port (`serve --processes`), so a
   * node holds more connections than one process's open-file limit. Default:
   * as many as the node's expected connections need under RLIMIT_NOFILE.
   */
  processes?: number;
  /** Price per node-hour in any currency, for cost comparisons. */
  price?: number;
}

/** A region as written in a scenario. */
export interface RegionInput {
  /** 1-24 characters of a-z 0-9 -; node ids are `<region>-<n>`. */
  name: string;
  nodes: number;
  /** A name from `topology.profiles` (or `default`). */
  profile?: string;
  /** Overrides `topology.balancer` for this region. */
  balancer?: BalancerInput | BalancerAlgorithmName;
}

/** A fault's target: a region (its balancer and every link to its nodes) or one node. */
export interface ScopeInput {
  region?: string;
  node?: string;
}

/** One timeline action as written in a scenario (docs/scenarios.md lists each action's fields). */
export interface TimelineActionInput extends ScopeInput {
  /** When, from the moment the fleet starts connecting, e.g. `"15s"`. */
  at: DurationInput;
  action:
    | 'kill-node'
    | 'restart-node'
    | 'stop-node'
    | 'scale-up'
    | 'scale-down'
    | 'latency'
    | 'blackhole'
    | 'heal'
    | 'reset'
    | 'conntrack-limit'
    | 'admission-rate'
    | 'connect';
  /** Marker text in reports. Default: the action and its target. */
  label?: string;
  /** scale-up/scale-down: how many nodes. */
  nodes?: number;
  /** scale-down: drain gracefully (default true) or kill. */
  graceful?: boolean;
  /** latency: added one-way delay per direction. */
  delay?: DurationInput;
  /** latency: ± uniform jitter. Default 0. */
  jitter?: DurationInput;
  /** latency, blackhole, conntrack-limit, admission-rate: lift the fault after this. Default: until healed or the run ends. */
  for?: DurationInput;
  /** conntrack-limit: table size per node. */
  table?: number;
  /** admission-rate: new connections per second; connect: connect rate. */
  rate?: number;
  /** admission-rate: bucket size. Default = rate. */
  burst?: number;
  /** connect: devices to open. */
  devices?: number;
}

/**
 * A scenario as its author writes it (in TypeScript via {@link defineScenario}, or JSON).
 * Every field but `name`, `devices.count` and `duration` has a default, listed in docs/scenarios.md.
 */
export interface ScenarioInput {
  /** Short name, used in the results folder name. */
  name: string;
  /** One line saying what the scenario shows. */
  description?: string;
  /** What the devices connect to. */
  topology?: {
    /** Shorthand for one region named `local` with this many nodes. Default 1. */
    nodes?: number;
    /** Regions, each with its nodes and balancer. Devices connect to their home region. */
    regions?: RegionInput[];
    /** Balancer of every region unless the region says otherwise. */
    balancer?: BalancerInput | BalancerAlgorithmName;
    /** Named node profiles; `default` is used when a region names none. */
    profiles?: Record<string, NodeProfileInput>;
    /** With several regions: `latency` (the global entry sends devices to their home region, whatever its health) or `health` (fails over when health checks fail). Default `latency`. */
    routing?: 'latency' | 'health' | { mode?: 'latency' | 'health'; health?: HealthCheckInput };
    /** Share the registry and broker through this Redis URL instead of the embedded hub. */
    redis?: string;
    /** Heartbeat ping period of the nodes. Default `10s`. */
    heartbeatInterval?: DurationInput;
    /** Silence after which a node closes a connection. Default `30s`. */
    heartbeatTimeout?: DurationInput;
  };
  /** The simulated device fleet. */
  devices: {
    /** Devices to connect at the start. */
    count: number;
    /** New connections started per second, open-loop, across all workers. Default 1000. */
    connectRate?: number;
    /** An attempt not upgraded within this is abandoned. Default `10s`. */
    connectTimeout?: DurationInput;
    /** Accounts the devices are spread over (device i belongs to account i mod accounts). Default 100. */
    accounts?: number;
    /** Share of the devices homed in each region, e.g. `{ "eu": 1, "us": 1 }`. Default: even. */
    regions?: Record<string, number>;
    /** `"full-jitter:1s:30s"` (policy:base:cap) or an object. Default `full-jitter`, base 500ms, cap 10s. */
    reconnect?:
      | string
      | {
          policy: ReconnectPolicyName;
          base?: DurationInput;
          cap?: DurationInput;
          maxAttempts?: number;
        };
    /** Reconnect on purpose every `every` minus up to `stagger` (Pushy: 30 min). Default off. */
    periodicReconnect?: { every: DurationInput; stagger?: DurationInput };
    /** Drop a connection that hears nothing, not even a ping, for this long. Default off. */
    heartbeatTimeout?: DurationInput;
  };
  /** What services and devices send. */
  traffic?: {
    /** Direct pushes (`POST /v1/push/{device}`) to random connected devices. */
    direct?: {
      /** Pushes per second, open-loop, evenly spaced. Default 100. */
      rate?: number;
      /** Padding added to each payload, bytes. Default 64. */
      payloadBytes?: number;
    };
    /** Indirect pushes through the node's queue (`POST /v1/queue`). Default rate 0. */
    indirect?: { rate?: number; payloadBytes?: number };
    /** Device-to-device messages over device sockets. Default rate 0. */
    d2d?: { rate?: number; payloadBytes?: number };
    /** Rooms: every device joins `perDevice` of `count` rooms; `rate` messages/s published by `PUT`. Default off. */
    rooms?: { count?: number; perDevice?: number; rate?: number; payloadBytes?: number };
  };
  /** Actions at times: faults, scaling, more devices. */
  timeline?: TimelineActionInput[];
  /** How long the publishers run once the fleet is connected. */
  duration: DurationInput;
  /** How long after the last send a message may still arrive and count as delivered. Default `5s`. */
  deliveryDeadline?: DurationInput;
  /** Device worker threads. Default: one per core. */
  workers?: number;
  /**
   * Where the fleet lives. By default one process unless RLIMIT_NOFILE
   * requires more; source addresses spread over 127.1.x.y when one address
   * would run out of ephemeral ports.
   */
  placement?: {
    /** Never more devices than this in one load-generator process (forces several processes). */
    devicesPerProcess?: number;
    /** Source addresses to spread devices over instead of 127.1.0.1, 127.1.0.2, ... */
    sourceAddresses?: string[];
  };
  /** Gate expressions, e.g. `delivery >= 99.9%`, `p99(push) < 50ms`. */
  gates?: string[];
  /** Seed for every random choice in the run. Default 1. */
  seed?: number;
}

/** Client reconnect policies (docs/scenarios.md has the formulas). */
export const RECONNECT_POLICIES = [
  'immediate',
  'fixed',
  'exponential',
  'full-jitter',
  'equal-jitter',
  'decorrelated-jitter',
  'server-hint',
] as const;
export type ReconnectPolicyName = (typeof RECONNECT_POLICIES)[number];

/** How a device waits before each reconnect attempt after losing its connection. */
export interface ReconnectPolicy {
  policy: ReconnectPolicyName;
  /** Base delay (the fixed delay for `fixed`). */
  baseMs: number;
  /** Largest delay. */
  capMs: number;
  /** Attempts after one loss before the device gives up; 0 = never gives up. */
  maxAttempts: number;
}

/** Load-balancer algorithms of a region's L4 balancer. */
export const BALANCER_ALGORITHMS = [
  'round-robin',
  'least-connections',
  'random',
  'power-of-two',
] as const;
export type BalancerAlgorithmName = (typeof BALANCER_ALGORITHMS)[number];

/** Active health checks against `/healthz`. */
export interface HealthCheck {
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failures that take a target out. */
  fall: number;
  /** Consecutive successes that put it back. */
  rise: number;
}

/** What a node is and what it does over its connection capacity. */
export interface NodeProfile {
  name: string;
  /** Connections a node holds; null = unlimited. */
  capacity: number | null;
  /** Over capacity: refuse upgrades (503), fail `/healthz` but keep accepting, or crash. */
  overload: 'refuse' | 'unhealthy' | 'crash';
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** A graceful drain spreads goaways over this window. */
  drainWindowMs: number;
  /** Connection lifetime before a server goaway; null = the node's default (30 min). */
  maxLifetimeMs: number | null;
  /** Upgrades per second a node admits; null = unlimited. */
  admissionRateHz: number | null;
  /** CPU quota in cores (cgroup); null = unlimited. */
  cpu: number | null;
  /** Memory limit in bytes (cgroup); null = unlimited. */
  memoryBytes: number | null;
  /** Conntrack table size in front of the node; null = none. */
  conntrack: number | null;
  /** RLIMIT_NOFILE of the node process; null = inherited. */
  openFiles: number | null;
  /** Worker processes per node; null = as the expected connections need. */
  processes: number | null;
  /** Price per node-hour; null = not given. */
  price: number | null;
}

/** One region: its nodes and the balancer in front of them. */
export interface RegionTopology {
  name: string;
  nodes: number;
  profile: NodeProfile;
  balancer: { algorithm: BalancerAlgorithmName; slowStartMs: number; health: HealthCheck };
}

/** Who a timeline fault applies to. */
export type FaultScope = { region: string } | { nodeId: string };

/** One action on the run's timeline; `atMs` counts from the moment the fleet starts connecting. */
export type TimelineAction = { atMs: number; label: string } & (
  | { action: 'kill-node'; node: string }
  | { action: 'restart-node'; node: string }
  | { action: 'stop-node'; node: string }
  | { action: 'scale-up'; region: string; nodes: number }
  | { action: 'scale-down'; region: string; nodes: number; graceful: boolean }
  | {
      action: 'latency';
      scope: FaultScope;
      delayMs: number;
      jitterMs: number;
      forMs: number | null;
    }
  | { action: 'blackhole'; scope: FaultScope; forMs: number | null }
  | { action: 'heal'; scope: FaultScope }
  | { action: 'reset'; scope: FaultScope }
  | { action: 'conntrack-limit'; scope: FaultScope; table: number; forMs: number | null }
  | {
      action: 'admission-rate';
      scope: FaultScope;
      ratePerSec: number;
      burst: number;
      forMs: number | null;
    }
  | { action: 'connect'; devices: number; rateHz: number }
);

/** A validated scenario with every default filled and every duration in milliseconds. */
export interface Scenario {
  name: string;
  description: string;
  topology: {
    regions: RegionTopology[];
    /** With several regions, how the global entry picks one: by network distance only, or with health checks. */
    routing: { mode: 'latency' | 'health'; health: HealthCheck };
    /** Nodes share a registry and broker through this Redis; null = the embedded hub. */
    redisUrl: string | null;
    /** Devices reach nodes through the network fabric (balancers, fault links), not directly. */
    balanced: boolean;
  };
  devices: {
    /** Devices that connect at the start. */
    count: number;
    connectRateHz: number;
    connectTimeoutMs: number;
    accounts: number;
    /**
     * Home region of each contiguous block of global device indices: the
     * initial devices split by share, then the `connect` actions' devices
     * (indices from `count` on) split the same way.
     */
    regions: Array<{ region: string; first: number; count: number }>;
    reconnect: ReconnectPolicy;
    /** Devices reconnect on their own every `everyMs` minus up to `staggerMs`; null = never. */
    periodicReconnect: { everyMs: number; staggerMs: number } | null;
    /** A device that hears nothing (not even a ping) for this long drops the connection; null = never. */
    heartbeatTimeoutMs: number | null;
    /** Devices opened later by `connect` actions (indices after `count`). */
    reserve: number;
  };
  traffic: {
    direct: { rateHz: number; payloadBytes: number };
    /** Through the node's queue (`POST /v1/queue`): best effort. */
    indirect: { rateHz: number; payloadBytes: number };
    /** Device-to-device messages over the devices' own sockets, to a partner device. */
    d2d: { rateHz: number; payloadBytes: number };
    /** Rooms every device joins `perDevice` of; messages published with `PUT`. */
    rooms: { count: number; perDevice: number; rateHz: number; payloadBytes: number };
  };
  timeline: TimelineAction[];
  durationMs: number;
  deliveryDeadlineMs: number;
  workers: number;
  placement: { devicesPerProcess: number | null; sourceAddresses: string[] | null };
  gates: string[];
  seed: number;
}

export { defineScenario } from './define.js';

/** Facts about the machine that defaults depend on. */
export interface ValidationContext {
  /** Cores available to this process. */
  cores: number;
}

const REGION_NAME = /^[a-z][a-z0-9-]{0,23}$/;
/** Profile names may look like instance types (`c4.large`). */
const PROFILE_NAME = /^[a-z][a-z0-9._-]{0,31}$/;

function healthCheck(p: Problems, path: string, v: unknown, defaults: HealthCheck): HealthCheck {
  const h = section(p, path, v);
  checkKeys(p, path, h, ['interval', 'timeout', 'fall', 'rise']);
  return {
    intervalMs: duration(p, `${path}.interval`, h.interval, defaults.intervalMs, 10),
    timeoutMs: duration(p, `${path}.timeout`, h.timeout, defaults.timeoutMs, 1),
    fall: num(p, `${path}.fall`, h.fall, defaults.fall, { min: 1, integer: true, max: 100 }),
    rise: num(p, `${path}.rise`, h.rise, defaults.rise, { min: 1, integer: true, max: 100 }),
  };
}

const BALANCER_HEALTH: HealthCheck = { intervalMs: 1000, timeoutMs: 1000, fall: 2, rise: 2 };
const ROUTING_HEALTH: HealthCheck = { intervalMs: 1000, timeoutMs: 500, fall: 2, rise: 2 };

function balancer(
  p: Problems,
  path: string,
  v: unknown,
  fallback: RegionTopology['balancer'],
): RegionTopology['balancer'] {
  if (v === undefined) return fallback;
  const b = typeof v === 'string' ? { algorithm: v } : section(p, path, v);
  checkKeys(p, path, b, ['algorithm', 'slowStart', 'health']);
  let algorithm = fallback.algorithm;
  if (b.algorithm !== undefined) {
    if ((BALANCER_ALGORITHMS as readonly unknown[]).includes(b.algorithm)) {
      algorithm = b.algorithm as BalancerAlgorithmName;
    } else {
      p.add(
        typeof v === 'string' ? path : `${path}.algorithm`,
        `must be one of ${BALANCER_ALGORITHMS.join(', ')}, got ${JSON.stringify(b.algorithm)}`,
      );
    }
  }
  return {
    algorithm,
    slowStartMs: duration(p, `${path}.slowStart`, b.slowStart, fallback.slowStartMs),
    health:
      b.health === undefined
        ? fallback.health
        : healthCheck(p, `${path}.health`, b.health, fallback.health),
  };
}

function profile(
  p: Problems,
  path: string,
  name: string,
  v: unknown,
  heartbeat: { intervalMs: number; timeoutMs: number },
): NodeProfile {
  const o = section(p, path, v);
  checkKeys(p, path, o, [
    'capacity',
    'overload',
    'heartbeatInterval',
    'heartbeatTimeout',
    'drainWindow',
    'maxLifetime',
    'admissionRate',
    'cpu',
    'memory',
    'conntrack',
    'openFiles',
    'processes',
    'price',
  ]);
  let memoryBytes: number | null = null;
  if (o.memory !== undefined) {
    try {
      memoryBytes = parseBytes(o.memory as string | number, `${path}.memory`);
      if (memoryBytes < 16 * 2 ** 20)
        p.add(`${path}.memory`, `must be at least 16MiB, got ${JSON.stringify(o.memory)}`);
    } catch {
      p.add(
        `${path}.memory`,
        `must be a size like "256MiB" or a number of bytes, got ${JSON.stringify(o.memory)}`,
      );
    }
  }
  const optional = (key: string, rule: { min: number; integer?: boolean; max?: number }) =>
    o[key] === undefined ? null : num(p, `${path}.${key}`, o[key], undefined, rule);
  let overload: NodeProfile['overload'] = 'refuse';
  if (o.overload !== undefined) {
    if (o.overload === 'refuse' || o.overload === 'unhealthy' || o.overload === 'crash') {
      overload = o.overload;
    } else {
      p.add(
        `${path}.overload`,
        `must be refuse, unhealthy or crash, got ${JSON.stringify(o.overload)}`,
      );
    }
  }
  return {
    name,
    capacity:
      o.capacity === undefined
        ? null
        : num(p, `${path}.capacity`, o.capacity, undefined, { min: 1, integer: true }),
    overload,
    heartbeatIntervalMs: duration(
      p,
      `${path}.heartbeatInterval`,
      o.heartbeatInterval,
      heartbeat.intervalMs,
      10,
    ),
    heartbeatTimeoutMs: duration(
      p,
      `${path}.heartbeatTimeout`,
      o.heartbeatTimeout,
      heartbeat.timeoutMs,
      10,
    ),
    drainWindowMs: duration(p, `${path}.drainWindow`, o.drainWindow, 10_000),
    maxLifetimeMs:
      o.maxLifetime === undefined
        ? null
        : duration(p, `${path}.maxLifetime`, o.maxLifetime, undefined, 100),
    admissionRateHz:
      o.admissionRate === undefined
        ? null
        : num(p, `${path}.admissionRate`, o.admissionRate, undefined, { min: 0.001 }),
    cpu: optional('cpu', { min: 0.01, max: 1024 }),
    memoryBytes,
    conntrack: optional('conntrack', { min: 0, integer: true }),
    openFiles: optional('openFiles', { min: 64, integer: true }),
    processes: optional('processes', { min: 1, integer: true, max: 256 }),
    price: optional('price', { min: 0 }),
  };
}

/** Parses `"full-jitter:1s:30s"` or `{policy, base, cap, maxAttempts}`. */
function reconnectPolicy(p: Problems, path: string, v: unknown): ReconnectPolicy {
  const fallback: ReconnectPolicy = {
    policy: 'full-jitter',
    baseMs: 500,
    capMs: 10_000,
    maxAttempts: 0,
  };
  if (v === undefined) return fallback;
  let o: Record<string, unknown>;
  if (typeof v === 'string') {
    const [policy, base, cap] = v.split(':');
    o = { policy, base, cap };
    if (base === undefined) delete o.base;
    if (cap === undefined) delete o.cap;
  } else {
    o = section(p, path, v);
  }
  checkKeys(p, path, o, ['policy', 'base', 'cap', 'maxAttempts']);
  let policy = fallback.policy;
  if ((RECONNECT_POLICIES as readonly unknown[]).includes(o.policy)) {
    policy = o.policy as ReconnectPolicyName;
  } else {
    p.add(
      typeof v === 'string' ? path : `${path}.policy`,
      `must be one of ${RECONNECT_POLICIES.join(', ')}, got ${JSON.stringify(o.policy)}`,
    );
  }
  const baseMs = duration(p, `${path}.base`, o.base, fallback.baseMs);
  const capMs = duration(p, `${path}.cap`, o.cap, Math.max(fallback.capMs, baseMs));
  if (capMs < baseMs) p.add(`${path}.cap`, `must be >= base (${baseMs}ms), got ${capMs}ms`);
  return {
    policy,
    baseMs,
    capMs,
    maxAttempts: num(p, `${path}.maxAttempts`, o.maxAttempts, 0, { min: 0, integer: true }),
  };
}

/** Splits `count` devices over regions by share, in region order, as contiguous index blocks. */
export function splitByShare(
  count: number,
  shares: Array<{ region: string; share: number }>,
): Array<{ region: string; first: number; count: number }> {
  const total = shares.reduce((a, s) => a + s.share, 0);
  const out: Array<{ region: string; first: number; count: number }> = [];
  let first = 0;
  let acc = 0;
  for (const [i, s] of shares.entries()) {
    acc += s.share;
    const end = i === shares.length - 1 ? count : Math.round((count * acc) / total);
    out.push({ region: s.region, first, count: end - first });
    first = end;
  }
  return out;
}

/**
 * Validates a scenario and fills defaults. Collects every problem first and
 * throws one `PB_BAD_SCENARIO` listing them all, so a user fixes a file in one pass.
 */
export function validateScenario(input: unknown, ctx: ValidationContext): Scenario {
  const p = new Problems();
  const root = section(p, '(scenario)', input);
  checkKeys(p, '', root, [
    'name',
    'description',
    'topology',
    'devices',
    'traffic',
    'timeline',
    'duration',
    'deliveryDeadline',
    'workers',
    'placement',
    'gates',
    'seed',
  ]);
  let name = 'scenario';
  if (typeof root.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(root.name)) {
    p.add('name', 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
  } else {
    name = root.name;
  }
  if (root.description !== undefined && typeof root.description !== 'string') {
    p.add('description', 'must be a string');
  }

  // Topology: regions of nodes behind balancers.
  const topo = section(p, 'topology', root.topology);
  checkKeys(p, 'topology', topo, [
    'nodes',
    'regions',
    'balancer',
    'profiles',
    'routing',
    'redis',
    'heartbeatInterval',
    'heartbeatTimeout',
  ]);
  const heartbeat = {
    intervalMs: duration(p, 'topology.heartbeatInterval', topo.heartbeatInterval, 10_000, 10),
    timeoutMs: duration(p, 'topology.heartbeatTimeout', topo.heartbeatTimeout, 30_000, 10),
  };
  const profiles = new Map<string, NodeProfile>();
  const profilesIn = section(p, 'topology.profiles', topo.profiles);
  for (const [pname, pv] of Object.entries(profilesIn)) {
    if (!PROFILE_NAME.test(pname)) {
      p.add(
        `topology.profiles.${pname}`,
        'name must be 1-32 characters of a-z 0-9 . _ - starting with a letter',
      );
    }
    profiles.set(pname, profile(p, `topology.profiles.${pname}`, pname, pv, heartbeat));
  }
  if (!profiles.has('default')) {
    profiles.set('default', profile(p, 'topology.profiles.default', 'default', {}, heartbeat));
  }
  const defaultBalancer = balancer(p, 'topology.balancer', topo.balancer, {
    algorithm: 'round-robin',
    slowStartMs: 0,
    health: BALANCER_HEALTH,
  });
  const regions: RegionTopology[] = [];
  if (topo.regions !== undefined && topo.nodes !== undefined) {
    p.add('topology.nodes', 'give either nodes (one region) or regions, not both');
  }
  if (topo.regions !== undefined) {
    if (!Array.isArray(topo.regions) || topo.regions.length === 0) {
      p.add('topology.regions', 'must be a non-empty list of {name, nodes}');
    } else {
      for (const [i, rv] of topo.regions.entries()) {
        const path = `topology.regions[${i}]`;
        const r = section(p, path, rv);
        checkKeys(p, path, r, ['name', 'nodes', 'profile', 'balancer']);
        let rname = `region${i + 1}`;
        if (typeof r.name !== 'string' || !REGION_NAME.test(r.name)) {
          p.add(`${path}.name`, 'must be 1-24 characters of a-z 0-9 - starting with a letter');
        } else if (regions.some((x) => x.name === r.name)) {
          p.add(`${path}.name`, `duplicate region ${JSON.stringify(r.name)}`);
        } else {
          rname = r.name;
        }
        const nodes = num(p, `${path}.nodes`, r.nodes, undefined, {
          min: 1,
          integer: true,
          max: 64,
        });
        let prof = profiles.get('default')!;
        if (r.profile !== undefined) {
          const found = typeof r.profile === 'string' ? profiles.get(r.profile) : undefined;
          if (found) prof = found;
          else {
            p.add(
              `${path}.profile`,
              `unknown profile ${JSON.stringify(r.profile)} (known: ${[...profiles.keys()].join(', ')})`,
            );
          }
        }
        regions.push({
          name: rname,
          nodes,
          profile: prof,
          balancer: balancer(p, `${path}.balancer`, r.balancer, defaultBalancer),
        });
      }
    }
  } else {
    const nodes = num(p, 'topology.nodes', topo.nodes, 1, { min: 1, integer: true, max: 64 });
    regions.push({
      name: 'local',
      nodes,
      profile: profiles.get('default')!,
      balancer: defaultBalancer,
    });
  }
  let routing: Scenario['topology']['routing'] = { mode: 'latency', health: ROUTING_HEALTH };
  if (topo.routing !== undefined) {
    const r =
      typeof topo.routing === 'string'
        ? { mode: topo.routing }
        : section(p, 'topology.routing', topo.routing);
    checkKeys(p, 'topology.routing', r, ['mode', 'health']);
    if (r.mode !== undefined && r.mode !== 'latency' && r.mode !== 'health') {
      p.add(
        typeof topo.routing === 'string' ? 'topology.routing' : 'topology.routing.mode',
        `must be latency or health, got ${JSON.stringify(r.mode)}`,
      );
    }
    routing = {
      mode: r.mode === 'health' ? 'health' : 'latency',
      health: healthCheck(p, 'topology.routing.health', r.health, ROUTING_HEALTH),
    };
  }
  let redisUrl: string | null = null;
  if (topo.redis !== undefined) {
    if (typeof topo.redis !== 'string' || !/^rediss?:\/\//.test(topo.redis)) {
      p.add('topology.redis', `must be a redis:// URL, got ${JSON.stringify(topo.redis)}`);
    } else {
      redisUrl = topo.redis;
    }
  }

  // Devices.
  const dev = section(p, 'devices', root.devices);
  if (root.devices === undefined) p.add('devices', 'is required');
  checkKeys(p, 'devices', dev, [
    'count',
    'connectRate',
    'connectTimeout',
    'accounts',
    'regions',
    'reconnect',
    'periodicReconnect',
    'heartbeatTimeout',
  ]);
  const count = num(p, 'devices.count', dev.count, root.devices === undefined ? 0 : undefined, {
    min: 1,
    integer: true,
  });
  const connectRateHz = num(p, 'devices.connectRate', dev.connectRate, 1000, { min: 1 });
  const connectTimeoutMs = duration(p, 'devices.connectTimeout', dev.connectTimeout, 10_000, 1);
  const accounts = num(p, 'devices.accounts', dev.accounts, 100, { min: 1, integer: true });
  let shares = regions.map((r) => ({ region: r.name, share: 1 }));
  if (dev.regions !== undefined) {
    const sh = section(p, 'devices.regions', dev.regions);
    shares = [];
    for (const [rname, share] of Object.entries(sh)) {
      if (!regions.some((r) => r.name === rname)) {
        p.add(
          `devices.regions.${rname}`,
          `no such region (regions: ${regions.map((r) => r.name).join(', ')})`,
        );
      }
      shares.push({
        region: rname,
        share: num(p, `devices.regions.${rname}`, share, undefined, { min: 0 }),
      });
    }
    if (shares.length === 0 || shares.every((s) => s.share <= 0)) {
      p.add('devices.regions', 'must give at least one region a share > 0');
      shares = regions.map((r) => ({ region: r.name, share: 1 }));
    }
  }
  const reconnect = reconnectPolicy(p, 'devices.reconnect', dev.reconnect);
  let periodicReconnect: Scenario['devices']['periodicReconnect'] = null;
  if (dev.periodicReconnect !== undefined) {
    const pr = section(p, 'devices.periodicReconnect', dev.periodicReconnect);
    checkKeys(p, 'devices.periodicReconnect', pr, ['every', 'stagger']);
    const everyMs = duration(p, 'devices.periodicReconnect.every', pr.every, undefined, 100);
    const staggerMs = duration(p, 'devices.periodicReconnect.stagger', pr.stagger, 0);
    if (staggerMs >= everyMs && everyMs > 0) {
      p.add('devices.periodicReconnect.stagger', `must be shorter than every (${everyMs}ms)`);
    }
    periodicReconnect = { everyMs, staggerMs };
  }
  const heartbeatTimeoutMs =
    dev.heartbeatTimeout === undefined
      ? null
      : duration(p, 'devices.heartbeatTimeout', dev.heartbeatTimeout, undefined, 10);

  // Traffic.
  const traffic = section(p, 'traffic', root.traffic);
  checkKeys(p, 'traffic', traffic, ['direct', 'indirect', 'd2d', 'rooms']);
  const flow = (key: string, defaultRate: number) => {
    const f = section(p, `traffic.${key}`, traffic[key]);
    checkKeys(p, `traffic.${key}`, f, ['rate', 'payloadBytes']);
    return {
      rateHz: num(p, `traffic.${key}.rate`, f.rate, defaultRate, { min: 0 }),
      payloadBytes: num(p, `traffic.${key}.payloadBytes`, f.payloadBytes, 64, {
        min: 0,
        integer: true,
        max: 60 * 1024,
      }),
    };
  };
  const direct = flow('direct', 100);
  const indirect = flow('indirect', 0);
  const d2d = flow('d2d', 0);
  const ro = section(p, 'traffic.rooms', traffic.rooms);
  checkKeys(p, 'traffic.rooms', ro, ['count', 'perDevice', 'rate', 'payloadBytes']);
  const rooms = {
    count: num(p, 'traffic.rooms.count', ro.count, 0, { min: 0, integer: true, max: 100_000 }),
    perDevice: num(p, 'traffic.rooms.perDevice', ro.perDevice, ro.count === undefined ? 0 : 1, {
      min: 0,
      integer: true,
      max: 100,
    }),
    rateHz: num(p, 'traffic.rooms.rate', ro.rate, 0, { min: 0 }),
    payloadBytes: num(p, 'traffic.rooms.payloadBytes', ro.payloadBytes, 64, {
      min: 0,
      integer: true,
      max: 60 * 1024,
    }),
  };
  if (rooms.perDevice > rooms.count) {
    p.add(
      'traffic.rooms.perDevice',
      `must be <= rooms.count (${rooms.count}), got ${rooms.perDevice}`,
    );
  }
  if (rooms.rateHz > 0 && rooms.count === 0)
    p.add('traffic.rooms.count', 'must be >= 1 when rooms.rate > 0');

  const timeline = validateTimeline(p, root.timeline, regions);
  const reserve = timeline.reduce((a, t) => a + (t.action === 'connect' ? t.devices : 0), 0);

  const durationMs = duration(p, 'duration', root.duration, undefined, 1);
  const deliveryDeadlineMs = duration(p, 'deliveryDeadline', root.deliveryDeadline, 5000);
  const workers = num(p, 'workers', root.workers, Math.max(1, ctx.cores), {
    min: 1,
    integer: true,
    max: 256,
  });
  const seed = num(p, 'seed', root.seed, 1, { min: 0, integer: true });
  const pl = section(p, 'placement', root.placement);
  checkKeys(p, 'placement', pl, ['devicesPerProcess', 'sourceAddresses']);
  const placement: Scenario['placement'] = {
    devicesPerProcess:
      pl.devicesPerProcess === undefined
        ? null
        : num(p, 'placement.devicesPerProcess', pl.devicesPerProcess, 1, { min: 1, integer: true }),
    sourceAddresses: null,
  };
  if (pl.sourceAddresses !== undefined) {
    const list = pl.sourceAddresses;
    const bad = Array.isArray(list)
      ? list.filter(
          (a) => typeof a !== 'string' || !/^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(a),
        )
      : [list];
    if (!Array.isArray(list) || list.length === 0 || bad.length > 0) {
      p.add(
        'placement.sourceAddresses',
        `must be a non-empty list of loopback addresses (127.x.y.z), got ${JSON.stringify(bad.length > 0 ? bad[0] : list)}`,
      );
    } else {
      placement.sourceAddresses = list as string[];
    }
  }
  let gates: string[] = [];
  if (root.gates !== undefined) {
    if (!Array.isArray(root.gates) || !root.gates.every((g) => typeof g === 'string')) {
      p.add('gates', 'must be a list of strings like "p99(push) < 50ms"');
    } else {
      gates = root.gates;
    }
  }
  if (p.list.length > 0) {
    const head =
      p.list.length === 1 ? p.list[0] : `${p.list.length} problems: ${p.list.join('; ')}`;
    throw new PushbenchError('PB_BAD_SCENARIO', `scenario ${name}: ${head}`, p.list);
  }
  const balanced =
    regions.length > 1 ||
    regions.some((r) => r.nodes > 1) ||
    timeline.some((t) => t.action !== 'connect') ||
    regions.some((r) => r.profile.conntrack !== null) ||
    topo.balancer !== undefined;
  return {
    name,
    description: typeof root.description === 'string' ? root.description : '',
    topology: { regions, routing, redisUrl, balanced },
    devices: {
      count,
      connectRateHz,
      connectTimeoutMs,
      accounts,
      // Devices opened later by `connect` actions follow on after the initial ones, split the same way.
      regions: [
        ...splitByShare(count, shares),
        ...splitByShare(reserve, shares).map((b) => ({ ...b, first: b.first + count })),
      ].filter((b) => b.count > 0),
      reconnect,
      periodicReconnect,
      heartbeatTimeoutMs,
      reserve,
    },
    traffic: { direct, indirect, d2d, rooms },
    timeline,
    durationMs,
    deliveryDeadlineMs,
    workers,
    placement,
    gates,
    seed,
  };
}
