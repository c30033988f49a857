/**
 * Every message exchanged between the coordinator and its worker threads: one
 * discriminated union each way, handled by exhaustive switches. Histograms
 * travel only as encoded snapshots; ledgers travel as bitsets, once, at the end.
 */

import type { ConnectionEvents, ConnectionTotals, SelfCheck } from '../core/result.js';
import type { ReconnectPolicy } from '../scenarios/schema.js';

/** Where devices connect. */
export interface WsTarget {
  host: string;
  port: number;
  path: string;
}

/** Where one block of devices connects: global device indices [first, first + count). */
export interface DeviceRoute {
  /** Home region of these devices; names the `push@<region>` series. */
  region: string;
  first: number;
  count: number;
  /** The region's balancer, or the global entry, or a node. */
  host: string;
  port: number;
  /** Upgrade path, e.g. `/ws`; the token is appended as `?token=`. */
  path: string;
  /** Source addresses; device i binds `localAddresses[i % length]`; empty lets the kernel choose. */
  localAddresses: string[];
  /**
   * Connect over TLS (`wss://`): the CA to trust (PEM; absent: Node's bundled
   * public CAs), the SNI name, and whether devices resume.
   */
  tls?: { caPem?: string; servername: string; resume: boolean };
}

/**
 * Start-up data of a device worker.
 *
 * Device numbering: a worker owns two contiguous blocks of global indices, its
 * share of the initial fleet [firstDevice, firstDevice + deviceCount) and its
 * share of the reserve [reserveFirst, reserveFirst + reserveCount), where the
 * reserve blocks of all workers tile [devices.count, devices.count + reserve).
 * So the initial fleet is always 0..count-1 (what `devices.regions` and the
 * publisher's targets refer to) and `connect` actions' devices follow on.
 * Local index k < deviceCount is global firstDevice + k; a larger k is
 * reserveFirst + (k - deviceCount).
 */
export interface DeviceWorkerData {
  role: 'devices';
  workerIndex: number;
  /** Global index of this worker's first initial device. */
  firstDevice: number;
  /** Devices this worker opens at the start. */
  deviceCount: number;
  /** Global index of this worker's first reserve device. */
  reserveFirst: number;
  /** Devices this worker opens only when told (`connect-more`). */
  reserveCount: number;
  /** Where each global index connects; every device of this worker is in exactly one route. */
  routes: DeviceRoute[];
  /** Token secret of the nodes, so the worker signs its devices' tokens itself. */
  secret: string;
  tokenTtlSec: number;
  accounts: number;
  /** The rate this worker opens its initial devices at. */
  connectRateHz: number;
  /**
   * How long after the run's start this worker's initial ramp begins, µs
   * (shards.ts `shardData`: processes ramp one after another). Absent: at once.
   */
  rampDelayUs?: number;
  /**
   * When the whole fleet's initial ramp is due to end, µs after the run's
   * start: the worker reports what it left open (`ramp-done`) no earlier, so
   * a shard that ramped first is snapshotted with the rest. Absent: when its own ends.
   */
  rampEndUs?: number;
  connectTimeoutMs: number;
  reportIntervalMs: number;
  /**
   * Steps of niceness this thread runs ahead of its process, where it may
   * (core/priority.ts `runThisThreadAhead`: Linux, root). Absent or 0: level.
   */
  aheadBy?: number;
  /** How a device waits before each attempt after a loss or a failed attempt. */
  reconnect: ReconnectPolicy;
  /** Devices reconnect on their own every `everyMs` minus up to `staggerMs`; null = never. */
  periodicReconnect: { everyMs: number; staggerMs: number } | null;
  /** An open connection that receives nothing (not even a ping) this long is dropped; null = never. */
  heartbeatTimeoutMs: number | null;
  /** Ask the node for a `registered` frame and record the `register` series. */
  registration: boolean;
  /** Seed of this worker's random choices (already mixed with the worker index). */
  seed: number;
  /** Opaque settings of the device traffic module (`deviceTrafficConfig`); null = no traffic. */
  traffic: unknown;
  /**
   * Added to this host's monotonic clock to get the coordinator's (core/clock.ts
   * `setClockOffsetUs`): set by an agent on another host; absent on the coordinator's.
   */
  clockOffsetUs?: number;
}

/** Start-up data of the publisher worker. */
export interface PublisherWorkerData {
  role: 'publisher';
  /** As {@link DeviceWorkerData.aheadBy}. */
  aheadBy?: number;
  /** API base URLs (`http://host:port`); requests go round-robin over them. */
  httpUrls: string[];
  apiKey: string;
  /** Direct pushes per second (`POST /v1/push/{device}`). */
  rateHz: number;
  durationMs: number;
  /** Padding of direct pushes, bytes. */
  payloadBytes: number;
  /** Indirect pushes through the queue (`POST /v1/queue`); absent or rate 0 = off. */
  indirect?: { rateHz: number; payloadBytes: number };
  /**
   * Room messages (`PUT /v1/rooms/r{k}/messages`, k round-robin over `count`); absent or
   * rate 0 = off. `perDevice` and `devices` (the fleet's room membership, see
   * loadgen/traffic/rooms.ts) are passed through to the final for the room ledger.
   */
  rooms?: RoomLayout & { rateHz: number; payloadBytes: number };
  /** Requests in flight beyond this are not sent: the generator is saturated. */
  maxInFlight: number;
  /** A request unanswered this long counts as `no_answer`. */
  requestTimeoutMs: number;
  reportIntervalMs: number;
  seed: number;
}

/** Start-up data of any worker. */
export type WorkerData = DeviceWorkerData | PublisherWorkerData;

/** Coordinator -> worker. */
export type ToWorker =
  /**
   * Start connecting (devices) or publishing (publisher) at this host-monotonic
   * time; report on the interval grid that begins at `gridUs`.
   */
  | { type: 'start'; atUs: number; gridUs: number; targets?: Int32Array }
  /** Devices: arrivals from now on are late, not delivered; device traffic stops. */
  | { type: 'deadline' }
  /** Close every connection and send `final`. */
  | { type: 'finish' }
  /** Devices: open the next `count` reserve devices, open-loop at `rateHz`, from `atUs`. */
  | { type: 'connect-more'; count: number; rateHz: number; atUs: number }
  /** Devices: the publisher starts at `atUs`; device traffic (d2d) starts with it. */
  | { type: 'publishing'; atUs: number }
  /** Publisher: the API base URLs to use from now on (nodes die and get added during chaos). */
  | { type: 'api-targets'; urls: string[] }
  /** Devices on another host: the agent's new offset onto the coordinator's clock, µs. */
  | { type: 'clock'; offsetUs: number };

/** One device worker's interval report: its connection events of the interval, and more. */
export interface DeviceInterval extends ConnectionEvents {
  type: 'device-interval';
  workerIndex: number;
  atUs: number;
  /** Devices open right now. */
  open: number;
  /** Devices that have been open at least once, so far. */
  established: number;
  connectsOk: number;
  received: number;
  /** Device traffic counters of this interval (messages received per kind). */
  trafficCounters: Record<string, number>;
  /** Encoded histograms of this interval only, keyed by series (`push`, `connect`, `reconnect`, `push@eu`, `room`, ...). */
  histograms: Record<string, string>;
  self: SelfCheck;
}

/**
 * A device worker's end-of-run report: its share of the fleet's connection
 * totals (`requested` counts its initial share plus the reserve it opened;
 * `failed` is left to the coordinator), its ledger bitsets, and more.
 */
export interface DeviceFinal extends Omit<ConnectionTotals, 'failed'> {
  type: 'device-final';
  workerIndex: number;
  /** Histograms recorded since the last interval report. */
  histograms: Record<string, string>;
  delivered: Uint8Array;
  late: Uint8Array;
  duplicates: number;
  /**
   * One triple per loss (periodic closes excluded): [lost at, open again at
   * (0 = never), attempts made], times in host-monotonic µs.
   */
  drops: Float64Array;
  /** Per loss in `drops`: the node it happened on, as an index into `nodeNames` (-1: unknown). */
  dropNodes: Int32Array;
  /** Node ids this worker heard in `hello` frames. */
  nodeNames: string[];
  /** Devices that stopped trying: `maxAttempts` reached or a terminal close code. */
  gaveUp: number;
  /** Frames that were not pushes we could read. */
  badFrames: number;
  /** The device traffic module's end-of-run ledgers (`DeviceTraffic.final()`); null without traffic. */
  traffic: unknown;
  self: SelfCheck;
}

/** The publisher's interval report. */
export interface PublisherInterval {
  type: 'publisher-interval';
  atUs: number;
  /** Push requests (direct + indirect) this interval; room PUTs are in `byKind` only. */
  sent: number;
  accepted: number;
  rejected: number;
  inFlight: number;
  /** Worst delay of an actual send behind its schedule, in ms, this interval. */
  scheduleLagMaxMs: number;
  /** The same counts split by kind (`direct`, `indirect`, `room`). */
  byKind: Record<PublishKind, { sent: number; accepted: number; rejected: number }>;
  histograms: Record<string, string>;
  self: SelfCheck;
}

/** Rooms `r0..r{count-1}`; devices `0..devices-1` each join `perDevice` of them. */
export interface RoomLayout {
  count: number;
  perDevice: number;
  devices: number;
}

/** What the publisher sends: direct and indirect pushes share one seq space; room messages have their own. */
export type PublishKind = 'direct' | 'indirect' | 'room';

/** The publisher's ledger side for one kind of message. */
export interface PublishedKind {
  /** Requests issued. */
  sent: number;
  /** Bitset (see core/measure/ledger.ts `Bitset`) of the seqs of this kind that were sent. */
  seqs: Uint8Array;
  /** Bitset of the seqs of this kind the API accepted (200 direct, 202/200 queue, 200 room). */
  accepted: Uint8Array;
  /** Other answers by status, plus `no_answer` / `refused` / `no_api_target` for requests that got none. */
  rejectedByStatus: Record<string, number>;
}

/** The publisher's end-of-run report, after its last request resolved. */
export interface PublisherFinal {
  type: 'publisher-final';
  /** Push requests (direct + indirect; one seq space) issued. */
  sent: number;
  /** Bitset of accepted push seqs (direct + indirect). */
  accepted: Uint8Array;
  /** Rejected push requests (direct + indirect) by status. */
  rejectedByStatus: Record<string, number>;
  /** Per kind; `room` seqs are room message numbers, message r went to room `r{r mod roomCount}`. */
  kinds: Record<PublishKind, PublishedKind>;
  /** How room messages were spread and who the members are (count 0 when rooms are off). */
  roomLayout: RoomLayout;
  /** Sends skipped because `maxInFlight` requests were outstanding. */
  skipped: number;
  /** Scheduled messages not sent because no device was connected to address them. */
  noTarget: number;
  /** Scheduled send times (host-monotonic µs) of pushes answered 404 `not_connected`; the first 100,000. */
  notFoundAtUs: number[];
  histograms: Record<string, string>;
  self: SelfCheck;
}

/** Worker -> coordinator. */
export type FromWorker =
  | { type: 'ready'; role: WorkerData['role'] }
  /** Devices: every scheduled connect attempt has resolved; `established` lists the open devices. */
  | { type: 'ramp-done'; workerIndex: number; established: Int32Array; failed: number }
  | DeviceInterval
  | DeviceFinal
  | PublisherInterval
  | PublisherFinal
  | { type: 'fatal'; message: string };

/**
 * A device shard's side of its link to the coordinator: a worker thread's
 * `parentPort`, or an agent process's IPC channel when the shard runs on the
 * agent's main thread (loadgen/agent.ts).
 */
export interface ShardLink {
  postMessage(msg: FromWorker): void;
  on(event: 'message', listener: (msg: ToWorker) => void): unknown;
}

/** Coordinator -> load agent process (loadgen/agent.ts), over IPC with advanced serialization. */
export type ToAgent =
  /** Start these device shards: inline on the agent's main thread when there is one, else as threads. */
  | { type: 'spawn'; shards: DeviceWorkerData[] }
  /** Relay to shard `shard` (its worker index). */
  | { type: 'to-shard'; shard: number; msg: ToWorker };

/** Load agent process -> coordinator. */
export type FromAgent =
  | { type: 'from-shard'; shard: number; msg: FromWorker }
  /** A shard's thread failed or exited (inline shards fail the whole agent instead). */
  | { type: 'shard-error'; shard: number; message: string }
  | { type: 'shard-exit'; shard: number; code: number };
