import type { DeviceConnection } from './connections.js';
import type { NodeMetrics } from './metrics.js';

/** Heartbeat settings, in milliseconds. */
export interface HeartbeatOptions {
  /** Every connection is pinged once per interval. */
  intervalMs: number;
  /** A connection silent (no pong, no frame) for longer than this is closed. */
  timeoutMs: number;
  /** Period of the sweep's timer; each tick handles one bucket. Default 100 ms. */
  tickMs?: number;
}

/**
 * The heartbeat: one timer, not one per connection. Connections are spread
 * round-robin over `intervalMs / tickMs` buckets and each tick sweeps one
 * bucket, so pings go out evenly over the interval instead of as one burst to
 * every device (a burst of 2,000 pings stalled pushes by ~30-90 ms on a 2-core
 * box). A sweep pings live connections and terminates those whose last pong is
 * older than the timeout. `terminate()` rather than `close()`: a peer that
 * stopped answering pings will not answer a close frame either.
 */
export class HeartbeatSweep {
  private timer: NodeJS.Timeout | undefined;
  private readonly buckets: Set<DeviceConnection>[];
  private readonly tickMs: number;
  private nextBucket = 0;
  private nextAssign = 0;
  private readonly bucketOf = new WeakMap<DeviceConnection, Set<DeviceConnection>>();

  constructor(
    private readonly metrics: NodeMetrics,
    private readonly options: HeartbeatOptions,
    private readonly nowMs: () => number,
  ) {
    this.tickMs = Math.min(options.tickMs ?? 100, options.intervalMs);
    const count = Math.max(1, Math.round(options.intervalMs / this.tickMs));
    this.buckets = Array.from({ length: count }, () => new Set<DeviceConnection>());
  }

  /** Starts sweeping. */
  start(): void {
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  /** Stops sweeping. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Puts a new connection under heartbeat. */
  add(conn: DeviceConnection): void {
    const bucket = this.buckets[this.nextAssign++ % this.buckets.length];
    if (!bucket) return;
    bucket.add(conn);
    this.bucketOf.set(conn, bucket);
  }

  /** Takes a closed connection out. */
  remove(conn: DeviceConnection): void {
    this.bucketOf.get(conn)?.delete(conn);
    this.bucketOf.delete(conn);
  }

  /** Sweeps the next bucket. */
  tick(): void {
    const bucket = this.buckets[this.nextBucket];
    this.nextBucket = (this.nextBucket + 1) % this.buckets.length;
    if (bucket) this.sweepBucket(bucket);
  }

  /** Sweeps every bucket now (tests use it instead of waiting a whole interval). */
  sweepAll(): void {
    for (const bucket of this.buckets) this.sweepBucket(bucket);
  }

  private sweepBucket(bucket: Set<DeviceConnection>): void {
    const now = this.nowMs();
    for (const conn of bucket) {
      if (now - conn.lastSeenMs > this.options.timeoutMs) {
        this.metrics.heartbeatTimeouts++;
        this.remove(conn);
        conn.ws.terminate();
      } else if (conn.ws.readyState === conn.ws.OPEN) {
        conn.ws.ping();
      }
    }
  }
}
