/**
 * The scenario's shape, twice: as its author writes it (`…Input`, every field
 * optional but a few, durations as `"20s"`) and as a run receives it after
 * validation (`Scenario`: every default filled, durations in ms, "off" as null).
 *
 * This module declares types and the name lists their unions are made of, and
 * imports nothing, so every other module (validator sections, define.ts, the
 * run) can depend on it without depending on each other. The keys a scenario
 * may write are not listed a third time: each section's defaults table
 * (scenarios/sections/) has one entry per input field, checked against these
 * types at compile time, and the validator accepts exactly the table's keys.
 */

/** A duration as written in a scenario: `"20s"`, `"500ms"`, or a number of milliseconds. */
export type DurationInput = string | number;

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
/** One of {@link RECONNECT_POLICIES}. */
export type ReconnectPolicyName = (typeof RECONNECT_POLICIES)[number];

/** Load-balancer algorithms of a region's L4 balancer. */
export const BALANCER_ALGORITHMS = [
  'round-robin',
  'least-connections',
  'random',
  'power-of-two',
] as const;
/** One of {@link BALANCER_ALGORITHMS}. */
export type BalancerAlgorithmName = (typeof BALANCER_ALGORITHMS)[number];

/** Timeline actions, in the order docs/scenarios.md and error messages list them. */
export const TIMELINE_ACTIONS = [
  'kill-node',
  'restart-node',
  'stop-node',
  'scale-up',
  'scale-down',
  'latency',
  'blackhole',
  'heal',
  'reset',
  'conntrack-limit',
  'admission-rate',
  'bandwidth',
  'partition',
  'datastore-latency',
  'datastore-down',
  'datastore-restart',
  'connect',
] as const;
/**
 * The connections a `datastore-latency` can slow: the registry's (lookups and
 * registrations), the broker's (queue, rooms and node-to-node forwards), or both.
 */
export const DATASTORE_LINKS = ['both', 'registry', 'broker'] as const;
/** One of {@link DATASTORE_LINKS}. */
export type DatastoreLinkName = (typeof DATASTORE_LINKS)[number];

/** One of {@link TIMELINE_ACTIONS}. */
export type TimelineActionName = (typeof TIMELINE_ACTIONS)[number];

/**
 * What a `partition` cuts the nodes in scope from: the shared datastore (the
 * hub or Redis); the other nodes of their own region (their peer links); or
 * every node of another region, and the datastore with it when that region
 * holds it (the first region does).
 */
export type PartitionPeer =
  | { kind: 'datastore' }
  | { kind: 'peers' }
  | { kind: 'region'; region: string };

/** What a node does over its connection capacity. */
export type OverloadBehaviour = 'refuse' | 'unhealthy' | 'crash';

/** How the global entry picks a region. */
export type RoutingMode = 'latency' | 'health';

// ---------------------------------------------------------------------------
// As written

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

/** What carries the devices' bytes and plays the network faults (docs/network.md). */
export type NetworkEngineName = 'userland' | 'kernel' | 'auto';
/** What balances a region: pushbench's own balancer, a real HAProxy, or the kernel (nft DNAT). */
export type BalancerEngineName = 'builtin' | 'haproxy' | 'kernel';
export const NETWORK_ENGINES: readonly NetworkEngineName[] = ['userland', 'kernel', 'auto'];
export const BALANCER_ENGINES: readonly BalancerEngineName[] = ['builtin', 'haproxy', 'kernel'];

/** A region's L4 balancer as written in a scenario. */
export interface BalancerInput {
  /** Default `round-robin`. */
  algorithm?: BalancerAlgorithmName;
  /** Default `builtin`; `haproxy` and `kernel` need `topology.network` `kernel`. */
  engine?: BalancerEngineName;
  /** A node that joins ramps its share of new connections from 0 to full over this. Default 0 (off). */
  slowStart?: DurationInput;
  health?: HealthCheckInput;
  /**
   * With every node failing its health checks, keep balancing over all of them
   * (an AWS load balancer "fails open") instead of refusing every connection.
   * Builtin and kernel engines; HAProxy does not (it answers 503). Default false.
   */
  failOpen?: boolean | string;
  /**
   * A connection whose node refuses it is retried on another node, so a herd
   * sent to a dead node its checks have not yet caught still lands. HAProxy:
   * `retries 3`, `option redispatch 1` (a connect that does not answer in the
   * health timeout is retried too). builtin: up to 3 other nodes not tried yet,
   * the node connected before a byte is relayed. Not the kernel engine (nft
   * DNAT cannot retry a SYN). Default false: HAProxy retries 3 times on the
   * same node, then closes; builtin resets at the first refusal.
   */
  redispatch?: boolean;
  /**
   * Connects a node may have in progress (handed to it, its upgrade not yet
   * answered); past them new devices wait at the balancer in arrival order, as
   * HAProxy's per-server `maxconn` queues, and one that gives up while it waits
   * is dropped there, never carried to the node. Keeps a herd's abandoned
   * connects off a node's accept queue. Builtin engine only. Default `null`:
   * no cap.
   */
  maxConnecting?: number | null;
  /**
   * With `maxConnecting`: a device that waits longer than this at the balancer
   * for a connect slot is reset (it backs off and reconnects), as HAProxy's
   * `timeout queue`. Under a herd that outruns the nodes, a queue served in
   * arrival order otherwise hands each node devices that have waited nearly
   * their whole connect timeout and give up before their upgrade returns.
   * Default `null`: a device waits until it gives up (on this box a 2 s queue
   * timeout made node-kill's herd worse; bench/RESULTS.md).
   */
  queueTimeout?: string | number | null;
}

/** A node profile as written in a scenario. */
export interface NodeProfileInput {
  /**
   * Connections a node holds. Default unlimited. A percentage (`"125%"`) is of the
   * node's even share of its region's initial devices (`devices.count` split by
   * `devices.regions`, over the region's `nodes`), so the scenario keeps its shape at
   * any `--devices`.
   */
  capacity?: number | `${number}%`;
  /** Over capacity: `refuse` upgrades (503, the default), turn `unhealthy` (health checks fail, still accepts), or `crash` (the process exits). */
  overload?: OverloadBehaviour;
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
  /** How long a node caches a d2d target lookup; `0` asks the registry for every message. Default the node's (5 s). */
  d2dCacheTtl?: DurationInput;
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

/** Global routing between regions as written in a scenario (object form). */
export interface RoutingInput {
  mode?: RoutingMode;
  health?: HealthCheckInput;
}

/** What the devices connect to, as written in a scenario. */
export interface TopologyInput {
  /** Shorthand for one region named `local` with this many nodes. Default 1. */
  nodes?: number;
  /** Regions, each with its nodes and balancer. Devices connect to their home region. */
  regions?: RegionInput[];
  /** Balancer of every region unless the region says otherwise. */
  balancer?: BalancerInput | BalancerAlgorithmName;
  /** Named node profiles; `default` is used when a region names none. */
  profiles?: Record<string, NodeProfileInput>;
  /** With several regions: `latency` (the global entry sends devices to their home region, whatever its health) or `health` (fails over when health checks fail). Default `latency`. */
  routing?: RoutingMode | RoutingInput;
  /**
   * Share the registry and broker through Redis instead of the embedded hub: a
   * `redis://` URL, or `"managed"` (pushbench starts and owns a redis-server on a
   * free port; the timeline's datastore actions may kill and restart it), or
   * `"managed:appendonly"` (the same, persisting to an append-only file).
   */
  redis?: string;
  /** `userland` (default): one fabric process carries every byte; `kernel`: nodes are hosts (namespaces, veth) and the kernel plays faults; `auto`: kernel where this machine and the scenario allow it. */
  network?: NetworkEngineName;
  /** `"node"`: devices connect over TLS (`wss://`) and the nodes terminate it; `"balancer"`: each region's HAProxy does; `"off"` (default): plain. */
  tls?: TlsMode;
  /** With TLS, whether a region's nodes share session-ticket keys (`"shared"`, default) or each has its own (`"per-node"`). */
  tlsTickets?: TlsTickets;
  /** With TLS, the run certificate's key: `"ec-p256"` (default) or `"rsa-2048"`. */
  tlsKey?: 'ec-p256' | 'rsa-2048';
  /** With TLS, the user's certificate instead of the run's own: PEM files, the CA devices trust, the SNI name. */
  tlsCertificate?: { cert: string; key: string; ca?: string; servername: string };
  /** Heartbeat ping period of the nodes. Default `10s`. */
  heartbeatInterval?: DurationInput;
  /** Silence after which a node closes a connection. Default `30s`. */
  heartbeatTimeout?: DurationInput;
  /**
   * Niceness (0-19) of the node and hub processes the run starts on this machine.
   * Default 10: behind the load generator on a shared box, so the generator's
   * clock stays true and the nodes get the CPU it leaves. 0: level with it.
   */
  nodeNice?: number;
  /**
   * Nodes send each other's requests (forwarded pushes, device-to-device,
   * replacements) straight to the holding process's peer port. false: through
   * the broker (the hub or Redis), as before peer links. Default true.
   */
  peerLinks?: boolean | string;
  /**
   * The region that holds the nodes' shared datastore (the hub or Redis): a
   * partition across regions cuts it from the other side. Default: the first region.
   */
  datastoreRegion?: string;
}

/** Where devices' TLS ends: nowhere (plain `ws://`), at the nodes, or at the regions' HAProxy. */
export type TlsMode = 'off' | 'node' | 'balancer';
export const TLS_MODES: readonly TlsMode[] = ['off', 'node', 'balancer'];
/** Whether nodes share session-ticket keys, so a device resumes its session on any of them. */
export type TlsTickets = 'shared' | 'per-node';
export const TLS_TICKETS: readonly TlsTickets[] = ['shared', 'per-node'];

/** A reconnect policy as written in a scenario (object form). */
export interface ReconnectInput {
  policy: ReconnectPolicyName;
  base?: DurationInput;
  cap?: DurationInput;
  maxAttempts?: number;
}

/** Reconnecting on purpose, as written in a scenario. */
export interface PeriodicReconnectInput {
  every: DurationInput;
  stagger?: DurationInput;
}

/** The simulated device fleet as written in a scenario. */
export interface DevicesInput {
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
  reconnect?: string | ReconnectInput;
  /** Reconnect on purpose every `every` minus up to `stagger` (Pushy: 30 min). Default off. */
  periodicReconnect?: PeriodicReconnectInput;
  /** Drop a connection that hears nothing, not even a ping, for this long. Default off. */
  heartbeatTimeout?: DurationInput;
  /**
   * Record `register`: attempt due until the node says the device's registry entry is
   * written (`?registered=1`), the client registration Pushy's article follows. Default false.
   */
  registration?: boolean;
  /** With `topology.tls`, devices keep their session ticket and resume on reconnect. Default true. */
  tlsResume?: boolean;
}

/** One flow of messages as written in a scenario. */
export interface FlowInput {
  /** Messages per second, open-loop, evenly spaced. */
  rate?: number;
  /** Padding added to each payload, bytes. Default 64. */
  payloadBytes?: number;
}

/** Rooms as written in a scenario. */
export interface RoomsInput extends FlowInput {
  /** Rooms `r0` … Default 0. */
  count?: number;
  /** Rooms each device joins. Default 1 when `count` is given, else 0. */
  perDevice?: number;
}

/** What services and devices send, as written in a scenario. */
export interface TrafficInput {
  /** Direct pushes (`POST /v1/push/{device}`) to random connected devices. Default rate 100. */
  direct?: FlowInput;
  /** Indirect pushes through the node's queue (`POST /v1/queue`). Default rate 0. */
  indirect?: FlowInput;
  /** Device-to-device messages over device sockets. Default rate 0. */
  d2d?: FlowInput;
  /** Rooms: every device joins `perDevice` of `count` rooms; `rate` messages/s published by `PUT`. Default off. */
  rooms?: RoomsInput;
}

/** A fault's target: a region (its balancer and every link to its nodes) or one node. */
export interface ScopeInput {
  region?: string;
  node?: string;
}

/** One timeline action as written in a scenario (docs/scenarios.md lists each action's fields). */
export interface TimelineActionInput extends ScopeInput {
  /** When, from `after`, e.g. `"15s"`. */
  at: DurationInput;
  /**
   * What `at` counts from: `"start"` (default), the moment the fleet starts
   * connecting; `"ramp"`, the moment the initial ramp resolved and publishing
   * began, so the action meets the whole fleet at any `devices.count`.
   */
  after?: TimelineAnchor;
  action: TimelineActionName;
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
  /** admission-rate: new connections per second; connect: connect rate (a percentage, `"100%"`, is of `devices.connectRate`). */
  rate?: number | `${number}%`;
  /** admission-rate: bucket size. Default = rate. */
  burst?: number;
  /** connect: devices to open; a percentage (`"100%"`) is of `devices.count`. */
  devices?: number | `${number}%`;
  /** bandwidth: the cap on each node's link in scope, both directions: `"10mbit"`, `"512kbit"`, `"1gbit"`, or bits per second. */
  bandwidth?: string | number;
  /** partition: what the nodes in scope are cut from. `"datastore"`: the hub or Redis that holds the shared registry and broker; `"peers"`: the other nodes of their region; a region's name: that region's nodes (and the datastore, when that region holds it). */
  from?: string;
  /** datastore-restart: what the Redis comes back with, `"empty"` (default) or `"kept"` (needs `topology.redis: "managed:appendonly"`). */
  data?: string;
  /** datastore-latency: `"registry"`, `"broker"` or `"both"` (default) of the node's datastore connections. */
  link?: string;
}

/**
 * Where the fleet lives, as written in a scenario. By default one process
 * unless RLIMIT_NOFILE requires more; source addresses spread over 127.1.x.y
 * when one address would run out of ephemeral ports.
 */
export interface PlacementInput {
  /** Never more devices than this in one load-generator process (forces several processes). */
  devicesPerProcess?: number;
  /** Source addresses to spread devices over instead of 127.1.0.1, 127.1.0.2, ... */
  sourceAddresses?: string[];
}

/**
 * A scenario as its author writes it (in TypeScript via `defineScenario`, or JSON).
 * Every field but `name`, `devices.count` and `duration` has a default, listed in docs/scenarios.md.
 */
export interface ScenarioInput {
  /** Short name, used in the results folder name. */
  name: string;
  /** One line saying what the scenario shows. */
  description?: string;
  /** What the devices connect to. */
  topology?: TopologyInput;
  /** The simulated device fleet. */
  devices: DevicesInput;
  /** What services and devices send. */
  traffic?: TrafficInput;
  /** Actions at times: faults, scaling, more devices. */
  timeline?: TimelineActionInput[];
  /** How long the publishers run once the fleet is connected. */
  duration: DurationInput;
  /** How long after the last send a message may still arrive and count as delivered. Default `5s`. */
  deliveryDeadline?: DurationInput;
  /** Device worker threads. Default: half the cores, at least one (the run's nodes share them); with TLS one per core. */
  workers?: number;
  /** Where the fleet lives. */
  placement?: PlacementInput;
  /** Gate expressions, e.g. `delivery >= 99.9%`, `p99(push) < 50ms`. */
  gates?: string[];
  /** Seed for every random choice in the run. Default 1. */
  seed?: number;
}

// ---------------------------------------------------------------------------
// As validated

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
  /** Connections a node holds; null = unlimited. Resolved per region when given as a percentage. */
  capacity: number | null;
  /** The percentage it was given as (`125` for `"125%"`), or null for a count. */
  capacityPercent: number | null;
  /** Over capacity: refuse upgrades (503), fail `/healthz` but keep accepting, or crash. */
  overload: OverloadBehaviour;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** A graceful drain spreads goaways over this window. */
  drainWindowMs: number;
  /** Connection lifetime before a server goaway; null = the node's default (30 min). */
  maxLifetimeMs: number | null;
  /** Upgrades per second a node admits; null = unlimited. */
  admissionRateHz: number | null;
  /** d2d target cache TTL; 0 = off; null = the node's default (5 s). */
  d2dCacheTtlMs: number | null;
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

/** A region's balancer: how it picks a node, how a new node ramps up, and its health checks. */
export interface Balancer {
  algorithm: BalancerAlgorithmName;
  engine: BalancerEngineName;
  slowStartMs: number;
  health: HealthCheck;
  /** With every node failing its checks, balance over all of them (as an AWS load balancer does) instead of refusing. */
  failOpen: boolean;
  /** Retry a refused connect on another node (HAProxy `option redispatch 1`; builtin). */
  redispatch: boolean;
  /** Connects a node may have in progress before devices wait at the balancer (builtin); null = no cap. */
  maxConnecting: number | null;
  /** With maxConnecting: how long a device may wait for a connect slot before it is reset; null = until it gives up. */
  queueTimeoutMs: number | null;
}

/** One region: its nodes and the balancer in front of them. */
export interface RegionTopology {
  name: string;
  nodes: number;
  profile: NodeProfile;
  balancer: Balancer;
}

/** Who a timeline fault applies to. */
export type FaultScope = { region: string } | { nodeId: string };

/** What a timeline action's `at` counts from (see {@link TimelineActionInput.after}). */
export const TIMELINE_ANCHORS = ['start', 'ramp'] as const;
export type TimelineAnchor = (typeof TIMELINE_ANCHORS)[number];

/**
 * One action on the run's timeline; `atMs` counts from the moment the fleet
 * starts connecting, or with `after: "ramp"` from the moment publishing began.
 */
export type TimelineAction = { atMs: number; after?: 'ramp'; label: string } & (
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
  | { action: 'bandwidth'; scope: FaultScope; bitsPerSec: number; forMs: number | null }
  | { action: 'partition'; scope: FaultScope; from: PartitionPeer; forMs: number | null }
  | {
      action: 'datastore-latency';
      /** One node's link; null: every node's (nodes added later too). */
      nodeId: string | null;
      /** Which of the node's datastore connections: the registry's, the broker's, or both. */
      link: DatastoreLinkName;
      delayMs: number;
      jitterMs: number;
      forMs: number | null;
    }
  | { action: 'datastore-down' }
  | { action: 'datastore-restart'; data: 'empty' | 'kept' }
  | { action: 'connect'; devices: number; rateHz: number }
);

/** A contiguous block of global device indices homed in one region. */
export interface DeviceBlock {
  region: string;
  first: number;
  count: number;
}

/** One flow of messages after validation. */
export interface Flow {
  rateHz: number;
  payloadBytes: number;
}

/** A validated scenario with every default filled and every duration in milliseconds. */
export interface Scenario {
  name: string;
  description: string;
  topology: {
    regions: RegionTopology[];
    /** With several regions, how the global entry picks one: by network distance only, or with health checks. */
    routing: { mode: RoutingMode; health: HealthCheck };
    /** Nodes share a registry and broker through this Redis; null = the embedded hub, or a managed Redis. */
    redisUrl: string | null;
    /** A redis-server pushbench starts and owns (`topology.redis: "managed"`); null: none. */
    managedRedis: { appendonly: boolean } | null;
    /** Devices reach nodes through the network fabric (balancers, fault links), not directly. */
    balanced: boolean;
    /** Niceness of the node and hub processes the run starts here (`topology.nodeNice`). */
    nodeNice: number;
    /** Node-to-node requests over direct peer links (`topology.peerLinks`); false: through the broker. */
    peerLinks: boolean;
    /** The region that holds the hub or Redis (`topology.datastoreRegion`; default the first). */
    datastoreRegion: string;
    /** The network engine asked for; `auto` is resolved when the run starts (run/network-engine.ts). */
    network: NetworkEngineName;
    /** Devices over TLS to the nodes or to the regions' HAProxy, with shared or per-process ticket keys; null: plain. */
    tls: {
      at: 'node' | 'balancer';
      tickets: TlsTickets;
      key: 'ec-p256' | 'rsa-2048';
      /** The user's certificate (files), else undefined: the run makes its own. */
      certificate?: { certFile: string; keyFile: string; caFile?: string; servername: string };
    } | null;
  };
  devices: {
    /** Devices that connect at the start. */
    count: number;
    connectRateHz: number;
    connectTimeoutMs: number;
    accounts: number;
    /**
     * Home region of each contiguous block of global device indices: the
     * initial devices split by share with the regions taking turns block by
     * block (scenarios/sections/devices.ts interleaveByShare), then the
     * `connect` actions' devices (indices from `count` on) split the same way.
     */
    regions: DeviceBlock[];
    reconnect: ReconnectPolicy;
    /** Devices reconnect on their own every `everyMs` minus up to `staggerMs`; null = never. */
    periodicReconnect: { everyMs: number; staggerMs: number } | null;
    /** A device that hears nothing (not even a ping) for this long drops the connection; null = never. */
    heartbeatTimeoutMs: number | null;
    /** Devices ask the node to say when their registry entry is written: the `register` series. */
    registration: boolean;
    /** Over TLS, devices offer their last session ticket when they reconnect. */
    tlsResume: boolean;
    /** Devices opened later by `connect` actions (indices after `count`). */
    reserve: number;
  };
  traffic: {
    direct: Flow;
    /** Through the node's queue (`POST /v1/queue`): best effort. */
    indirect: Flow;
    /** Device-to-device messages over the devices' own sockets, to a partner device. */
    d2d: Flow;
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

/** Facts about the machine that defaults depend on. */
export interface ValidationContext {
  /** Cores available to this process. */
  cores: number;
}
