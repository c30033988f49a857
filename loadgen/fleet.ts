import type { MessagePort } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../reports/histogram.js';
import { Bitset } from '../reports/ledger.js';
import { signToken } from '../server/token.js';
import type { DeviceWorkerData, FromWorker, ToWorker } from './messages.js';
import { readPushFrame } from './push-frame.js';
import { SelfMonitor } from './self-check.js';
import { WsClientConnection, type WsClientSink, type WsCloseInfo } from './ws-client/connection.js';

/** How often connect timeouts and close timeouts are swept. */
const SWEEP_INTERVAL_MS = 100;
/** A close handshake not finished within this is cut. */
const CLOSE_TIMEOUT_US = 2_000_000;

/** The device id and account id of global device index `i`. */
export function deviceIdentity(
  i: number,
  accounts: number,
): { deviceId: string; accountId: string } {
  return { deviceId: `d${i}`, accountId: `a${i % accounts}` };
}

/**
 * One worker's share of the device fleet: opens connections open-loop at a
 * fixed rate, records connect and push latency, de-duplicates pushes by message
 * number, and reports encoded histograms each interval. Devices are plain
 * connection objects; the fleet is the one sink for all of them.
 */
export class Fleet implements WsClientSink {
  private readonly conns: WsClientConnection[] = [];
  private readonly push: LatencyHistogram = createLatencyHistogram();
  private readonly connect: LatencyHistogram = createLatencyHistogram();
  private readonly delivered = new Bitset();
  private readonly late = new Bitset();
  private readonly self = new SelfMonitor();
  private readonly intervalUs: number;
  private startUs = 0;
  private nextIndex = 0;
  private pending = 0;
  private open = 0;
  private established = 0;
  private failed = 0;
  private pastDeadline = false;
  private finishing = false;
  private rampReported = false;
  private duplicates = 0;
  private badFrames = 0;
  private readonly failuresByReason: Record<string, number> = {};
  private readonly closesByCode: Record<string, number> = {};
  // Interval counters, reset at each report.
  private iAttempts = 0;
  private iOk = 0;
  private iFailures = 0;
  private iDisconnects = 0;
  private iReceived = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopReports: (() => void) | undefined;

  constructor(
    private readonly data: DeviceWorkerData,
    private readonly port: MessagePort,
  ) {
    this.intervalUs = 1e6 / data.connectRateHz;
    for (let k = 0; k < data.deviceCount; k++) this.conns.push(new WsClientConnection(this, k));
  }

  /** Handles one coordinator message. */
  handle(msg: ToWorker): void {
    switch (msg.type) {
      case 'start':
        this.start(msg.atUs, msg.gridUs);
        break;
      case 'deadline':
        this.pastDeadline = true;
        // Close the measured part of the run: what follows is teardown.
        this.stopReports?.();
        this.stopReports = undefined;
        this.report();
        break;
      case 'finish':
        this.finish();
        break;
    }
  }

  private post(msg: FromWorker): void {
    this.port.postMessage(msg);
  }

  private start(atUs: number, gridUs: number): void {
    this.startUs = atUs;
    this.scheduleConnects();
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.stopReports = everyOnGrid(gridUs, this.data.reportIntervalMs, () => this.report());
  }

  /** Scheduled start time of local device `k`, host-monotonic µs. */
  private scheduledUs(k: number): number {
    return this.startUs + k * this.intervalUs;
  }

  /** Starts every attempt that is due; open-loop: never waits for earlier attempts. */
  private scheduleConnects(): void {
    this.connectTimer = undefined;
    const now = monoNowUs();
    const { target, secret, tokenTtlSec, accounts, firstDevice, localAddresses } = this.data;
    const expiresAtSec = Math.floor(Date.now() / 1000) + tokenTtlSec;
    while (this.nextIndex < this.conns.length && this.scheduledUs(this.nextIndex) <= now) {
      const k = this.nextIndex++;
      const conn = this.conns[k];
      if (!conn) continue;
      const global = firstDevice + k;
      const token = signToken({ ...deviceIdentity(global, accounts), expiresAtSec }, secret);
      this.pending++;
      this.iAttempts++;
      conn.connect({
        host: target.host,
        port: target.port,
        path: `${target.path}?token=${token}`,
        localAddress:
          localAddresses.length > 0 ? localAddresses[global % localAddresses.length] : undefined,
      });
    }
    if (this.nextIndex < this.conns.length) {
      const waitMs = Math.max(1, (this.scheduledUs(this.nextIndex) - now) / 1000);
      this.connectTimer = setTimeout(() => this.scheduleConnects(), waitMs);
    } else {
      this.maybeRampDone();
    }
  }

  private maybeRampDone(): void {
    if (this.rampReported || this.nextIndex < this.conns.length || this.pending > 0) return;
    this.rampReported = true;
    const established: number[] = [];
    for (const conn of this.conns) {
      if (conn.state === 'open') established.push(this.data.firstDevice + conn.id);
    }
    this.post({
      type: 'ramp-done',
      workerIndex: this.data.workerIndex,
      established: Int32Array.from(established),
      failed: this.failed,
    });
  }

  private sweep(): void {
    const now = monoNowUs();
    const timeoutUs = this.data.connectTimeoutMs * 1000;
    for (const conn of this.conns) {
      if (conn.state === 'connecting' || conn.state === 'closing') {
        conn.expireIfStale(now, timeoutUs, CLOSE_TIMEOUT_US);
      }
    }
  }

  private takeHistograms(): Record<string, string> {
    const out = { push: encodeHistogram(this.push), connect: encodeHistogram(this.connect) };
    this.push.reset();
    this.connect.reset();
    return out;
  }

  private report(): void {
    this.post({
      type: 'device-interval',
      workerIndex: this.data.workerIndex,
      atUs: monoNowUs(),
      open: this.open,
      connectAttempts: this.iAttempts,
      connectsOk: this.iOk,
      connectFailures: this.iFailures,
      disconnects: this.iDisconnects,
      received: this.iReceived,
      histograms: this.takeHistograms(),
      self: this.self.interval(),
    });
    this.iAttempts = this.iOk = this.iFailures = this.iDisconnects = this.iReceived = 0;
  }

  private finish(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.nextIndex = this.conns.length;
    this.stopReports?.();
    this.finishing = true;
    const heldAtEnd = this.open;
    for (const conn of this.conns) {
      if (conn.state === 'open') conn.close(1000, 'run finished');
      else if (conn.state === 'connecting') conn.destroy();
    }
    const done = () => {
      if (this.sweepTimer) clearInterval(this.sweepTimer);
      this.post({
        type: 'device-final',
        workerIndex: this.data.workerIndex,
        histograms: this.takeHistograms(),
        delivered: this.delivered.toBytes(),
        late: this.late.toBytes(),
        duplicates: this.duplicates,
        heldAtEnd,
        established: this.established,
        connectFailuresByReason: this.failuresByReason,
        closesByCode: this.closesByCode,
        badFrames: this.badFrames,
        self: this.self.total(),
      });
    };
    // Wait for the close handshakes (the sweep cuts any that hang).
    const poll = setInterval(() => {
      if (this.open === 0 && this.conns.every((c) => c.state === 'closed' || c.state === 'idle')) {
        clearInterval(poll);
        done();
      }
    }, 20);
  }

  onOpen(conn: WsClientConnection): void {
    const latencyUs = monoNowUs() - this.scheduledUs(conn.id);
    recordUs(this.connect, latencyUs);
    this.pending--;
    this.open++;
    this.established++;
    this.iOk++;
    if (this.finishing) conn.close(1000, 'run finished');
    this.maybeRampDone();
  }

  onText(_conn: WsClientConnection, text: string): void {
    const now = monoNowUs();
    const push = readPushFrame(text);
    if (!push) {
      this.badFrames++;
      return;
    }
    this.iReceived++;
    const { seq, sentAtUs } = push;
    if (this.delivered.has(seq) || this.late.has(seq)) {
      this.duplicates++;
      return;
    }
    if (this.pastDeadline) {
      this.late.add(seq);
      return;
    }
    this.delivered.add(seq);
    // Latency from the publisher's *scheduled* send time (open model).
    recordUs(this.push, now - sentAtUs);
  }

  onClose(_conn: WsClientConnection, info: WsCloseInfo): void {
    if (!info.opened) {
      this.pending--;
      this.failed++;
      this.iFailures++;
      const reason =
        info.failure === 'http_status' ? `http_${info.httpStatus}` : (info.failure ?? 'error');
      this.failuresByReason[reason] = (this.failuresByReason[reason] ?? 0) + 1;
      this.maybeRampDone();
      return;
    }
    this.open--;
    if (!this.finishing) {
      this.iDisconnects++;
      this.closesByCode[info.code] = (this.closesByCode[info.code] ?? 0) + 1;
    }
  }
}

/** Runs a device worker on `port` until `finish` has been answered. */
export function runFleet(data: DeviceWorkerData, port: MessagePort): void {
  const fleet = new Fleet(data, port);
  port.on('message', (msg: ToWorker) => fleet.handle(msg));
  port.postMessage({ type: 'ready', role: 'devices' } satisfies FromWorker);
}
