/** Counters a node keeps; served as JSON on `GET /metrics`. All are totals since start except `connections`. */
export class NodeMetrics {
  /** Devices connected right now. */
  connections = 0;
  /** Upgrades accepted since start. */
  connectsTotal = 0;
  /** Upgrades refused, by HTTP status. */
  upgradesRefused: Record<string, number> = {};
  /** Connections that ended, for any reason. */
  disconnectsTotal = 0;
  /** Connections closed because pongs stopped arriving. */
  heartbeatTimeouts = 0;
  /** Older connections closed because the same device connected again. */
  replaced = 0;
  /** Pushes written to a device socket. */
  pushesDelivered = 0;
  /** Pushes for a device not connected here. */
  pushesNotConnected = 0;
  /** Pushes refused because the device's send buffer was over its bound. */
  pushesDropped = 0;
  /** Acks received from devices. */
  acks = 0;
  /** Connections closed for sending something the protocol does not allow. */
  badFrames = 0;
  /** HTTP API requests answered, by status. */
  httpResponses: Record<string, number> = {};

  /** Adds one to a keyed counter. */
  static bump(table: Record<string, number>, key: string | number): void {
    table[key] = (table[key] ?? 0) + 1;
  }
}
