/**
 * The network fabric's vocabulary: what a network is made of (regions, their
 * balancers and backends, the optional global entry), the faults that can be
 * put on its links, and what a sample of it reports. Every duration is in
 * milliseconds unless the name says otherwise (`synRetriesS` is in seconds).
 */

/** How a region balancer picks a backend for a new connection. */
export type BalancerAlgorithm = 'round-robin' | 'least-connections' | 'random' | 'power-of-two';

/** Every balancer algorithm, in a fixed order (for validation and help text). */
export const BALANCER_ALGORITHMS: readonly BalancerAlgorithm[] = [
  'round-robin',
  'least-connections',
  'random',
  'power-of-two',
];

/** An active HTTP `GET /healthz` check: `fall` failures in a row take a target out, `rise` successes put it back. */
export interface HealthCheckSpec {
  /** Time between two checks of one target. */
  intervalMs: number;
  /** A check with no 200 answer within this time is a failure. */
  timeoutMs: number;
  /** Consecutive failures that take a healthy target out of rotation. */
  fall: number;
  /** Consecutive successes that put an unhealthy target back. */
  rise: number;
}

/** One reference node as a balancer sees it: WebSocket `/ws` and HTTP `/healthz` on host:port. */
export interface BackendSpec {
  /** Unique across the whole network; fault scopes name it. */
  nodeId: string;
  host: string;
  port: number;
  /** Its process, when the run started it on this machine: a health check that times out while it starved for a CPU counts neither way (health.ts). */
  pid?: number;
}

/** One region: an L4 TCP balancer in front of its nodes. */
export interface RegionSpec {
  /** Unique across the network; fault scopes and `homeByAddress` name it. */
  name: string;
  algorithm: BalancerAlgorithm;
  /** A backend added after start ramps its weight linearly 0 -> 1 over this time; 0 = no ramp. */
  slowStartMs: number;
  health: HealthCheckSpec;
  /** With every backend failing its checks, balance over all of them instead of refusing. */
  failOpen?: boolean;
  /**
   * A connect its node refuses (or fails before it is up) is retried on another
   * node in rotation, one not tried yet, up to {@link REDISPATCHES} times; then
   * the device is reset. Without it the device is reset at the first refusal.
   */
  redispatch?: boolean;
  /**
   * Connects a node may have unanswered (handed to it, its first bytes not yet
   * back); past them devices wait at the balancer in arrival order, and one
   * that gives up there is dropped unseen by the node. In relay mode each relay
   * keeps its own count. Absent: no cap.
   */
  maxConnecting?: number;
  /** With `maxConnecting`: a device that waits longer than this for a connect slot is reset (ms). Absent: it waits until it gives up. */
  queueTimeoutMs?: number;
  backends: BackendSpec[];
}

/** Other nodes a redispatching balancer tries after the first refuses (HAProxy's `retries 3` with `option redispatch 1`). */
export const REDISPATCHES = 3;

/** A region the global entry routes to whose balancer is not in this network. */
export interface ExternalRegionSpec {
  name: string;
  host: string;
  port: number;
  /** It ends TLS (HAProxy with `topology.tls: "balancer"`): its checks go over TLS too. */
  tls?: boolean;
}

/** Everything the network process needs to start. */
export interface NetworkSpec {
  /** Listen host for every balancer and the global entry, e.g. `127.0.0.1`. */
  host: string;
  /** Seed of every random choice (balancing, jitter), so a run replays. */
  seed: number;
  regions: RegionSpec[];
  /** The optional global entry in front of the regions. */
  global?: {
    /** `latency`: always the home region. `health`: home if healthy, else the next healthy region in spec order. */
    mode: 'latency' | 'health';
    /** How the global entry checks each region (through one of its in-rotation backends). */
    health: HealthCheckSpec;
    /** Device source address -> home region; unknown addresses go to the first region. */
    homeByAddress: Record<string, string>;
    /**
     * Regions balanced outside this network (relay mode only: the kernel
     * engine's HAProxy or DNAT balancers), reached at their balancer's address;
     * the entry checks them with `GET /healthz` through that balancer.
     */
    external?: ExternalRegionSpec[];
    /** Every region's name in failover order; default: `regions`, then `external`. */
    order?: string[];
  };
  /**
   * When a connection held by a full conntrack table is re-checked, in seconds
   * after its arrival. Default {@link DEFAULT_SYN_RETRIES_S}.
   */
  synRetriesS?: number[];
  /**
   * Relay mode (relays.ts): `count` relay processes accept and carry the
   * devices, each holding up to (`openFiles` − 200) / 2; the network process
   * only picks a node for each. Unset: the network relays every byte itself.
   */
  relays?: {
    count: number;
    openFiles: number | null;
    /**
     * Addresses the relays open their connections to nodes from, in turn (one
     * address's ephemeral ports run out near 28,000, fewer per destination);
     * empty: the host's own.
     */
    sourceAddresses?: string[];
  };
}

/**
 * The SYN retransmission offsets of recent Linux kernels (1 s linear for the
 * first retries, then exponential), in seconds after the first SYN.
 */
export const DEFAULT_SYN_RETRIES_S: readonly number[] = [1, 2, 3, 4, 5, 7, 11, 19, 35, 67];

/** What a fault applies to: every backend link of a region (also ones added later), or one node's. */
export type FaultScope = { region: string } | { nodeId: string };

/** A fault on the links between a balancer and its nodes, or on admission to them. */
export type NetworkFault =
  /** Each chunk, both directions, is delayed by `delayMs ± uniform(jitterMs)`; order is kept. */
  (
    | { kind: 'latency'; scope: FaultScope; delayMs: number; jitterMs: number }
    /** Nothing passes either way, closes included; sockets stay open. */
    | { kind: 'blackhole'; scope: FaultScope }
    /** Instantaneous: every current connection in scope is reset (RST on both sides). */
    | { kind: 'reset'; scope: FaultScope }
    /** Each node in scope keeps at most `table` proxied connections; new ones over it get no answer. */
    | { kind: 'conntrack-limit'; scope: FaultScope; table: number }
    /** A token bucket on new connections (region: all of its traffic; node: those assigned to it); over it, reset. */
    | { kind: 'admission-rate'; scope: FaultScope; ratePerSec: number; burst: number }
    /** Each node's link in scope is capped at this rate, both directions (the kernel engine only). */
    | { kind: 'bandwidth'; scope: FaultScope; bitsPerSec: number }
    /**
     * Each node in scope and what it is cut from drop each other's packets (the
     * kernel engine only): the shared datastore (hub or Redis), the other nodes of
     * its region, or every node of another region, and the datastore too when one
     * side is the region holding it.
     */
    | {
        kind: 'partition';
        scope: FaultScope;
        from: { kind: 'datastore' } | { kind: 'peers' } | { kind: 'region'; region: string };
      }
  ) & {
    /**
     * Part of the topology, not an injected fault (a profile's conntrack table):
     * `clearScope` (a timeline `heal`) leaves it in place.
     */
    standing?: boolean;
  };

/** The kinds of {@link NetworkFault}. */
export type NetworkFaultKind = NetworkFault['kind'];

/** One backend at the moment of a sample. */
export interface BackendSample {
  nodeId: string;
  region: string;
  /** Established proxied connections (= its conntrack entries). */
  connections: number;
  /** Connections assigned to it since it was added. */
  accepted: number;
  /** Passed its health checks (false while its first check is pending). */
  healthy: boolean;
  /** Healthy and not removed: new connections may go to it. */
  inRotation: boolean;
  /** Slow-start weight in [0, 1]. */
  weight: number;
  /** Connections waiting for a conntrack entry (no answer yet). */
  conntrackHeld: number;
  /** Held connections dropped after the last SYN retry, since start. */
  conntrackTimedOut: number;
  /** Wall-clock time (`Date.now()`) its health last changed; null = never. */
  healthChangedAtMs: number | null;
  /** Health checks since start that timed out while the node starved for a CPU, counted neither way (health.ts). */
  checksStarved: number;
  /** HAProxy: connects to it that failed and were retried (`wretr`), since start. */
  retries?: number;
  /** Connects that failed on it and went to another node, since start (HAProxy: `wredis`); absent without redispatch. */
  redispatches?: number;
  /** Devices that left while they waited at the balancer for one of its connect slots, since start; absent without `maxConnecting`. */
  queueAbandoned?: number;
  /** Devices reset after waiting `queueTimeoutMs` for one of its connect slots, since start; absent without `maxConnecting`. */
  queueTimedOut?: number;
}

/** A cheap picture of the network, taken once per second. Counters are totals since start. */
export interface NetworkSample {
  /** Wall-clock time of the sample (`Date.now()`). */
  atMs: number;
  backends: BackendSample[];
  regions: Record<
    string,
    {
      /** Established proxied connections through this region. */
      connections: number;
      /** Connections closed at once because no backend was in rotation. */
      noBackend: number;
      /** Connections reset by an admission-rate fault. */
      admissionRejected: number;
      /** Connections dropped by reset faults. */
      resets: number;
    }
  >;
  global?: {
    /** home region -> region actually used -> connections routed. */
    routed: Record<string, Record<string, number>>;
    /** The global entry's view of each region's health. */
    healthy: Record<string, boolean>;
  };
}

/** Where each listener of a network accepts connections. */
export interface NetworkAddresses {
  regions: Record<string, { host: string; port: number }>;
  global?: { host: string; port: number };
}

/** Options of `addBackend`. */
export interface AddBackendOptions {
  /** Put it in rotation now instead of after its first successful health check. */
  assumeHealthy?: boolean;
}
