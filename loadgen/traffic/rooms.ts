/**
 * Room traffic on the device side: joining rooms, resuming them after a
 * reconnect with `since: {offset, epoch}`, and the receiving half of the room
 * ledger.
 *
 * Rules, shared with the publisher and the coordinator's merge:
 * - Room `k` is named `r${k}`; room message number `r` goes to room `r mod count`,
 *   and is the `q = floor(r / count)`-th message of that room.
 * - Device `i` (global index, `i < devices`) joins rooms
 *   `(i + j * step) mod count` for `j` in `[0, perDevice)`, with
 *   `step = max(1, floor(count / perDevice))` so its rooms are spread out.
 * - Every member owes one delivery of every message of its room, whether it was
 *   connected at the time or not: a member that was away and failed to recover
 *   the message shows as lost.
 */
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../../core/measure/histogram.js';
import { bytesEqual, scanned } from '../frame-scan.js';
import type { DeviceChannel } from './device-traffic.js';

/** Room index -> room name. */
export function roomName(k: number): string {
  return `r${k}`;
}

/** Distance between a device's consecutive rooms. */
export function roomStep(count: number, perDevice: number): number {
  return Math.max(1, Math.floor(count / Math.max(1, perDevice)));
}

/** The `j`-th room of global device `i`. */
export function roomOf(i: number, j: number, count: number, perDevice: number): number {
  return (i + j * roomStep(count, perDevice)) % count;
}

/** How many of devices `0..devices-1` are members of room `k`. */
export function roomMembers(k: number, devices: number, count: number, perDevice: number): number {
  const step = roomStep(count, perDevice);
  let n = 0;
  for (let j = 0; j < perDevice; j++) {
    // Members through their j-th room: i ≡ k - j*step (mod count).
    const base = (((k - j * step) % count) + count) % count;
    if (base < devices) n += Math.floor((devices - 1 - base) / count) + 1;
  }
  return n;
}

/** The receiving side of the room ledger of one worker, structured-clone friendly. */
export interface RoomFinal {
  /** `delivered[r]`: this worker's members that got room message r (first time) before the deadline. */
  delivered: Uint32Array;
  /** `late[r]`: members that first got message r after the deadline. */
  late: Uint32Array;
  /** Arrivals of a message the member had already seen (e.g. again through recovery). */
  duplicates: number;
  /** First arrivals that came in a `subscribed` answer to a resume (`since`). */
  recovered: number;
  /** Resumes answered `recovered: false` or `complete: false`: history did not cover the gap. */
  resyncs: number;
  /** Frames that looked like room traffic but could not be read. */
  badFrames: number;
}

/**
 * How far back the per-(device, room) de-duplication window reaches, in
 * messages of that room. It must exceed the node's room history (default 100),
 * because a resume may hand back that many older messages after newer live ones
 * have already arrived. An arrival older than the window counts as a duplicate.
 */
const WINDOW = 256;
const WORDS = WINDOW / 32;

/** A growable per-message counter array. */
function bump(arr: Uint32Array, r: number): Uint32Array {
  let a = arr;
  if (r >= a.length) {
    const grown = new Uint32Array(Math.max(r + 1, a.length * 2));
    grown.set(a);
    a = grown;
  }
  a[r] = (a[r] ?? 0) + 1;
  return a;
}

interface BenchMessage {
  seq: number;
  t: number;
}

/** Reads `{payload: {seq, t}}` of a room message. */
function readBench(message: unknown): BenchMessage | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const payload = (message as { payload?: unknown }).payload;
  if (typeof payload !== 'object' || payload === null) return undefined;
  const { seq, t } = payload as { seq?: unknown; t?: unknown };
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || typeof t !== 'number') {
    return undefined;
  }
  return { seq, t };
}

/**
 * One worker's room members. State lives in flat typed arrays indexed by
 * slot = local device * perDevice + j, so a hundred thousand members cost a
 * few arrays rather than objects.
 */
export class RoomTraffic {
  private readonly count: number;
  private readonly perDevice: number;
  private readonly step: number;
  /** Local devices below this take part (global index < devices). */
  private readonly members: number;
  /** 1 while a slot's subscribe with `since` awaits its answer. */
  private readonly resuming: Uint8Array;
  // Resume position per slot: newest offset seen in `epochs[slot]` (undefined = never subscribed).
  private readonly epochs: Array<string | undefined>;
  private readonly offsets: Float64Array;
  // De-duplication window per slot: newest q seen, and a ring of WINDOW bits.
  private readonly highQ: Float64Array;
  private readonly seen: Uint32Array;
  private readonly hist: LatencyHistogram = createLatencyHistogram();
  private delivered: Uint32Array = new Uint32Array(1024);
  private late: Uint32Array = new Uint32Array(1024);
  private duplicates = 0;
  private recovered = 0;
  private resyncs = 0;
  private badFrames = 0;
  private iReceived = 0;
  private pastDeadline = false;
  private channel: DeviceChannel | undefined;
  /** Local devices opened before `start` gave us a channel; subscribed then. */
  private readonly openBeforeStart = new Set<number>();

  constructor(
    settings: { count: number; perDevice: number },
    private readonly firstDevice: number,
    deviceCount: number,
    devices: number,
  ) {
    this.count = settings.count;
    this.perDevice = settings.perDevice;
    this.step = roomStep(this.count, this.perDevice);
    this.members = Math.max(0, Math.min(deviceCount, devices - firstDevice));
    const slots = this.members * this.perDevice;
    this.epochs = new Array<string | undefined>(slots).fill(undefined);
    this.offsets = new Float64Array(slots);
    this.highQ = new Float64Array(slots).fill(-1);
    this.seen = new Uint32Array(slots * WORDS);
    this.resuming = new Uint8Array(slots);
  }

  /** Gives the channel; devices that opened before now subscribe at once. */
  attach(channel: DeviceChannel): void {
    this.channel = channel;
    const waiting = [...this.openBeforeStart];
    this.openBeforeStart.clear();
    // Only those still open: a closed one subscribes when it opens again.
    for (const local of waiting) if (channel.isOpen(local)) this.onOpen(local);
  }

  /** Arrivals from now on are late. */
  deadline(): void {
    this.pastDeadline = true;
  }

  /** Subscribes local device `local` to its rooms: `dump` the first time, `since` afterwards. */
  onOpen(local: number): void {
    if (local >= this.members) return;
    const channel = this.channel;
    if (!channel) {
      this.openBeforeStart.add(local);
      return;
    }
    const i = this.firstDevice + local;
    for (let j = 0; j < this.perDevice; j++) {
      const slot = local * this.perDevice + j;
      const room = roomName(roomOf(i, j, this.count, this.perDevice));
      const epoch = this.epochs[slot];
      // The first subscribe asks for a dump: it learns the room's position and
      // hands over anything published before this member joined.
      const frame =
        epoch === undefined
          ? `{"type":"subscribe","room":"${room}","dump":true}`
          : `{"type":"subscribe","room":"${room}","since":{"offset":${this.offsets[slot]},"epoch":${JSON.stringify(epoch)}}}`;
      if (!channel.send(local, frame)) return;
      this.resuming[slot] = epoch === undefined ? 0 : 1;
    }
  }

  /** Handles `room` and `subscribed` frames; false for any other type. */
  onFrame(
    local: number,
    frame: { type: string } & Record<string, unknown>,
    nowUs: number,
  ): boolean {
    if (frame.type === 'room') {
      const slot = this.slotOf(local, frame.room);
      const offset = frame.offset;
      const epoch = frame.epoch;
      if (slot < 0 || typeof offset !== 'number' || typeof epoch !== 'string') {
        this.badFrames++;
        return true;
      }
      this.note(slot, epoch, offset);
      this.arrive(slot, frame.message, nowUs, false);
      return true;
    }
    if (frame.type === 'subscribed') {
      const slot = this.slotOf(local, frame.room);
      if (slot < 0) {
        this.badFrames++;
        return true;
      }
      const resumed = this.resuming[slot] === 1;
      this.resuming[slot] = 0;
      if (frame.recovered === false || frame.complete === false) this.resyncs++;
      if (Array.isArray(frame.messages)) {
        for (const m of frame.messages as unknown[]) {
          const message =
            typeof m === 'object' && m !== null ? (m as { message?: unknown }).message : undefined;
          this.arrive(slot, message, nowUs, resumed);
        }
      }
      if (typeof frame.epoch === 'string' && typeof frame.offset === 'number') {
        this.note(slot, frame.epoch, frame.offset);
      }
      return true;
    }
    return false;
  }

  /** Room frames received this interval. */
  takeReceived(): number {
    const n = this.iReceived;
    this.iReceived = 0;
    return n;
  }

  /** The `room` latency snapshot of this interval. */
  takeHistogram(): string {
    const out = encodeHistogram(this.hist);
    this.hist.reset();
    return out;
  }

  /** The receiving side of the room ledger. */
  final(): RoomFinal {
    return {
      delivered: this.delivered,
      late: this.late,
      duplicates: this.duplicates,
      recovered: this.recovered,
      resyncs: this.resyncs,
      badFrames: this.badFrames,
    };
  }

  /** The slot of local device `local` in room `name`, or -1 if it is not a member. */
  /**
   * A `room` frame the fleet's fast lane scanned (frame-scan.ts `scanned`),
   * counted exactly as {@link onFrame} counts a parsed one. The epoch is compared
   * as bytes and decoded only when it changed.
   */
  onRoomScanned(local: number, data: Buffer, nowUs: number): void {
    const slot = this.slotOfIndex(local, scanned.room);
    if (slot < 0) {
      this.badFrames++;
      return;
    }
    const { epochStart, epochEnd } = scanned;
    const known = this.epochs[slot];
    const epoch =
      known !== undefined && bytesEqual(data, epochStart, epochEnd, known)
        ? known
        : data.toString('latin1', epochStart, epochEnd);
    this.note(slot, epoch, scanned.offset);
    this.iReceived++;
    this.arriveBench(slot, scanned.seq, scanned.t, nowUs, false);
  }

  private slotOf(local: number, name: unknown): number {
    if (typeof name !== 'string' || name[0] !== 'r') return -1;
    return this.slotOfIndex(local, Number(name.slice(1)));
  }

  /** The slot of local device `local`'s membership of room `rk`, or -1 when it is not a member. */
  private slotOfIndex(local: number, k: number): number {
    if (local >= this.members || !Number.isInteger(k) || k < 0 || k >= this.count) return -1;
    const i = this.firstDevice + local;
    const d = (((k - i) % this.count) + this.count) % this.count;
    if (d % this.step !== 0) return -1;
    const j = d / this.step;
    return j < this.perDevice ? local * this.perDevice + j : -1;
  }

  /** Moves the slot's resume position forward (a new epoch replaces the old one). */
  private note(slot: number, epoch: string, offset: number): void {
    if (this.epochs[slot] !== epoch) {
      this.epochs[slot] = epoch;
      this.offsets[slot] = offset;
    } else if (offset > (this.offsets[slot] ?? 0)) {
      this.offsets[slot] = offset;
    }
  }

  private arrive(slot: number, message: unknown, nowUs: number, recovered: boolean): void {
    this.iReceived++;
    const bench = readBench(message);
    if (!bench) {
      this.badFrames++;
      return;
    }
    this.arriveBench(slot, bench.seq, bench.t, nowUs, recovered);
  }

  /** Room message `r` (scheduled at `tUs`) reached slot `slot`: dedupe, ledger, latency. */
  private arriveBench(
    slot: number,
    r: number,
    tUs: number,
    nowUs: number,
    recovered: boolean,
  ): void {
    if (!this.firstSight(slot, Math.floor(r / this.count))) {
      this.duplicates++;
      return;
    }
    if (recovered) this.recovered++;
    if (this.pastDeadline) {
      this.late = bump(this.late, r);
      return;
    }
    this.delivered = bump(this.delivered, r);
    // From the publisher's scheduled time, also for recovered messages.
    recordUs(this.hist, nowUs - tUs);
  }

  /** Marks the room's q-th message as seen by this slot; false if it was already (or is too old). */
  private firstSight(slot: number, q: number): boolean {
    const high = this.highQ[slot] ?? -1;
    const base = slot * WORDS;
    if (q > high) {
      // Clear the ring positions the window slides over.
      const from = Math.max(high + 1, q - WINDOW + 1);
      for (let x = from; x <= q; x++) {
        const pos = x % WINDOW;
        const w = base + (pos >>> 5);
        this.seen[w] = (this.seen[w] ?? 0) & ~(1 << (pos & 31));
      }
      this.highQ[slot] = q;
    } else if (q <= high - WINDOW) {
      return false;
    }
    const pos = q % WINDOW;
    const w = base + (pos >>> 5);
    const mask = 1 << (pos & 31);
    const word = this.seen[w] ?? 0;
    if (word & mask) return false;
    this.seen[w] = word | mask;
    return true;
  }
}
