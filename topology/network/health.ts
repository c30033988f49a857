import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { request as tlsRequest } from 'node:https';
import type { Link } from './link.js';
import type { HealthCheckSpec } from './types.js';

/**
 * One `GET /healthz` to host:port as it would look across `link`: the request
 * and the response each wait one sampled link delay, a blackholed link never
 * answers, and only a 200 within `timeoutMs` counts. Resolves true or false,
 * never rejects. `tls`: over TLS (a balancer that ends it), the certificate
 * not verified, as HAProxy's own `check-ssl verify none` does: the check asks
 * whether the region answers, the devices verify who answers.
 */
export function probeHealthz(
  host: string,
  port: number,
  link: Link,
  timeoutMs: number,
  options: { tls?: boolean } = {},
): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    let req: ClientRequest | undefined;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req?.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    // A blackholed link: the timer decides.
    if (link.faults.blackholed) return;
    const thereMs = link.sampleDelayMs();
    const backMs = link.sampleDelayMs();
    const send = () => {
      if (done || link.faults.blackholed) return;
      const onResponse = (res: IncomingMessage) => {
        res.resume();
        const ok = res.statusCode === 200;
        const answer = () => finish(ok && !link.faults.blackholed);
        if (backMs > 0) setTimeout(answer, backMs);
        else answer();
      };
      const asked = { host, port, path: '/healthz', method: 'GET', agent: false } as const;
      req = options.tls
        ? tlsRequest({ ...asked, rejectUnauthorized: false }, onResponse)
        : request(asked, onResponse);
      req.on('error', () => finish(false));
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
  /** Wall-clock time (`Date.now()`) `healthy` last changed; null = never. */
  changedAtMs: number | null = null;

  constructor(
    public healthy: boolean,
    public pending: boolean,
  ) {}

  /** Records one check result; returns true when `healthy` changed. */
  record(ok: boolean, spec: HealthCheckSpec): boolean {
    if (ok) {
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
