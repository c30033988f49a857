/**
 * Every message exchanged between the coordinator and its worker threads: one
 * discriminated union each way, handled by exhaustive switches. Histograms
 * travel only as encoded snapshots; ledgers travel as bitsets, once, at the end.
 */

/** Where devices connect. */
export interface WsTarget {
  host: string;
  port: number;
  path: string;
}

/** Start-up data of a device worker. */
export interface DeviceWorkerData {
  role: 'devices';
  workerIndex: number;
  /** Global index of this worker's first device; it owns [firstDevice, firstDevice + deviceCount). */
  firstDevice: number;
  deviceCount: number;
  target: WsTarget;
  /** Token secret of the nodes, so the worker signs its devices' tokens itself. */
  secret: string;
  tokenTtlSec: number;
  accounts: number;
  /** This worker's share of the connect rate. */
  connectRateHz: number;
  connectTimeoutMs: number;
  reportIntervalMs: number;
  /** Source addresses to spread connections over; empty means let the kernel choose. */
  localAddresses: string[];
}

/** Start-up data of the publisher worker. */
export interface PublisherWorkerData {
  role: 'publisher';
  httpUrl: string;
  apiKey: string;
  rateHz: number;
  durationMs: number;
  payloadBytes: number;
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
  /** Devices: arrivals from now on are late, not delivered. */
  | { type: 'deadline' }
  /** Close every connection and send `final`. */
  | { type: 'finish' };

/** The generator's view of its own health over one interval. */
export interface SelfCheck {
  /** Event-loop utilisation of the thread, 0..1. */
  elu: number;
  /** Event-loop delay p99 in ms. */
  lagP99Ms: number;
  /** Event-loop delay max in ms. */
  lagMaxMs: number;
}

/** One device worker's interval report. */
export interface DeviceInterval {
  type: 'device-interval';
  workerIndex: number;
  atUs: number;
  /** Devices open right now. */
  open: number;
  connectAttempts: number;
  connectsOk: number;
  connectFailures: number;
  disconnects: number;
  received: number;
  /** Encoded histograms of this interval only, keyed by series (`push`, `connect`). */
  histograms: Record<string, string>;
  self: SelfCheck;
}

/** A device worker's end-of-run report. */
export interface DeviceFinal {
  type: 'device-final';
  workerIndex: number;
  /** Histograms recorded since the last interval report. */
  histograms: Record<string, string>;
  delivered: Uint8Array;
  late: Uint8Array;
  duplicates: number;
  /** Devices open just before `finish`. */
  heldAtEnd: number;
  established: number;
  connectFailuresByReason: Record<string, number>;
  /** Connections that closed during the run, by close code. */
  closesByCode: Record<string, number>;
  /** Frames that were not pushes we could read. */
  badFrames: number;
  self: SelfCheck;
}

/** The publisher's interval report. */
export interface PublisherInterval {
  type: 'publisher-interval';
  atUs: number;
  sent: number;
  accepted: number;
  rejected: number;
  inFlight: number;
  /** Worst delay of an actual send behind its schedule, in ms, this interval. */
  scheduleLagMaxMs: number;
  histograms: Record<string, string>;
  self: SelfCheck;
}

/** The publisher's end-of-run report, after its last request resolved. */
export interface PublisherFinal {
  type: 'publisher-final';
  sent: number;
  accepted: Uint8Array;
  rejectedByStatus: Record<string, number>;
  /** Sends skipped because `maxInFlight` requests were outstanding. */
  skipped: number;
  /** Scheduled messages not sent because no device was connected to address them. */
  noTarget: number;
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
