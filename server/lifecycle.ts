import type { DeviceConnection } from './connections.js';

/** Heartbeat settings, in milliseconds. */
export interface HeartbeatOptions {
  /** Every connection is pinged once per interval. */
  intervalMs: number;
  /** A connection silent (no pong, no frame) for longer than this is closed. */
  timeoutMs: number;
  /** Period of the sweep's timer; each tick handles one bucket. Default 100 ms. */
  tickMs?: number;
}

/** What the sweep asks the node to do with a connection. */
export interface SweepActions {
  /** The connection stopped answering pings: terminate it. */
  silent(conn: DeviceConnection): void;
  /** Its lifetime is over: tell it to go away (the node sets `forceCloseAtMs`). */
  lifetimeOver(conn: DeviceConnection): void;
  /** It was told to go away and has not left: close it. */
  overstayed(conn: DeviceConnection): void;
  /** Healthy: ping it. */
  ping(conn: DeviceConnection): void;
}

/**
 * The lifecycle sweep: one timer, not one per connection. Connections are
 * spread round-robin over `intervalMs / tickMs` buckets and each tick visits
 * one bucket, so pings go out evenly over the interval instead of as one burst
 * (a burst of 2,000 pings stalled pushes by ~30-90 ms on a 2-core box). Each
 * visit checks, in order: silence past the timeout, a goaway deadline passed,
 * the connection's lifetime over; otherwise it pings.
 */
export class LifecycleSweep {
  private timer: NodeJS.Timeout | undefined;
  private readonly buckets: Set<DeviceConnection>[];
  private readonly tickMs: number;
  private nextBucket = 0;
  private nextAssign = 0;

  constructor(
    private readonly options: HeartbeatOptions,
    private readonly actions: SweepActions,
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

  /** Puts a new connection under the sweep. */
  add(conn: DeviceConnection): void {
    // The bucket index lives on the connection: a WeakMap entry per connection
    // costs more memory than the number.
    const index = this.nextAssign++ % this.buckets.length;
    conn.sweepBucket = index;
    this.buckets[index]?.add(conn);
  }

  /** Takes a closed connection out. */
  remove(conn: DeviceConnection): void {
    if (conn.sweepBucket >= 0) this.buckets[conn.sweepBucket]?.delete(conn);
    conn.sweepBucket = -1;
  }

  /** Every connection under the sweep, with the bucket it sits in (for refresh batches). */
  *bucketsInOrder(): Generator<Set<DeviceConnection>> {
    yield* this.buckets;
  }

  /** Sweeps the next bucket; returns it so the caller can batch per-bucket work (registry refresh). */
  tick(): Set<DeviceConnection> | undefined {
    const bucket = this.buckets[this.nextBucket];
    this.nextBucket = (this.nextBucket + 1) % this.buckets.length;
    if (bucket) this.sweepBucket(bucket);
    this.onTick?.(bucket);
    return bucket;
  }

  /** Called after each tick with the bucket just swept. */
  onTick: ((bucket: Set<DeviceConnection> | undefined) => void) | undefined;

  /** Sweeps every bucket now (tests use it instead of waiting a whole interval). */
  sweepAll(): void {
    for (const bucket of this.buckets) this.sweepBucket(bucket);
  }

  private sweepBucket(bucket: Set<DeviceConnection>): void {
    const now = this.nowMs();
    for (const conn of bucket) {
      if (now - conn.lastSeenMs > this.options.timeoutMs) {
        this.remove(conn);
        this.actions.silent(conn);
      } else if (conn.forceCloseAtMs > 0 && now >= conn.forceCloseAtMs) {
        this.remove(conn);
        this.actions.overstayed(conn);
      } else if (conn.forceCloseAtMs === 0 && now >= conn.lifetimeEndMs) {
        this.actions.lifetimeOver(conn);
      } else {
        this.actions.ping(conn);
      }
    }
  }
}
