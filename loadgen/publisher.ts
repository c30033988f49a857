import { Agent, request } from 'node:http';
import type { MessagePort } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../core/measure/histogram.js';
import { addCounts, Bitset } from '../core/measure/ledger.js';
import { runThisThreadAhead } from '../core/priority.js';
import { Rng } from '../core/rng.js';
import type {
  FromWorker,
  PublishedKind,
  PublisherWorkerData,
  PublishKind,
  ToWorker,
} from './messages.js';
import { SelfMonitor } from './self-check.js';

/** One kind's ledger side and interval counters. */
class KindLedger {
  sent = 0;
  readonly seqs = new Bitset();
  readonly accepted = new Bitset();
  readonly rejectedByStatus: Record<string, number> = {};
  iSent = 0;
  iAccepted = 0;
  iRejected = 0;

  final(): PublishedKind {
    return {
      sent: this.sent,
      seqs: this.seqs.toBytes(),
      accepted: this.accepted.toBytes(),
      rejectedByStatus: { ...this.rejectedByStatus },
    };
  }

  takeInterval(): { sent: number; accepted: number; rejected: number } {
    const out = { sent: this.iSent, accepted: this.iAccepted, rejected: this.iRejected };
    this.iSent = this.iAccepted = this.iRejected = 0;
    return out;
  }
}

/** One kind's open-model schedule: message m is due at start + m * intervalUs, m < total. */
interface Schedule {
  kind: PublishKind;
  intervalUs: number;
  total: number;
  next: number;
}

/** How many 404 times the publisher keeps (enough to see any window after a restart). */
const MAX_NOT_FOUND_TIMES = 100_000;

/** The statuses that mean "accepted", per kind. */
const ACCEPTED: Record<PublishKind, ReadonlySet<string>> = {
  direct: new Set(['200']),
  indirect: new Set(['202', '200']),
  room: new Set(['200']),
};

function schedule(kind: PublishKind, rateHz: number, durationMs: number): Schedule {
  return {
    kind,
    intervalUs: rateHz > 0 ? 1e6 / rateHz : Number.POSITIVE_INFINITY,
    total: rateHz > 0 ? Math.floor((durationMs / 1000) * rateHz) : 0,
    next: 0,
  };
}

/** A failed request's ledger key: `refused` when nothing listened, else `no_answer`. */
function transportStatus(err: NodeJS.ErrnoException): string {
  return err.code === 'ECONNREFUSED' ? 'refused' : 'no_answer';
}

/**
 * The open-model publisher: one schedule per traffic kind (direct pushes,
 * indirect pushes through the queue, room messages), each evenly spaced at its
 * own rate from the publish start, sent when due whether or not earlier
 * requests have been answered. The scheduled time travels in the payload, so a
 * slow server shows up as latency instead of as a slower publisher
 * (coordinated omission).
 *
 * Direct and indirect pushes share one seq space (devices see both as `push`
 * frames and the fleet's ledger keys on seq); which seq was which kind is kept
 * per kind. Room message `r` has its own numbering and goes to room
 * `r{r mod count}`. Pushes go to random devices that were connected when
 * publishing began. Requests go round-robin over the API targets; a request to
 * a dead target fails and is counted (`refused` / `no_answer`), never retried.
 */
export class Publisher {
  private readonly agent: Agent;
  private urls: URL[];
  private nextUrl = 0;
  private readonly rng: Rng;
  private readonly kinds: Record<PublishKind, KindLedger> = {
    direct: new KindLedger(),
    indirect: new KindLedger(),
    room: new KindLedger(),
  };
  private readonly schedules: Schedule[];
  /** HTTP answer time from the scheduled send time, every kind. */
  private readonly api: LatencyHistogram = createLatencyHistogram();
  /** Scheduled times of pushes answered 404 (the node found no registry entry). */
  private readonly notFoundAtUs: number[] = [];
  private readonly self = new SelfMonitor();
  private readonly pads: Record<PublishKind, string>;
  private readonly roomCount: number;
  private targets: Int32Array = new Int32Array(0);
  private startUs = 0;
  private pushSeq = 0;
  private inFlight = 0;
  private skipped = 0;
  private noTarget = 0;
  private iLagMaxMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopReports: (() => void) | undefined;
  private finished = false;

  constructor(
    private readonly data: PublisherWorkerData,
    private readonly port: MessagePort,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 64 });
    this.urls = data.httpUrls.map((u) => new URL(u));
    this.rng = new Rng(data.seed);
    const rooms = data.rooms;
    this.roomCount = rooms && rooms.count > 0 ? rooms.count : 0;
    this.pads = {
      direct: 'x'.repeat(data.payloadBytes),
      indirect: 'x'.repeat(data.indirect?.payloadBytes ?? 0),
      room: 'x'.repeat(rooms?.payloadBytes ?? 0),
    };
    this.schedules = [
      schedule('direct', data.rateHz, data.durationMs),
      schedule('indirect', data.indirect?.rateHz ?? 0, data.durationMs),
      schedule('room', this.roomCount > 0 ? (rooms?.rateHz ?? 0) : 0, data.durationMs),
    ].filter((s) => s.total > 0);
  }

  /**
   * Opens keep-alive connections to every API target before the clock starts,
   * so the first scheduled sends do not also pay for TCP handshakes the steady
   * state never sees.
   */
  async warm(connections = 8): Promise<void> {
    const per = Math.max(1, Math.ceil(connections / Math.max(1, this.urls.length)));
    await Promise.all(
      this.urls.flatMap((url) =>
        Array.from(
          { length: per },
          () =>
            new Promise<void>((resolve) => {
              const req = request({
                agent: this.agent,
                host: url.hostname,
                port: url.port,
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
      case 'api-targets':
        this.urls = msg.urls.map((u) => new URL(u));
        this.nextUrl = 0;
        break;
      case 'deadline':
      case 'finish':
      case 'clock':
        // The publisher runs on the coordinator's host: its clock is the run's.
        break;
    }
  }

  private post(msg: FromWorker): void {
    this.port.postMessage(msg);
  }

  /** The schedule whose next message is due first, or undefined when all are done. */
  private earliest(): Schedule | undefined {
    let best: Schedule | undefined;
    let bestUs = Number.POSITIVE_INFINITY;
    for (const s of this.schedules) {
      if (s.next >= s.total) continue;
      const due = this.startUs + s.next * s.intervalUs;
      if (due < bestUs) {
        best = s;
        bestUs = due;
      }
    }
    return best;
  }

  private tick(): void {
    this.timer = undefined;
    const now = monoNowUs();
    for (;;) {
      const s = this.earliest();
      if (!s) break;
      const scheduledUs = this.startUs + s.next * s.intervalUs;
      if (scheduledUs > now) break;
      const m = s.next++;
      this.iLagMaxMs = Math.max(this.iLagMaxMs, (now - scheduledUs) / 1000);
      this.due(s.kind, m, scheduledUs);
    }
    const s = this.earliest();
    if (s) {
      const waitMs = Math.max(0, (this.startUs + s.next * s.intervalUs - monoNowUs()) / 1000);
      this.timer = setTimeout(() => this.tick(), waitMs);
    } else {
      this.maybeFinish();
    }
  }

  /** Message `m` of `kind` is due now. */
  private due(kind: PublishKind, m: number, scheduledUs: number): void {
    if (kind !== 'room' && this.targets.length === 0) {
      // No device was connected when publishing began: nothing can be addressed.
      this.noTarget++;
      return;
    }
    if (this.inFlight >= this.data.maxInFlight) {
      // Not sending is the generator's failure, not the server's: it is counted
      // and the coordinator marks the run invalid.
      this.skipped++;
      return;
    }
    if (kind === 'room') {
      const room = m % this.roomCount;
      const body = JSON.stringify({
        id: `room${m}`,
        payload: { seq: m, t: scheduledUs, pad: this.pads.room },
      });
      this.send('room', m, scheduledUs, 'PUT', `/v1/rooms/r${room}/messages`, body);
      return;
    }
    const seq = this.pushSeq++;
    const device = this.targets[this.rng.int(this.targets.length)] ?? 0;
    const payload = { seq, t: scheduledUs, pad: this.pads[kind] };
    if (kind === 'direct') {
      const body = JSON.stringify({ id: `m${seq}`, payload });
      this.send('direct', seq, scheduledUs, 'POST', `/v1/push/d${device}`, body);
    } else {
      const body = JSON.stringify({ device: `d${device}`, id: `m${seq}`, payload });
      this.send('indirect', seq, scheduledUs, 'POST', '/v1/queue', body);
    }
  }

  private send(
    kind: PublishKind,
    seq: number,
    scheduledUs: number,
    method: string,
    path: string,
    body: string,
  ): void {
    const ledger = this.kinds[kind];
    ledger.sent++;
    ledger.iSent++;
    ledger.seqs.add(seq);
    this.inFlight++;
    let settled = false;
    const settle = (status: string) => {
      if (settled) return;
      settled = true;
      this.inFlight--;
      recordUs(this.api, monoNowUs() - scheduledUs);
      if (ACCEPTED[kind].has(status)) {
        ledger.accepted.add(seq);
        ledger.iAccepted++;
      } else {
        ledger.rejectedByStatus[status] = (ledger.rejectedByStatus[status] ?? 0) + 1;
        ledger.iRejected++;
        if (status === '404' && this.notFoundAtUs.length < MAX_NOT_FOUND_TIMES) {
          this.notFoundAtUs.push(scheduledUs);
        }
      }
      this.maybeFinish();
    };
    const url = this.urls[this.nextUrl++ % Math.max(1, this.urls.length)];
    if (!url) {
      // Every API target is gone: the message cannot be published.
      queueMicrotask(() => settle('no_api_target'));
      return;
    }
    const req = request({
      agent: this.agent,
      host: url.hostname,
      port: url.port,
      method,
      path,
      headers: {
        authorization: `Bearer ${this.data.apiKey}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
      timeout: this.data.requestTimeoutMs,
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => settle(String(res.statusCode ?? 0)));
      res.on('error', () => settle('no_answer'));
    });
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', (err: NodeJS.ErrnoException) => settle(transportStatus(err)));
    req.end(body);
  }

  private takeHistograms(): Record<string, string> {
    const out = { api: encodeHistogram(this.api) };
    this.api.reset();
    return out;
  }

  private report(): void {
    const direct = this.kinds.direct.takeInterval();
    const indirect = this.kinds.indirect.takeInterval();
    const room = this.kinds.room.takeInterval();
    this.post({
      type: 'publisher-interval',
      atUs: monoNowUs(),
      sent: direct.sent + indirect.sent,
      accepted: direct.accepted + indirect.accepted,
      rejected: direct.rejected + indirect.rejected,
      inFlight: this.inFlight,
      scheduleLagMaxMs: this.iLagMaxMs,
      byKind: { direct, indirect, room },
      histograms: this.takeHistograms(),
      self: this.self.interval(),
    });
    this.iLagMaxMs = 0;
  }

  private maybeFinish(): void {
    if (this.finished || this.timer || this.earliest() || this.inFlight > 0) return;
    this.finished = true;
    this.stopReports?.();
    this.report();
    this.agent.destroy();
    const { direct, indirect } = this.kinds;
    // The push ledger (direct + indirect share one seq space).
    const accepted = new Bitset();
    accepted.addAll(direct.accepted);
    accepted.addAll(indirect.accepted);
    const rejectedByStatus: Record<string, number> = { ...direct.rejectedByStatus };
    addCounts(rejectedByStatus, indirect.rejectedByStatus);
    this.post({
      type: 'publisher-final',
      notFoundAtUs: this.notFoundAtUs,
      sent: direct.sent + indirect.sent,
      accepted: accepted.toBytes(),
      rejectedByStatus,
      kinds: {
        direct: direct.final(),
        indirect: indirect.final(),
        room: this.kinds.room.final(),
      },
      roomLayout: {
        count: this.roomCount,
        perDevice: this.data.rooms?.perDevice ?? 0,
        devices: this.data.rooms?.devices ?? 0,
      },
      skipped: this.skipped,
      noTarget: this.noTarget,
      histograms: this.takeHistograms(),
      self: this.self.total(),
    });
  }
}

/** Runs the publisher worker on `port`. */
export function runPublisher(data: PublisherWorkerData, port: MessagePort): void {
  runThisThreadAhead(data.aheadBy ?? 0);
  const publisher = new Publisher(data, port);
  port.on('message', (msg: ToWorker) => publisher.handle(msg));
  void publisher.warm().then(() => {
    port.postMessage({ type: 'ready', role: 'publisher' } satisfies FromWorker);
  });
}
