import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { request as tlsRequest } from 'node:https';
import { readSchedTimes, starvedThrough } from '../../core/process-stats.js';
import type { Link } from './link.js';
import type { HealthCheckSpec } from './types.js';

/**
 * One check's outcome: `up` (a 200 in time), `down` (anything else), or
 * `starved`: it timed out while the node, a process of this machine, spent
 * most of the check ready to run and waiting for a CPU the machine gave to
 * others. A node on its own cores would have answered; on a box the run
 * shares with its load generator that timeout is the harness's, not the
 * node's, so a starved check counts neither way (bench/RESULTS.md,
 * seventeenth session: balancer-scale-up's live nodes waited ~1 s of every
 * second at nice 19, failed their checks together, and least-connections
 * cascaded).
 */
export type HealthCheck = 'up' | 'down' | 'starved';

/** Share of a timed-out check every process of the node must have spent waiting for a CPU for it to count as starved. */
export const STARVED_SHARE = 0.5;

/**
 * One `GET /healthz` to host:port as it would look across `link` (none: the
 * kernel's own network carries it): the request and the response each wait
 * one sampled link delay, a blackholed link never answers, and only a 200
 * within `timeoutMs` is up. Never rejects. `tls`: over TLS (a balancer that
 * ends it), the certificate not verified, as HAProxy's own `check-ssl verify
 * none` does: the check asks whether the region answers, the devices verify
 * who answers. `pid`: the node's process on this machine; a timeout after the
 * TCP handshake completed, while the node and each of its children starved
 * for a CPU through {@link STARVED_SHARE} of the check (waited on a run queue,
 * or is still waiting), is `starved`, not `down`. A check whose handshake never
 * completed (a blackhole, a partition, a full accept queue) is `down` however
 * starved the node: its kernel would have answered.
 */
export function probeHealthz(
  host: string,
  port: number,
  link: Link | null,
  timeoutMs: number,
  options: { tls?: boolean; pid?: number } = {},
): Promise<HealthCheck> {
  return new Promise((resolve) => {
    let done = false;
    let req: ClientRequest | undefined;
    const finish = (check: HealthCheck) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req?.destroy();
      resolve(check);
    };
    const blackholed = () => link?.faults.blackholed === true;
    const startedMs = performance.now();
    let connected = false;
    const schedBefore = options.pid !== undefined ? readSchedTimes(options.pid) : undefined;
    const timer = setTimeout(() => {
      const schedAfter = schedBefore && !blackholed() ? readSchedTimes(options.pid!) : undefined;
      const spanMs = performance.now() - startedMs;
      const starved =
        schedBefore !== undefined &&
        schedAfter !== undefined &&
        connected &&
        starvedThrough(schedBefore, schedAfter, spanMs, STARVED_SHARE);
      finish(starved ? 'starved' : 'down');
    }, timeoutMs);
    // A blackholed link: the timer decides.
    if (blackholed()) return;
    const thereMs = link?.sampleDelayMs() ?? 0;
    const backMs = link?.sampleDelayMs() ?? 0;
    const send = () => {
      if (done || blackholed()) return;
      const onResponse = (res: IncomingMessage) => {
        res.resume();
        const ok = res.statusCode === 200;
        const answer = () => finish(ok && !blackholed() ? 'up' : 'down');
        if (backMs > 0) setTimeout(answer, backMs);
        else answer();
      };
      const asked = { host, port, path: '/healthz', method: 'GET', agent: false } as const;
      req = options.tls
        ? tlsRequest({ ...asked, rejectUnauthorized: false }, onResponse)
        : request(asked, onResponse);
      // The node's kernel completes the handshake whether or not the node gets a CPU; a
      // blackholed, partitioned or full node's never does.
      req.once('socket', (socket) => socket.once('connect', () => (connected = true)));
      req.on('error', () => finish('down'));
      req.end();
    };
    if (thereMs > 0) setTimeout(send, thereMs);
    else send();
  });
}

/**
 * The fall/rise state machine of one checked target. `pending` targets (never
 * checked yet) turn healthy on their first success.
 */
export class HealthState {
  private fails = 0;
  private passes = 0;
  /** A check is in flight; the next tick skips this target. */
  checking = false;
  /** Checks that timed out while the node starved for a CPU, counted neither way. */
  starved = 0;
  /** Wall-clock time (`Date.now()`) `healthy` last changed; null = never. */
  changedAtMs: number | null = null;

  constructor(
    public healthy: boolean,
    public pending: boolean,
  ) {}

  /** Records one check's outcome; returns true when `healthy` changed. A starved check changes nothing. */
  record(check: HealthCheck, spec: HealthCheckSpec): boolean {
    if (check === 'starved') {
      this.starved++;
      return false;
    }
    if (check === 'up') {
      this.fails = 0;
      this.passes++;
      if (!this.healthy && (this.pending || this.passes >= spec.rise)) {
        this.healthy = true;
        this.pending = false;
        this.changedAtMs = Date.now();
        return true;
      }
      this.pending = false;
      return false;
    }
    this.passes = 0;
    this.fails++;
    if (this.healthy && this.fails >= spec.fall) {
      this.healthy = false;
      this.changedAtMs = Date.now();
      return true;
    }
    return false;
  }

  /** Back to never-checked (a backend restarted at a new address). */
  restart(healthy: boolean): void {
    this.healthy = healthy;
    this.pending = !healthy;
    this.fails = 0;
    this.passes = 0;
  }
}
