/**
 * The seam between the fleet (connections, reconnects) and the traffic that
 * flows over device sockets beyond direct pushes: room subscriptions with
 * resume, and device-to-device messages. The fleet owns the sockets and calls
 * these hooks; the traffic module owns schedules, histograms and ledgers.
 * Indices are a worker's *local* device indices.
 */

/** What the fleet offers the traffic module. */
export interface DeviceChannel {
  /** Writes one text frame to local device `local`; false if it is not open. */
  send(local: number, text: string): boolean;
  /** Whether local device `local` is open right now. */
  isOpen(local: number): boolean;
}

/** Device-side traffic of one worker. */
export interface DeviceTraffic {
  /**
   * The fleet starts connecting: devices join their rooms as each opens, so a
   * large fleet's subscribes follow its connect ramp instead of arriving all at
   * once when publishing starts.
   */
  connecting(channel: DeviceChannel): void;
  /** Publishing starts at `atUs` (host-monotonic µs); schedules (d2d) begin then. */
  start(atUs: number, channel: DeviceChannel): void;
  /** Local device `local` has just (re)opened: rejoin rooms, resume offsets. */
  onOpen(local: number): void;
  /**
   * A parsed frame whose `type` the fleet does not handle itself (it handles
   * `push` and `goaway`). Returns false when the frame was not understood.
   */
  onFrame(local: number, frame: { type: string } & Record<string, unknown>, nowUs: number): boolean;
  /**
   * A `room` frame the fleet's fast lane scanned (loadgen/frame-scan.ts: its
   * fields are in `scanned`, `data` holds the frame's bytes), counted as
   * `onFrame` would count it. Returns false when rooms are off: the fleet then
   * reads the frame with the full parser.
   */
  onRoomScanned(local: number, data: Buffer, nowUs: number): boolean;
  /** Local device `local` lost its connection (any reason). */
  onClose(local: number): void;
  /** Publishing ended: stop sending d2d messages; arrivals after `deadline` are late. */
  stop(): void;
  /** Encoded histograms of this interval, by series (`room`, `d2d`), reset after taking. */
  takeHistograms(): Record<string, string>;
  /** Counters of this interval (messages received per kind), reset after taking. */
  takeCounters(): Record<string, number>;
  /** End-of-run ledgers, structured-clone friendly. */
  final(): unknown;
}
