/**
 * Device-to-device traffic: an open-model schedule of `d2d` frames from sender
 * devices to their partners, the sender's `d2d_status` outcomes and the
 * receiver's arrivals.
 *
 * Pairing (global indices, over devices `0..devices-1`, `A` accounts): device
 * `i` is in account `i mod A`, so the devices of one account are
 * `a, a + A, a + 2A, …`. Consecutive ones pair up: `i` with `i + A` when
 * `floor(i / A)` is even, with `i - A` when it is odd. An account with an odd
 * number of devices leaves its last one to send to its predecessor; an account
 * with a single device has no partner, so that device never sends. Partners are
 * therefore always in the same account (which the node allows by default) and
 * `A` connections apart in the fleet's connect order; with several workers
 * connecting at once the balancer sees their connects interleaved, so with `n`
 * nodes a pair shares a node with probability about `1/n`.
 *
 * Message `m` of worker `w` has seq `m * workerStride + w` (unique across
 * workers), id `x${seq}`, and goes from `senders[m mod senders.length]`.
 */
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../../core/measure/histogram.js';
import { Bitset } from '../../core/measure/ledger.js';
import type { DeviceChannel } from './device-traffic.js';

/** The partner of global device `i`, or -1 when its account has no other device. */
export function d2dPartner(i: number, devices: number, accounts: number): number {
  if (i < 0 || i >= devices) return -1;
  const q = Math.floor(i / accounts);
  if (q % 2 === 1) return i - accounts;
  if (i + accounts < devices) return i + accounts;
  return q >= 2 ? i - accounts : -1;
}

/** One worker's d2d ledger, structured-clone friendly. */
export interface D2dFinal {
  /** Bitset of seqs this worker's devices sent. */
  sent: Uint8Array;
  /** Bitset of seqs whose sender got `d2d_status` `delivered`. */
  accepted: Uint8Array;
  /** `d2d_status` outcomes by status, `delivered` included. */
  statuses: Record<string, number>;
  /** Scheduled messages whose sender was not open at its slot (neither sent nor lost). */
  notSent: number;
  /** Bitset of seqs that arrived at this worker's devices (first time) before the deadline. */
  delivered: Uint8Array;
  /** Bitset of seqs that first arrived after the deadline. */
  late: Uint8Array;
  duplicates: number;
  badFrames: number;
}

/** Settings of one worker's d2d traffic. */
export interface D2dSettings {
  /** Messages per second across all workers. */
  rateHz: number;
  payloadBytes: number;
  /** Devices taking part (global indices below this). */
  devices: number;
  accounts: number;
  workerIndex: number;
  workerStride: number;
  firstDevice: number;
  deviceCount: number;
  durationMs: number;
}

/** One worker's d2d senders and receivers. */
export class D2dTraffic {
  private readonly senders: Int32Array;
  private readonly partners: Int32Array;
  private readonly intervalUs: number;
  private readonly total: number;
  private readonly pad: string;
  private readonly sent = new Bitset();
  private readonly accepted = new Bitset();
  private readonly delivered = new Bitset();
  private readonly late = new Bitset();
  private readonly statuses: Record<string, number> = {};
  private readonly hist: LatencyHistogram = createLatencyHistogram();
  /**
   * Cold messages (`d2d_cold`): the sender's node had no cached route to the
   * receiver, because the receiver (re)connected since its last message, or the
   * sender did (its new node never looked the partner up; the sender marks that
   * message `"c":1`). The rest are warm (`d2d_warm`). Each device has one
   * partner, so one flag per device and direction.
   */
  private readonly cold: LatencyHistogram = createLatencyHistogram();
  private readonly warm: LatencyHistogram = createLatencyHistogram();
  private readonly heard: Uint8Array;
  /** Whether local device k has sent on its current connection. */
  private readonly spoke: Uint8Array;
  private channel: DeviceChannel | undefined;
  private timer: NodeJS.Timeout | undefined;
  private startUs = 0;
  private next = 0;
  private notSent = 0;
  private duplicates = 0;
  private badFrames = 0;
  private stopped = false;
  private pastDeadline = false;
  private iSent = 0;
  private iReceived = 0;

  constructor(
    private readonly s: D2dSettings,
    private readonly now: () => number,
  ) {
    const senders: number[] = [];
    const partners: number[] = [];
    const last = Math.min(s.firstDevice + s.deviceCount, s.devices);
    for (let i = s.firstDevice; i < last; i++) {
      const p = d2dPartner(i, s.devices, s.accounts);
      if (p < 0) continue;
      senders.push(i - s.firstDevice);
      partners.push(p);
    }
    this.senders = Int32Array.from(senders);
    this.partners = Int32Array.from(partners);
    // This worker's share of the rate follows its share of the taking-part devices.
    const share = s.devices > 0 ? Math.max(0, last - s.firstDevice) / s.devices : 0;
    const rateHz = s.rateHz * share;
    this.intervalUs = rateHz > 0 ? 1e6 / rateHz : Number.POSITIVE_INFINITY;
    this.total =
      rateHz > 0 && this.senders.length > 0 ? Math.floor((s.durationMs / 1000) * rateHz) : 0;
    this.pad = 'x'.repeat(s.payloadBytes);
    this.heard = new Uint8Array(s.deviceCount);
    this.spoke = new Uint8Array(s.deviceCount);
  }

  /** Local device `local` lost its connection: the next message to it finds no cached route. */
  onClose(local: number): void {
    if (local >= 0 && local < this.heard.length) {
      this.heard[local] = 0;
      this.spoke[local] = 0;
    }
  }

  /** Starts the schedule: message m is due at `atUs + m / rate`. */
  start(atUs: number, channel: DeviceChannel): void {
    this.channel = channel;
    this.startUs = atUs;
    if (this.total > 0) this.tick();
  }

  /** Stops sending; arrivals from now on are late. Statuses are still counted. */
  stop(): void {
    this.stopped = true;
    this.pastDeadline = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Handles `d2d` and `d2d_status` frames; false for any other type. */
  onFrame(
    local: number,
    frame: { type: string } & Record<string, unknown>,
    nowUs: number,
  ): boolean {
    if (frame.type === 'd2d_status') {
      const seq = readSeqId(frame.id);
      const status = typeof frame.status === 'string' ? frame.status : 'unknown';
      if (seq < 0) {
        this.badFrames++;
        return true;
      }
      this.statuses[status] = (this.statuses[status] ?? 0) + 1;
      if (status === 'delivered') this.accepted.add(seq);
      return true;
    }
    if (frame.type === 'd2d') {
      this.iReceived++;
      const payload = frame.payload;
      const { seq, t, c } = (typeof payload === 'object' && payload !== null ? payload : {}) as {
        seq?: unknown;
        t?: unknown;
        c?: unknown;
      };
      if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || typeof t !== 'number') {
        this.badFrames++;
        return true;
      }
      if (this.delivered.has(seq) || this.late.has(seq)) {
        this.duplicates++;
        return true;
      }
      if (this.pastDeadline) {
        this.late.add(seq);
        return true;
      }
      this.delivered.add(seq);
      // From the sender's scheduled time (open model), on the host's monotonic clock.
      recordUs(this.hist, nowUs - t);
      const first = this.heard[local] === 0 || c === 1;
      if (local >= 0 && local < this.heard.length) this.heard[local] = 1;
      recordUs(first ? this.cold : this.warm, nowUs - t);
      return true;
    }
    return false;
  }

  /** d2d frames sent and received this interval. */
  takeCounts(): { sent: number; received: number } {
    const out = { sent: this.iSent, received: this.iReceived };
    this.iSent = this.iReceived = 0;
    return out;
  }

  /** The `d2d`, `d2d_cold` and `d2d_warm` latency snapshots of this interval. */
  takeHistograms(): Record<string, string> {
    const out = {
      d2d: encodeHistogram(this.hist),
      d2d_cold: encodeHistogram(this.cold),
      d2d_warm: encodeHistogram(this.warm),
    };
    this.hist.reset();
    this.cold.reset();
    this.warm.reset();
    return out;
  }

  /** This worker's d2d ledger. */
  final(): D2dFinal {
    return {
      sent: this.sent.toBytes(),
      accepted: this.accepted.toBytes(),
      statuses: { ...this.statuses },
      notSent: this.notSent,
      delivered: this.delivered.toBytes(),
      late: this.late.toBytes(),
      duplicates: this.duplicates,
      badFrames: this.badFrames,
    };
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const now = this.now();
    while (this.next < this.total && this.startUs + this.next * this.intervalUs <= now) {
      const m = this.next++;
      this.sendOne(m, this.startUs + m * this.intervalUs);
    }
    if (this.next < this.total) {
      const waitMs = Math.max(0, (this.startUs + this.next * this.intervalUs - this.now()) / 1000);
      this.timer = setTimeout(() => this.tick(), waitMs);
    }
  }

  private sendOne(m: number, scheduledUs: number): void {
    const k = m % this.senders.length;
    const local = this.senders[k] ?? 0;
    const partner = this.partners[k] ?? 0;
    const seq = m * this.s.workerStride + this.s.workerIndex;
    const channel = this.channel;
    // The sender's first message on this connection: its node has no route cached yet.
    const cold = this.spoke[local] === 0 ? ',"c":1' : '';
    const text = `{"type":"d2d","to":"d${partner}","id":"x${seq}","payload":{"seq":${seq},"t":${scheduledUs}${cold},"pad":"${this.pad}"}}`;
    if (!channel?.isOpen(local) || !channel.send(local, text)) {
      this.notSent++;
      return;
    }
    this.spoke[local] = 1;
    this.sent.add(seq);
    this.iSent++;
  }
}

/** The seq in a d2d message id `x<seq>`, or -1. */
function readSeqId(id: unknown): number {
  if (typeof id !== 'string' || id[0] !== 'x') return -1;
  const n = Number(id.slice(1));
  return Number.isInteger(n) && n >= 0 ? n : -1;
}
