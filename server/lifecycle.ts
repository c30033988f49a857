import type { ConnectionTable } from './connections.js';
import type { NodeMetrics } from './metrics.js';

/** Heartbeat settings, in milliseconds. */
export interface HeartbeatOptions {
  /** How often the sweep runs and pings every connection. */
  intervalMs: number;
  /** A connection silent (no pong, no frame) for longer than this is closed. */
  timeoutMs: number;
}

/**
 * The heartbeat: one periodic sweep over all connections, not a timer per
 * connection. Each pass pings every live connection and terminates those whose
 * last pong is older than the timeout. `terminate()` rather than `close()`: a
 * peer that stopped answering pings will not answer a close frame either.
 */
export class HeartbeatSweep {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly table: ConnectionTable,
    private readonly metrics: NodeMetrics,
    private readonly options: HeartbeatOptions,
    private readonly nowMs: () => number,
  ) {}

  /** Starts sweeping. */
  start(): void {
    this.timer = setInterval(() => this.sweep(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Stops sweeping. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass; exposed for tests. */
  sweep(): void {
    const now = this.nowMs();
    for (const conn of this.table.values()) {
      if (now - conn.lastSeenMs > this.options.timeoutMs) {
        this.metrics.heartbeatTimeouts++;
        conn.ws.terminate();
      } else if (conn.ws.readyState === conn.ws.OPEN) {
        conn.ws.ping();
      }
    }
  }
}
