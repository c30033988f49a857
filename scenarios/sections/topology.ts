/**
 * The `topology` section: regions of nodes behind balancers, the node
 * profiles they run, global routing between regions, and where the nodes
 * share their registry and broker.
 */
import { parseBytes } from '../../core/units.js';
import { defaultHeartbeatTimeoutMs, heartbeatTimeoutProblem } from '../../core/ws/heartbeat.js';
import {
  checkKeys,
  computed,
  countOrPercent,
  type Defaults,
  duration,
  flag,
  ms,
  num,
  OFF,
  type Problems,
  REQUIRED,
  section,
} from '../fields.js';
import {
  BALANCER_ALGORITHMS,
  BALANCER_ENGINES,
  type Balancer,
  type BalancerAlgorithmName,
  type HealthCheck,
  type HealthCheckInput,
  NETWORK_ENGINES,
  type NodeProfile,
  type NodeProfileInput,
  type OverloadBehaviour,
  type RegionInput,
  type RegionTopology,
  type Scenario,
  TLS_MODES,
  TLS_TICKETS,
  type TlsMode,
  type TlsTickets,
  type TopologyInput,
} from '../types.js';

/** Defaults of `topology`; `balancer` and `routing` hold their objects' own tables. */
export const topologyDefaults = {
  nodes: 1,
  regions: computed('one region named `local` of `topology.nodes` nodes'),
  balancer: {
    algorithm: 'round-robin',
    engine: 'builtin',
    slowStart: 0,
    health: { interval: '1s', timeout: '1s', fall: 2, rise: 2 },
    failOpen: false,
    redispatch: false,
    maxConnecting: null,
    queueTimeout: null as string | null,
  },
  profiles: computed('a `default` profile with every profile default'),
  routing: {
    mode: 'latency',
    health: { interval: '1s', timeout: '500ms', fall: 2, rise: 2 },
  },
  /** The embedded hub. */
  redis: OFF,
  network: 'auto',
  tls: 'off',
  tlsTickets: 'shared',
  tlsKey: 'ec-p256',
  /** The run makes its own. */
  tlsCertificate: OFF,
  heartbeatInterval: '10s',
  heartbeatTimeout: computed('3 × `topology.heartbeatInterval`, at least 30s'),
  nodeNice: 10,
  peerLinks: true,
  datastoreRegion: computed('the first region'),
} as const satisfies Defaults<TopologyInput>;

/** Defaults of each region (`topology.regions[i]`). */
export const regionDefaults = {
  name: REQUIRED,
  nodes: REQUIRED,
  profile: 'default',
  balancer: computed('`topology.balancer`; fields it omits come from there'),
} as const satisfies Defaults<RegionInput>;

/** Defaults of each node profile (`topology.profiles.<name>`). */
export const profileDefaults = {
  capacity: OFF,
  overload: 'refuse',
  heartbeatInterval: computed('`topology.heartbeatInterval`'),
  heartbeatTimeout: computed(
    "`topology.heartbeatTimeout` if given, else 3 × the profile's heartbeat interval, at least 30s",
  ),
  drainWindow: '10s',
  /** The node's own, 30 min. */
  maxLifetime: OFF,
  admissionRate: OFF,
  /** The node's own, 5 s. */
  d2dCacheTtl: OFF,
  cpu: OFF,
  memory: OFF,
  conntrack: OFF,
  openFiles: OFF,
  /** As many as the node's expected connections need, worked out when the run is placed. */
  processes: OFF,
  price: OFF,
} as const satisfies Defaults<NodeProfileInput>;

/** Node ids of a region: `<region>-1` … `<region>-n`. */
export function nodeId(region: string, n: number): string {
  return `${region}-${n}`;
}

/** The `n` of a node id `<region>-<n>`. */
export function nodeNumber(id: string): number {
  return Number(id.slice(id.lastIndexOf('-') + 1));
}

const REGION_NAME = /^[a-z][a-z0-9-]{0,23}$/;
/** Profile names may look like instance types (`c4.large`). */
const PROFILE_NAME = /^[a-z][a-z0-9._-]{0,31}$/;
const NODES = { min: 1, integer: true, max: 64 };

function healthOf(t: Required<HealthCheckInput>): HealthCheck {
  return { intervalMs: ms(t.interval), timeoutMs: ms(t.timeout), fall: t.fall, rise: t.rise };
}

const tableBalancer: Balancer = {
  algorithm: topologyDefaults.balancer.algorithm,
  engine: topologyDefaults.balancer.engine,
  slowStartMs: ms(topologyDefaults.balancer.slowStart),
  health: healthOf(topologyDefaults.balancer.health),
  failOpen: topologyDefaults.balancer.failOpen,
  redispatch: topologyDefaults.balancer.redispatch,
  maxConnecting: topologyDefaults.balancer.maxConnecting,
  queueTimeoutMs: null,
};
const tableRoutingHealth = healthOf(topologyDefaults.routing.health);

/**
 * Validates `topology`. `balanced` says only what the topology itself needs;
 * the composer adds what the timeline needs.
 */
export function validateTopology(p: Problems, input: unknown): Scenario['topology'] {
  const topo = section(p, 'topology', input);
  checkKeys(p, 'topology', topo, topologyDefaults);
  const intervalMs = duration(
    p,
    'topology.heartbeatInterval',
    topo.heartbeatInterval,
    topologyDefaults.heartbeatInterval,
    10,
  );
  const heartbeat: TopologyHeartbeat = {
    intervalMs,
    // Unset or bad: the default for the interval (a bad one is already a problem).
    timeoutMs: duration(
      p,
      'topology.heartbeatTimeout',
      topo.heartbeatTimeout,
      defaultHeartbeatTimeoutMs(intervalMs),
      10,
    ),
    timeoutGiven: topo.heartbeatTimeout !== undefined,
  };
  const heartbeatProblem = heartbeatTimeoutProblem(heartbeat.intervalMs, heartbeat.timeoutMs);
  if (heartbeatProblem) p.add('topology.heartbeatTimeout', heartbeatProblem);
  const profiles = readProfiles(p, topo.profiles, heartbeat);
  const defaultBalancer = balancer(p, 'topology.balancer', topo.balancer, tableBalancer);
  const regions = readRegions(p, topo, profiles, defaultBalancer);
  const routing = readRouting(p, topo.routing);
  const tls = readTls(p, topo, regions);
  return {
    regions,
    routing,
    ...readRedis(p, topo.redis),
    network: oneOf(p, 'topology.network', topo.network, NETWORK_ENGINES, topologyDefaults.network),
    tls,
    nodeNice: num(p, 'topology.nodeNice', topo.nodeNice, topologyDefaults.nodeNice, {
      min: 0,
      max: 19,
      integer: true,
    }),
    peerLinks: flag(p, 'topology.peerLinks', topo.peerLinks, topologyDefaults.peerLinks),
    datastoreRegion: readDatastoreRegion(p, topo.datastoreRegion, regions),
    balanced:
      regions.length > 1 ||
      regions.some((r) => r.nodes > 1) ||
      regions.some((r) => r.profile.conntrack !== null) ||
      topo.balancer !== undefined ||
      // TLS ended at the balancer needs one in front of every region, one node or not.
      tls?.at === 'balancer',
  };
}

/** `topology.datastoreRegion`: one of the regions, the first when absent. */
function readDatastoreRegion(p: Problems, v: unknown, regions: RegionTopology[]): string {
  const first = regions[0]?.name ?? '';
  if (v === undefined) return first;
  const names = regions.map((r) => r.name);
  if (typeof v !== 'string' || !names.includes(v)) {
    p.add(
      'topology.datastoreRegion',
      `must name a region (${names.map((n) => JSON.stringify(n)).join(', ')}), got ${JSON.stringify(v)}`,
    );
    return first;
  }
  return v;
}

/** The named profiles, plus a `default` with every default when the scenario names none so. */
function readProfiles(
  p: Problems,
  input: unknown,
  heartbeat: TopologyHeartbeat,
): Map<string, NodeProfile> {
  const profiles = new Map<string, NodeProfile>();
  for (const [name, v] of Object.entries(section(p, 'topology.profiles', input))) {
    const path = `topology.profiles.${name}`;
    if (!PROFILE_NAME.test(name)) {
      p.add(path, 'name must be 1-32 characters of a-z 0-9 . _ - starting with a letter');
    }
    profiles.set(name, profile(p, path, name, v, heartbeat));
  }
  if (!profiles.has('default')) {
    profiles.set('default', profile(p, 'topology.profiles.default', 'default', {}, heartbeat));
  }
  return profiles;
}

/** `topology.regions`, or the one region `local` of `topology.nodes`. */
function readRegions(
  p: Problems,
  topo: Record<string, unknown>,
  profiles: Map<string, NodeProfile>,
  defaultBalancer: Balancer,
): RegionTopology[] {
  if (topo.regions !== undefined && topo.nodes !== undefined) {
    p.add('topology.nodes', 'give either nodes (one region) or regions, not both');
  }
  if (topo.regions === undefined) {
    const nodes = num(p, 'topology.nodes', topo.nodes, topologyDefaults.nodes, NODES);
    const defaultProfile = profiles.get(regionDefaults.profile)!;
    return [{ name: 'local', nodes, profile: defaultProfile, balancer: defaultBalancer }];
  }
  if (!Array.isArray(topo.regions) || topo.regions.length === 0) {
    p.add('topology.regions', 'must be a non-empty list of {name, nodes}');
    return [];
  }
  const regions: RegionTopology[] = [];
  for (const [i, v] of topo.regions.entries()) {
    regions.push(region(p, i, v, regions, profiles, defaultBalancer));
  }
  return regions;
}

function region(
  p: Problems,
  i: number,
  v: unknown,
  earlier: RegionTopology[],
  profiles: Map<string, NodeProfile>,
  defaultBalancer: Balancer,
): RegionTopology {
  const path = `topology.regions[${i}]`;
  const r = section(p, path, v);
  checkKeys(p, path, r, regionDefaults);
  let name = `region${i + 1}`;
  if (typeof r.name !== 'string' || !REGION_NAME.test(r.name)) {
    p.add(`${path}.name`, 'must be 1-24 characters of a-z 0-9 - starting with a letter');
  } else if (earlier.some((x) => x.name === r.name)) {
    p.add(`${path}.name`, `duplicate region ${JSON.stringify(r.name)}`);
  } else {
    name = r.name;
  }
  const nodes = num(p, `${path}.nodes`, r.nodes, regionDefaults.nodes, NODES);
  let prof = profiles.get(regionDefaults.profile)!;
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
  const bal = balancer(p, `${path}.balancer`, r.balancer, defaultBalancer);
  return { name, nodes, profile: prof, balancer: bal };
}

function readRouting(p: Problems, v: unknown): Scenario['topology']['routing'] {
  const table = topologyDefaults.routing;
  if (v === undefined) return { mode: table.mode, health: tableRoutingHealth };
  const r = typeof v === 'string' ? { mode: v } : section(p, 'topology.routing', v);
  checkKeys(p, 'topology.routing', r, table);
  if (r.mode !== undefined && r.mode !== 'latency' && r.mode !== 'health') {
    p.add(
      typeof v === 'string' ? 'topology.routing' : 'topology.routing.mode',
      `must be latency or health, got ${JSON.stringify(r.mode)}`,
    );
  }
  return {
    mode: r.mode === 'health' ? 'health' : table.mode,
    health: healthCheck(p, 'topology.routing.health', r.health, tableRoutingHealth),
  };
}

function readRedis(
  p: Problems,
  v: unknown,
): { redisUrl: string | null; managedRedis: { appendonly: boolean } | null } {
  if (v === undefined) return { redisUrl: topologyDefaults.redis, managedRedis: null };
  if (v === 'managed' || v === 'managed:appendonly') {
    return { redisUrl: null, managedRedis: { appendonly: v === 'managed:appendonly' } };
  }
  if (typeof v !== 'string' || !/^rediss?:\/\//.test(v)) {
    p.add(
      'topology.redis',
      `must be a redis:// URL, "managed" or "managed:appendonly", got ${JSON.stringify(v)}`,
    );
    return { redisUrl: null, managedRedis: null };
  }
  return { redisUrl: v, managedRedis: null };
}

function healthCheck(p: Problems, path: string, v: unknown, fallback: HealthCheck): HealthCheck {
  const h = section(p, path, v);
  checkKeys(p, path, h, topologyDefaults.balancer.health);
  const count = { min: 1, integer: true, max: 100 };
  return {
    intervalMs: duration(p, `${path}.interval`, h.interval, fallback.intervalMs, 10),
    timeoutMs: duration(p, `${path}.timeout`, h.timeout, fallback.timeoutMs, 1),
    fall: num(p, `${path}.fall`, h.fall, fallback.fall, count),
    rise: num(p, `${path}.rise`, h.rise, fallback.rise, count),
  };
}

/** A balancer; what it omits comes from `fallback` (the table's, or `topology.balancer`). */
function balancer(p: Problems, path: string, v: unknown, fallback: Balancer): Balancer {
  if (v === undefined) return fallback;
  const b = typeof v === 'string' ? { algorithm: v } : section(p, path, v);
  checkKeys(p, path, b, topologyDefaults.balancer);
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
  const engine = oneOf(p, `${path}.engine`, b.engine, BALANCER_ENGINES, fallback.engine);
  const failOpen = flag(p, `${path}.failOpen`, b.failOpen, fallback.failOpen);
  if (failOpen && engine === 'haproxy') {
    p.add(
      `${path}.failOpen`,
      'HAProxy does not fail open (with no server up it answers 503): use engine "builtin" or "kernel"',
    );
  }
  const redispatch = flag(p, `${path}.redispatch`, b.redispatch, fallback.redispatch);
  if (redispatch && engine === 'kernel') {
    p.add(
      `${path}.redispatch`,
      'needs engine "haproxy" or "builtin": the kernel balancer (nft DNAT) forwards the SYN and cannot retry it, so a device whose node refuses is reset and reconnects',
    );
  }
  const maxConnecting =
    b.maxConnecting === undefined
      ? fallback.maxConnecting
      : b.maxConnecting === null
        ? null
        : num(p, `${path}.maxConnecting`, b.maxConnecting, REQUIRED, {
            min: 1,
            integer: true,
            max: 1_000_000,
          });
  const queueTimeoutMs =
    b.queueTimeout === undefined
      ? fallback.queueTimeoutMs
      : b.queueTimeout === null
        ? null
        : duration(p, `${path}.queueTimeout`, b.queueTimeout, REQUIRED, 1);
  if (maxConnecting !== null && engine !== 'builtin') {
    p.add(
      `${path}.maxConnecting`,
      engine === 'haproxy'
        ? 'needs engine "builtin": HAProxy caps a server\'s sessions (maxconn), which WebSockets hold for hours, not its connects in progress'
        : 'needs engine "builtin": the kernel balancer (nft DNAT) forwards each SYN as it comes and cannot queue it',
    );
  }
  return {
    algorithm,
    engine,
    slowStartMs: duration(p, `${path}.slowStart`, b.slowStart, fallback.slowStartMs),
    health:
      b.health === undefined
        ? fallback.health
        : healthCheck(p, `${path}.health`, b.health, fallback.health),
    failOpen,
    redispatch,
    maxConnecting,
    queueTimeoutMs,
  };
}

function profile(
  p: Problems,
  path: string,
  name: string,
  v: unknown,
  heartbeat: TopologyHeartbeat,
): NodeProfile {
  const o = section(p, path, v);
  checkKeys(p, path, o, profileDefaults);
  const memoryBytes = readMemory(p, `${path}.memory`, o.memory);
  /** A field that is off unless given. */
  const optional = (
    key: keyof typeof profileDefaults,
    rule: { min: number; integer?: boolean; max?: number },
  ) => (o[key] === undefined ? null : num(p, `${path}.${key}`, o[key], REQUIRED, rule));
  const optionalMs = (key: keyof typeof profileDefaults, minMs: number) =>
    o[key] === undefined ? null : duration(p, `${path}.${key}`, o[key], REQUIRED, minMs);
  const overload = readOverload(p, `${path}.overload`, o.overload);
  return {
    name,
    // A percentage is resolved per region once the devices are known (schema.ts).
    ...capacityOf(p, `${path}.capacity`, o.capacity),
    overload,
    ...profileHeartbeat(p, path, o, heartbeat),
    drainWindowMs: duration(p, `${path}.drainWindow`, o.drainWindow, profileDefaults.drainWindow),
    maxLifetimeMs: optionalMs('maxLifetime', 100),
    admissionRateHz: optional('admissionRate', { min: 0.001 }),
    d2dCacheTtlMs: optionalMs('d2dCacheTtl', 0),
    cpu: optional('cpu', { min: 0.01, max: 1024 }),
    memoryBytes,
    conntrack: optional('conntrack', { min: 0, integer: true }),
    openFiles: optional('openFiles', { min: 64, integer: true }),
    processes: optional('processes', { min: 1, integer: true, max: 256 }),
    price: optional('price', { min: 0 }),
  };
}

/** `capacity`: a count, or a percentage held until the devices are known. */
function capacityOf(
  p: Problems,
  path: string,
  v: unknown,
): { capacity: number | null; capacityPercent: number | null } {
  if (v === undefined) return { capacity: null, capacityPercent: null };
  const { count, percent } = countOrPercent(p, path, v, undefined, 0, { min: 1, integer: true });
  return percent === null
    ? { capacity: count, capacityPercent: null }
    : { capacity: null, capacityPercent: percent };
}

/** `topology.heartbeatInterval` and `.heartbeatTimeout`, and whether the timeout was given. */
interface TopologyHeartbeat {
  intervalMs: number;
  timeoutMs: number;
  timeoutGiven: boolean;
}

/**
 * A profile's heartbeat: its own fields, else the topology's. A profile that
 * sets only its interval gets the default timeout for that interval unless
 * `topology.heartbeatTimeout` was given. A timeout no longer than the interval
 * is refused (core/ws/heartbeat.ts); the topology's own pair is checked once,
 * by {@link validateTopology}.
 */
function profileHeartbeat(
  p: Problems,
  path: string,
  o: Record<string, unknown>,
  heartbeat: TopologyHeartbeat,
): Pick<NodeProfile, 'heartbeatIntervalMs' | 'heartbeatTimeoutMs'> {
  const intervalMs = duration(
    p,
    `${path}.heartbeatInterval`,
    o.heartbeatInterval,
    heartbeat.intervalMs,
    10,
  );
  const inherited = heartbeat.timeoutGiven
    ? heartbeat.timeoutMs
    : defaultHeartbeatTimeoutMs(intervalMs);
  const timeoutMs = duration(p, `${path}.heartbeatTimeout`, o.heartbeatTimeout, inherited, 10);
  const own = o.heartbeatInterval !== undefined || o.heartbeatTimeout !== undefined;
  const problem = own ? heartbeatTimeoutProblem(intervalMs, timeoutMs) : null;
  if (problem) p.add(`${path}.heartbeatTimeout`, problem);
  return { heartbeatIntervalMs: intervalMs, heartbeatTimeoutMs: timeoutMs };
}

function readMemory(p: Problems, path: string, v: unknown): number | null {
  if (v === undefined) return profileDefaults.memory;
  try {
    const bytes = parseBytes(v as string | number, path);
    if (bytes < 16 * 2 ** 20) p.add(path, `must be at least 16MiB, got ${JSON.stringify(v)}`);
    return bytes;
  } catch {
    p.add(path, `must be a size like "256MiB" or a number of bytes, got ${JSON.stringify(v)}`);
    return null;
  }
}

function readOverload(p: Problems, path: string, v: unknown): OverloadBehaviour {
  if (v === undefined) return profileDefaults.overload;
  if (v === 'refuse' || v === 'unhealthy' || v === 'crash') return v;
  p.add(path, `must be refuse, unhealthy or crash, got ${JSON.stringify(v)}`);
  return profileDefaults.overload;
}

/**
 * `topology.tls` and `topology.tlsTickets`. TLS at the balancer is HAProxy's
 * (`bind … ssl`): the builtin and kernel balancers pass bytes through, so
 * with them TLS ends at the node.
 */
function readTls(
  p: Problems,
  topo: TopologyInput,
  regions: RegionTopology[],
): Scenario['topology']['tls'] {
  const at = oneOf<TlsMode>(p, 'topology.tls', topo.tls, TLS_MODES, topologyDefaults.tls);
  const tickets = oneOf<TlsTickets>(
    p,
    'topology.tlsTickets',
    topo.tlsTickets,
    TLS_TICKETS,
    topologyDefaults.tlsTickets,
  );
  const key = oneOf<'ec-p256' | 'rsa-2048'>(
    p,
    'topology.tlsKey',
    topo.tlsKey,
    ['ec-p256', 'rsa-2048'],
    topologyDefaults.tlsKey,
  );
  const certificate =
    topo.tlsCertificate === undefined ? undefined : readCertificate(p, topo.tlsCertificate);
  if (at === 'off') return null;
  if (at === 'balancer') {
    const other = regions.find((r) => r.balancer.engine !== 'haproxy');
    if (other) {
      p.add(
        'topology.tls',
        `"balancer" is TLS ended by HAProxy: region ${other.name} has balancer.engine "${other.balancer.engine}" (set it to "haproxy", or use "node": the builtin and kernel balancers pass TLS through to the nodes)`,
      );
    }
  }
  return { at, tickets, key, ...(certificate && { certificate }) };
}

/** The fields of `topology.tlsCertificate`. */
const certificateFields = { cert: REQUIRED, key: REQUIRED, ca: OFF, servername: REQUIRED };

/** A host name as SNI carries it (RFC 6066: a DNS name, never an address). */
const SNI_NAME =
  /^(?=.{1,253}$)(?!\d+\.\d+\.\d+\.\d+$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * `topology.tlsCertificate`: the user's certificate chain and key (PEM
 * files; read when the run starts), the CA devices trust (default Node's
 * bundled public CAs) and the name they ask for.
 */
function readCertificate(
  p: Problems,
  v: unknown,
): NonNullable<Scenario['topology']['tls']>['certificate'] {
  const path = 'topology.tlsCertificate';
  const c = section(p, path, v);
  checkKeys(p, path, c, certificateFields);
  const file = (field: string, required: boolean): string | undefined => {
    const x = c[field];
    if (x === undefined) {
      if (required) p.add(`${path}.${field}`, 'is required');
      return undefined;
    }
    if (typeof x !== 'string' || x === '') {
      p.add(`${path}.${field}`, `must be a file path, got ${JSON.stringify(x)}`);
      return undefined;
    }
    return x;
  };
  const certFile = file('cert', true);
  const keyFile = file('key', true);
  const caFile = file('ca', false);
  const servername = c.servername;
  if (typeof servername !== 'string' || !SNI_NAME.test(servername)) {
    p.add(
      `${path}.servername`,
      servername === undefined
        ? 'is required: the name devices ask for (SNI) and check the certificate against'
        : `must be a DNS name, got ${JSON.stringify(servername)}`,
    );
  }
  if (certFile === undefined || keyFile === undefined || typeof servername !== 'string') {
    return undefined;
  }
  return { certFile, keyFile, ...(caFile !== undefined && { caFile }), servername };
}

/** One of `allowed`, or `fallback` when absent; anything else is a problem at `path`. */
function oneOf<T extends string>(
  p: Problems,
  path: string,
  v: unknown,
  allowed: readonly T[],
  fallback: T,
): T {
  if (v === undefined) return fallback;
  if ((allowed as readonly unknown[]).includes(v)) return v as T;
  p.add(path, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return fallback;
}
