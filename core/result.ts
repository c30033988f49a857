/**
 * The result contract: what a run's load generator produces and what reports,
 * outputs and gates read. Types only (plus the names of the series every run
 * records), so the producer (loadgen/) and the consumers (reports/, run/) both
 * import it and neither imports the other.
 */

import type { LatencyHistogram } from './measure/histogram.js';
import type { DeliveryLedger } from './measure/ledger.js';

/** The latency series every run records. */
export const RUN_SERIES = ['push', 'connect', 'api'] as const;

/** The phases of a run, in order. */
export type RunPhase = 'connecting' | 'publishing' | 'draining' | 'closing' | 'done';

/**
 * Connection events over one report interval. A device worker counts them, the
 * coordinator sums its workers' counts, and the timeline shows the sum: one
 * shape at all three.
 */
export interface ConnectionEvents {
  /** Every attempt started, first connects and reconnects. */
  connectAttempts: number;
  connectFailures: number;
  /** Opened connections that ended, for any reason but the run finishing (periodic ones too). */
  disconnects: number;
  /** Attempts that were not a device's first connect. */
  reconnectAttempts: number;
  /** Reconnect attempts that opened. */
  reconnects: number;
  /** Connections lost (periodic reconnects excluded). */
  losses: number;
  /** Periodic (own-initiative) reconnect closes. */
  periodic: number;
  /** Failed attempts by reason (`refused`, `timeout`, `http_503`, ...). */
  failuresByReason: Record<string, number>;
}

/**
 * A fleet's connections over a whole run: requested vs established vs held,
 * and how they failed and ended. A device worker reports its share (without
 * `failed`), the coordinator sums them, report.json's `devices` carries them.
 */
export interface ConnectionTotals {
  /** Initial devices plus the reserve devices `connectMore` actually asked for. */
  requested: number;
  /** Devices that were open at least once. */
  established: number;
  /** Devices open just before the fleet closed. */
  heldAtEnd: number;
  /** Devices never open during the run (requested - established). */
  failed: number;
  /** Failed attempts (first connects and reconnects) by reason. */
  failuresByReason: Record<string, number>;
  /** Connections that closed during the run, by close code. */
  closesByCode: Record<string, number>;
  /** Connection losses by cause: `heartbeat_timeout`, `goaway`, `code_<close code>`. */
  lossesByCause: Record<string, number>;
  /** Devices between connections (an attempt in flight or a backoff) when the run ended. */
  reconnectingAtEnd: number;
}

/** One second (one report interval) of the run, as the coordinator saw it. */
export interface TimelinePoint extends ConnectionEvents {
  /** Seconds since the fleet started connecting. */
  t: number;
  phase: RunPhase;
  /** Devices held open now, as the load generator counts them. */
  open: number;
  /** Devices asked to connect so far (first attempts started, cumulative). */
  requested: number;
  /** Devices open at least once so far (cumulative). */
  established: number;
  /** Device traffic counters this interval (`roomReceived`, `d2dSent`, ...). */
  traffic: Record<string, number>;
  sent: number;
  accepted: number;
  received: number;
  pushP50Ms: number | null;
  pushP99Ms: number | null;
  connectP99Ms: number | null;
  /** Connections each node reported holding at this point (its own /metrics), when sampled. */
  nodes?: Record<string, number>;
  /** Busiest worker's event-loop utilisation this interval. */
  maxElu: number;
  /** Worst worker event-loop delay p99 this interval, ms. */
  maxLagP99Ms: number;
}

/** The generator's view of its own health over one interval. */
export interface SelfCheck {
  /** Event-loop utilisation of the thread, 0..1. */
  elu: number;
  /** Event-loop delay p99 in ms. */
  lagP99Ms: number;
  /** Event-loop delay max in ms. */
  lagMaxMs: number;
  /**
   * CPU time of the thread's whole process as a share of one core (1 = one
   * core busy). With a low `elu`, a high lag means the thread was starved of
   * CPU by other processes rather than busy itself; either way its timings are late.
   */
  processCpu?: number;
  /**
   * Device threads that started connect attempts: how late after their slots
   * (scheduled times) they started them, p99 in ms (1 ms steps); absent when
   * the thread started none. A thread that falls behind its schedule catches up
   * in short slices, so its event loop never stalls for long and its delay
   * stays low while every attempt starts late: this is where that shows.
   */
  startLagP99Ms?: number;
}

/** One worker's health over the run. */
export interface WorkerHealth extends SelfCheck {
  worker: string;
}

/** Where the fleet ran, for the report. */
export interface PlacementSummary {
  processes: number;
  threadsPerProcess: number;
  /** Devices (initial + reserve) per process, in process order. */
  devicesByProcess: number[];
  /** Agent process ids (empty when the fleet ran in the coordinator's process). */
  agentPids: number[];
  /** Source addresses each route's devices bound, by region (empty: the kernel chose). */
  sourceAddresses: Record<string, string[]>;
  reasons: string[];
  /** The region whose client host ran each process, in process order (the kernel engine). */
  clientHosts?: string[];
}

/** What a load agent on another host says about it when it joins (`pushbench agent`). */
export interface AgentHostFacts {
  hostname: string;
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  freeMemoryBytes: number;
  /** RLIMIT_NOFILE of one process there (null: unknown). */
  openFiles: number | null;
  /** Ephemeral ports per source address (null: unknown). */
  ephemeralPorts: number | null;
  /** The host's non-loopback IPv4 addresses. */
  addresses: string[];
  /** Devices it offered to hold (its own preflight: memory, ports, `--max-devices`). */
  maxDevices: number;
}

/** A load agent on another host (`--agents`), as the report lists it. */
export interface LoadAgentRecord {
  index: number;
  name: string;
  /** Where it connected from. */
  address: string;
  pushbench: string;
  node: string;
  facts: AgentHostFacts;
  /** Devices placed on it (initial and reserve). */
  devices: number;
  /**
   * Its latest clock offset onto the coordinator's (µs to add to its clock),
   * ± `uncertaintyUs` (half the best round trip of the latest burst); the
   * largest uncertainty of the run; how many bursts; the offset's drift since
   * the first (null before a second burst a second later).
   */
  clock: {
    offsetUs: number;
    uncertaintyUs: number;
    roundTripUs: number;
    samples: number;
    worstUncertaintyUs: number;
    estimates: number;
    driftUsPerS: number | null;
  } | null;
  /** Its processes at their last reading, from its own /proc. */
  resources: { processes: number; rssBytes: number; cpuSeconds: number } | null;
  /**
   * Its shards' self-check over the run, the worst of them: event-loop delay p99
   * and max (ms), utilisation (0-1) and its process's CPU share (1 = one core).
   * Each shard's own is in `generator.workers` as `devices-K`.
   */
  health?: {
    shards: number;
    lagP99Ms: number;
    lagMaxMs: number;
    elu: number;
    processCpu: number | null;
  };
  /** Messages from it that were refused (malformed, out of order, another agent's shard). */
  refused: number;
  /** The join channel's traffic since the welcome: bytes each way (TCP payload), over `seconds`. */
  channel: { bytesIn: number; bytesOut: number; seconds: number };
  /**
   * Its own devices' latency, per series: the merge of its shards' snapshots
   * (compressed base64 HdrHistogram, µs), and the run's histogram is the sum of
   * every agent's. Absent when the run failed before the end.
   */
  histograms?: Record<string, string>;
  /** Why it was lost, when it was; null while it stayed to the end. */
  lost: string | null;
}

/** One report interval's merged histograms, for HdrHistogram interval logs. */
export interface IntervalHistograms {
  /** Interval start and end, ms since the fleet started. */
  startMs: number;
  endMs: number;
  histograms: Record<string, LatencyHistogram>;
}

/** A labelled instant (or span) on the run's time axis: a phase change or a fault. */
export interface RunMarker {
  /** Seconds since the fleet started. */
  t: number;
  kind: 'phase' | 'fault';
  label: string;
  /** End of a fault that lasts, seconds since the fleet started. */
  tEnd?: number;
  /** The timeline action (`kill-node`, `blackhole`, ...). */
  action?: string;
  /** What it hit (a node id, a region). */
  target?: string;
}

/** Per-kind delivery ledgers of a run. */
export interface TrafficResult {
  direct: DeliveryLedger;
  indirect: DeliveryLedger;
  /**
   * In deliveries (message x member). `expected` = deliveries the accepted room
   * messages owe (equal to `accepted`); `recovered` = first arrivals that came
   * through a resume; `resyncs` = resumes the history could not cover.
   */
  room: DeliveryLedger & {
    recovered: number;
    resyncs: number;
    expected: number;
    /** Room messages (PUTs) sent and accepted. */
    messages: { sent: number; accepted: number };
  };
  /** `notSent`: scheduled while the sender was not connected; `statuses`: `d2d_status` outcomes. */
  d2d: DeliveryLedger & { notSent: number; statuses: Record<string, number> };
  /** All four kinds summed (deliveries), for one five-nines figure. */
  combined: { accepted: number; delivered: number; lost: number; rate: number };
}

/** Everything the load generator measured. */
export interface LoadResult {
  connections: ConnectionTotals;
  /**
   * One triple per connection loss, all workers: [lost at, open again at,
   * attempts], times in seconds since the fleet started; -1 = never back.
   */
  drops: Float64Array;
  /** The node each loss in `drops` happened on ('' when the node never said: no hello). */
  dropNodes: string[];
  /** Devices that stopped reconnecting (`maxAttempts` reached, or a terminal close code). */
  gaveUp: number;
  ledger: DeliveryLedger;
  /** Per-kind ledgers (direct, indirect, room, d2d, combined). */
  traffic: TrafficResult;
  /**
   * Merged histograms by series: `push`, `connect`, `api`, and whatever else
   * the workers record (`reconnect`, `push@<region>`, `room`, `d2d`, ...).
   */
  histograms: Record<string, LatencyHistogram>;
  timeline: TimelinePoint[];
  generator: {
    valid: boolean;
    /** Why the result is invalid; empty when valid. */
    reasons: string[];
    /** Lag the generator had that did not reach enough samples to invalidate the result. */
    warnings: string[];
    workers: WorkerHealth[];
    skippedSends: number;
    /** How the fleet was spread over processes and threads, and why. */
    placement: PlacementSummary;
    /**
     * The load generator's processes (coordinator and agents) as /proc saw
     * them just before the fleet closed, all devices still held; set by the caller.
     */
    resources?: { processes: number; rssBytes: number; cpuSeconds: number };
  };
  /** Scheduled messages never sent because no device was connected when publishing began. */
  unaddressed: number;
  /** Frames devices received that were not readable pushes. */
  badFrames: number;
  /**
   * Merged histograms by series of each group of shards that has a name: each
   * load agent on another host (`--agents`). The run's histograms are their sum.
   */
  groupHistograms?: Record<string, Record<string, LatencyHistogram>>;
  /** Per-interval merged histograms, in time order. */
  intervals: IntervalHistograms[];
  /** Phase changes on the run's time axis. */
  markers: RunMarker[];
  /** Scheduled send times (s since start) of accepted direct/indirect pushes never delivered. */
  lostAtS: number[];
  /** Scheduled send times (s since start) of pushes answered 404 `not_connected` (the first 100,000). */
  notFoundAtS?: number[];
  /** Host-monotonic µs when the fleet started and when publishing started/ended. */
  marks: { startUs: number; publishStartUs: number; publishEndUs: number; endUs: number };
}
