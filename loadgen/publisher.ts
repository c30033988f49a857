import { Agent, request } from 'node:http';
import type { MessagePort } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import { Rng } from '../core/rng.js';
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../reports/histogram.js';
import { Bitset } from '../reports/ledger.js';
import type { FromWorker, PublisherWorkerData, ToWorker } from './messages.js';
import { SelfMonitor } from './self-check.js';

/**
 * The open-model publisher: message i is *scheduled* at start + i/rate, evenly
 * spaced (no burst per second), and sent when due whether or not earlier
 * requests have been answered. Its scheduled time travels in the payload, so a
 * slow server shows up as latency instead of as a slower publisher
 * (coordinated omission). Direct pushes go to random devices that were
 * connected when publishing began.
 */
export class Publisher {
  private readonly agent: Agent;
  private readonly url: URL;
  private readonly rng: Rng;
  private readonly accepted = new Bitset();
  private readonly rejectedByStatus: Record<string, number> = {};
  /** HTTP answer time from the scheduled send time. */
  private readonly api: LatencyHistogram = createLatencyHistogram();
  private readonly self = new SelfMonitor();
  private readonly pad: string;
  private readonly intervalUs: number;
  private readonly total: number;
  private targets: Int32Array = new Int32Array(0);
  private startUs = 0;
  private next = 0;
  private sent = 0;
  private inFlight = 0;
  private skipped = 0;
  private noTarget = 0;
  private iSent = 0;
  private iAccepted = 0;
  private iRejected = 0;
  private iLagMaxMs = 0;
  private stopReports: (() => void) | undefined;
  private finished = false;

  constructor(
    private readonly data: PublisherWorkerData,
    private readonly port: MessagePort,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 64 });
    this.url = new URL(data.httpUrl);
    this.rng = new Rng(data.seed);
    this.pad = 'x'.repeat(data.payloadBytes);
    this.intervalUs = data.rateHz > 0 ? 1e6 / data.rateHz : Number.POSITIVE_INFINITY;
    this.total = data.rateHz > 0 ? Math.floor((data.durationMs / 1000) * data.rateHz) : 0;
  }

  /**
   * Opens keep-alive connections before the clock starts, so the first
   * scheduled sends do not also pay for TCP handshakes the steady state never sees.
   */
  async warm(connections = 8): Promise<void> {
    await Promise.all(
      Array.from(
        { length: connections },
        () =>
          new Promise<void>((resolve) => {
            const req = request({
              agent: this.agent,
              host: this.url.hostname,
              port: this.url.port,
              path: '/healthz',
              timeout: this.data.requestTimeoutMs,
            });
            req.on('response', (res) => {
              res.resume();
              res.on('end', resolve);
            });
            req.on('error', () => resolve());
            req.end();
          }),
      ),
    );
  }

  /** Handles one coordinator message. */
  handle(msg: ToWorker): void {
    switch (msg.type) {
      case 'start':
        this.targets = msg.targets ?? new Int32Array(0);
        this.startUs = msg.atUs;
        this.stopReports = everyOnGrid(msg.gridUs, this.data.reportIntervalMs, () => this.report());
        this.tick();
        break;
      case 'deadline':
      case 'finish':
        break;
    }
  }

  private post(msg: FromWorker): void {
    this.port.postMessage(msg);
  }

  private tick(): void {
    const now = monoNowUs();
    while (this.next < this.total && this.startUs + this.next * this.intervalUs <= now) {
      const seq = this.next++;
      const scheduledUs = this.startUs + seq * this.intervalUs;
      this.iLagMaxMs = Math.max(this.iLagMaxMs, (now - scheduledUs) / 1000);
      if (this.targets.length === 0) {
        // No device was connected when publishing began: nothing can be addressed.
        this.noTarget++;
        continue;
      }
      if (this.inFlight >= this.data.maxInFlight) {
        // Not sending is the generator's failure, not the server's: it is counted
        // and the coordinator marks the run invalid.
        this.skipped++;
        continue;
      }
      const target = this.targets[this.rng.int(this.targets.length)] ?? 0;
      this.send(seq, scheduledUs, target);
    }
    if (this.next < this.total) {
      const waitMs = Math.max(0, (this.startUs + this.next * this.intervalUs - monoNowUs()) / 1000);
      setTimeout(() => this.tick(), waitMs);
    } else {
      this.maybeFinish();
    }
  }

  private send(seq: number, scheduledUs: number, device: number): void {
    const body = JSON.stringify({
      id: `m${seq}`,
      payload: { seq, t: scheduledUs, pad: this.pad },
    });
    this.sent++;
    this.iSent++;
    this.inFlight++;
    const req = request({
      agent: this.agent,
      host: this.url.hostname,
      port: this.url.port,
      method: 'POST',
      path: `/v1/push/d${device}`,
      headers: {
        authorization: `Bearer ${this.data.apiKey}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
      timeout: this.data.requestTimeoutMs,
    });
    let settled = false;
    const settle = (status: string) => {
      if (settled) return;
      settled = true;
      this.inFlight--;
      recordUs(this.api, monoNowUs() - scheduledUs);
      if (status === '200') {
        this.accepted.add(seq);
        this.iAccepted++;
      } else {
        this.rejectedByStatus[status] = (this.rejectedByStatus[status] ?? 0) + 1;
        this.iRejected++;
      }
      this.maybeFinish();
    };
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => settle(String(res.statusCode ?? 0)));
      res.on('error', () => settle('no_answer'));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => settle('no_answer'));
    req.end(body);
  }

  private takeHistograms(): Record<string, string> {
    const out = { api: encodeHistogram(this.api) };
    this.api.reset();
    return out;
  }

  private report(): void {
    this.post({
      type: 'publisher-interval',
      atUs: monoNowUs(),
      sent: this.iSent,
      accepted: this.iAccepted,
      rejected: this.iRejected,
      inFlight: this.inFlight,
      scheduleLagMaxMs: this.iLagMaxMs,
      histograms: this.takeHistograms(),
      self: this.self.interval(),
    });
    this.iSent = this.iAccepted = this.iRejected = 0;
    this.iLagMaxMs = 0;
  }

  private maybeFinish(): void {
    if (this.finished || this.next < this.total || this.inFlight > 0) return;
    this.finished = true;
    this.stopReports?.();
    this.report();
    this.agent.destroy();
    this.post({
      type: 'publisher-final',
      sent: this.sent,
      accepted: this.accepted.toBytes(),
      rejectedByStatus: this.rejectedByStatus,
      skipped: this.skipped,
      noTarget: this.noTarget,
      histograms: this.takeHistograms(),
      self: this.self.total(),
    });
  }
}

/** Runs the publisher worker on `port`. */
export function runPublisher(data: PublisherWorkerData, port: MessagePort): void {
  const publisher = new Publisher(data, port);
  port.on('message', (msg: ToWorker) => publisher.handle(msg));
  void publisher.warm().then(() => {
    port.postMessage({ type: 'ready', role: 'publisher' } satisfies FromWorker);
  });
}
