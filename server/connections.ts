import type { TokenBucket } from './rate-limit.js';
import type { LeanWebSocket } from './ws-server.js';

/** One device's live connection on this node, and everything the node tracks about it. */
export interface DeviceConnection {
  readonly ws: LeanWebSocket<DeviceConnection>;
  readonly deviceId: string;
  readonly accountId: string;
  /** Unique per upgrade, cluster-wide: the registry's compare-and-delete key. */
  readonly connId: string;
  /** Host-monotonic ms of the last pong or frame received; the heartbeat sweep reads it. */
  lastSeenMs: number;
  /** Host-monotonic ms when the upgrade completed. */
  readonly connectedAtMs: number;
  /** When the connection's lifetime ends and it is told to go away (host ms; Infinity: never). */
  lifetimeEndMs: number;
  /** When a connection told to go away is closed if it has not left (0: not told). */
  forceCloseAtMs: number;
  /** The close code used at `forceCloseAtMs`. */
  forceCloseCode: number;
  /** Rooms this connection is subscribed to (created on first subscribe). */
  rooms: Set<string> | undefined;
  /** Whether it asked for its account's presence events. */
  presence: boolean;
  /** Device-to-device send allowance (created on first d2d). */
  d2dBucket: TokenBucket | undefined;
  /** Which lifecycle-sweep bucket holds it (-1: none). */
  sweepBucket: number;
  /** Direct-push allowance of this device (created on first push). */
  pushBucket: TokenBucket | undefined;
}

/**
 * The devices connected to this node, by device id. A device has at most one
 * entry; removal is compare-and-delete so a closing old connection can never
 * remove the entry of the connection that replaced it.
 */
export class ConnectionTable {
  private readonly byDevice = new Map<string, DeviceConnection>();

  /** Number of devices connected. */
  get size(): number {
    return this.byDevice.size;
  }

  /** The device's connection, if it is connected here. */
  get(deviceId: string): DeviceConnection | undefined {
    return this.byDevice.get(deviceId);
  }

  /** Stores `conn` and returns the connection it replaced, which the caller must close. */
  put(conn: DeviceConnection): DeviceConnection | undefined {
    const previous = this.byDevice.get(conn.deviceId);
    this.byDevice.set(conn.deviceId, conn);
    return previous === conn ? undefined : previous;
  }

  /** Removes the entry only if it still is `conn`; returns whether it did. */
  deleteIfCurrent(conn: DeviceConnection): boolean {
    if (this.byDevice.get(conn.deviceId) !== conn) return false;
    this.byDevice.delete(conn.deviceId);
    return true;
  }

  /** Every connection; for sweeps and shutdown. */
  values(): IterableIterator<DeviceConnection> {
    return this.byDevice.values();
  }
}
