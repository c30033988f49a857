import { createSecureContext, type SecureContext } from 'node:tls';
import { everyOnGrid, monoNowUs, setClockOffsetUs } from '../core/clock.js';
import { PushbenchError } from '../core/errors.js';
import {
  createLatencyHistogram,
  encodeHistogram,
  type LatencyHistogram,
  recordUs,
} from '../core/measure/histogram.js';
import { Bitset } from '../core/measure/ledger.js';
import { runThisThreadAhead } from '../core/priority.js';
import { Rng } from '../core/rng.js';
import { CloseCode, retryableCloseCodes } from '../core/ws/close-codes.js';
import { signToken } from '../server/token.js';
import { scanned, scanPush, scanRoom } from './frame-scan.js';
import type { DeviceRoute, DeviceWorkerData, FromWorker, ShardLink, ToWorker } from './messages.js';
import { nextDelayMs } from './reconnect.js';
import { SelfMonitor } from './self-check.js';
import type { DeviceChannel, DeviceTraffic } from './traffic/device-traffic.js';
import { createDeviceTraffic } from './traffic/index.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsCloseInfo,
  type WsTlsOptions,
} from './ws-client/connection.js';

/** How often connect, close and heartbeat timeouts are swept. */
const SWEEP_INTERVAL_MS = 100;
/** A close handshake not finished within this is cut. */
const CLOSE_TIMEOUT_US = 2_000_000;
/** Longest run of attempts one `pump` makes before yielding to I/O, µs. */
const PUMP_SLICE_US = 5000;

/** What a device is doing between connection attempts (the connection object knows the rest). */
enum Mode {
  /** Not asked to connect yet (a reserve device, or the ramp has not reached it). */
  Unstarted = 0,
  /** An attempt is in progress, or the connection is open or closing. */
  Active = 1,
  /** Waiting in the due queue for its next attempt. */
  Waiting = 2,
  /** Stopped trying: `maxAttempts` reached or a terminal close code. */
  GaveUp = 3,
}

/** Why the fleet itself ended an open connection; decides how the close is counted. */
enum OwnClose {
  None = 0,
  /** Periodic reconnect: not a loss, reconnect at once. */
  Periodic = 1,
  /** Nothing received for `heartbeatTimeoutMs`. */
  Heartbeat = 2,
  /** A goaway under the server-hint policy. */
  Goaway = 3,
}

/** The device id and account id of global device index `i`. */
export function deviceIdentity(
  i: number,
  accounts: number,
): { deviceId: string; accountId: string } {
  return { deviceId: `d${i}`, accountId: `a${i % accounts}` };
}

/** Where a device worker's reports go: a worker's parent port, or a test's collector. */
export interface ReportPort {
  postMessage(msg: FromWorker): void;
}

/**
 * The worker's one timer structure: a binary min-heap of (due time, device)
 * with lazy deletion. Each device has at most one live entry; rescheduling bumps
 * the device's generation, and entries of an older generation are skipped.
 */
class DueQueue {
  private readonly atUs: number[] = [];
  private readonly keys: number[] = [];
  private readonly gens: number[] = [];

  get size(): number {
    return this.atUs.length;
  }

  /** Due time of the earliest entry, or Infinity. */
  peekUs(): number {
    return this.atUs[0] ?? Number.POSITIVE_INFINITY;
  }

  push(atUs: number, key: number, gen: number): void {
    const { atUs: t, keys, gens } = this;
    let i = t.length;
    t.push(atUs);
    keys.push(key);
    gens.push(gen);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (t[parent]! <= atUs) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the earliest entry into `out` (avoids allocating a tuple per pop). */
  pop(out: { atUs: number; key: number; gen: number }): void {
    const { atUs: t, keys, gens } = this;
    out.atUs = t[0]!;
    out.key = keys[0]!;
    out.gen = gens[0]!;
    const lastT = t.pop()!;
    const lastK = keys.pop()!;
    const lastG = gens.pop()!;
    const n = t.length;
    if (n === 0) return;
    t[0] = lastT;
    keys[0] = lastK;
    gens[0] = lastG;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && t[l]! < t[m]!) m = l;
      if (r < n && t[r]! < t[m]!) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  clear(): void {
    this.atUs.length = this.keys.length = this.gens.length = 0;
  }

  private swap(a: number, b: number): void {
    const { atUs: t, keys, gens } = this;
    [t[a], t[b]] = [t[b]!, t[a]!];
    [keys[a], keys[b]] = [keys[b]!, keys[a]!];
    [gens[a], gens[b]] = [gens[b]!, gens[a]!];
  }
}

/** An open-loop run of first attempts: local devices [next, end), one every `intervalUs` from `startUs`. */
interface Ramp {
  first: number;
  next: number;
  end: number;
  startUs: number;
  intervalUs: number;
}

/**
 * One worker's share of the device fleet: opens connections open-loop at a
 * fixed rate, keeps them open (reconnecting by the scenario's policy after a
 * loss or a failed attempt, dropping silent ones, reconnecting periodically),
 * records connect, reconnect and push latency, de-duplicates pushes by message
 * number, and reports encoded histograms each interval. Devices are plain
 * connection objects plus typed arrays of per-device state; the fleet is the one
 * sink for all of them, and one due queue swept by one timer drives every
 * reconnect and periodic close.
 */
export class Fleet implements WsClientSink, DeviceChannel {
  private readonly conns: WsClientConnection[] = [];
  /** Series → histogram of this interval; `push@<region>` only with several regions. */
  private readonly hists = new Map<string, LatencyHistogram>();
  private readonly push: LatencyHistogram;
  private readonly connect: LatencyHistogram;
  private readonly reconnect: LatencyHistogram;
  /** Attempt due -> the node says the registry entry is written; null unless the scenario asks. */
  private readonly register: LatencyHistogram | null;
  /**
   * Per route: its TLS settings (one secure context per CA, made once), or
   * undefined for plain `ws://`; with TLS, the handshake's own time goes to
   * `tls_full` or `tls_resumed`, whose counts are the resumed share.
   */
  private readonly routeTls: Array<WsTlsOptions | undefined>;
  private readonly tlsFull: LatencyHistogram | null;
  private readonly tlsResumed: LatencyHistogram | null;
  /** With TLS, the connect's other parts: attempt started -> TCP up, handshake done -> upgraded. */
  private readonly tcp: LatencyHistogram | null;
  private readonly upgrade: LatencyHistogram | null;
  /** Per route: `push@`, `connect@`, `reconnect@<region>` series, when there are several regions. */
  private readonly regionPush: Array<LatencyHistogram | null>;
  private readonly regionConnect: Array<LatencyHistogram | null>;
  private readonly regionReconnect: Array<LatencyHistogram | null>;
  private readonly delivered = new Bitset();
  private readonly late = new Bitset();
  private readonly self = new SelfMonitor();
  private readonly rng: Rng;
  private readonly traffic: DeviceTraffic | null;

  // Per local device.
  private readonly route: Uint16Array;
  private readonly mode: Uint8Array;
  private readonly ownClose: Uint8Array;
  /** 1 until the device's first attempt has resolved. */
  private readonly firstPending: Uint8Array;
  private readonly everOpened: Uint8Array;
  /** Attempts made since the loss (or since the failed first attempt). */
  private readonly tries: Int32Array;
  private readonly prevDelayMs: Float64Array;
  /** When the current attempt was due: its ramp slot or the end of its delay. */
  private readonly dueUs: Float64Array;
  /** The goaway's `reconnectAfterMs` for the coming loss; -1 = none. */
  private readonly hintMs: Float64Array;
  /** Offset in `drops` of the device's open loss; -1 = none. */
  private readonly dropAt: Int32Array;
  private readonly gen: Uint32Array;

  private readonly queue = new DueQueue();
  private readonly popped = { atUs: 0, key: 0, gen: 0 };
  private readonly ramps: Ramp[] = [];
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAtUs = Number.POSITIVE_INFINITY;
  /** A catch-up slice of `pump` is queued (setImmediate). */
  private pumpSoon = false;
  /** Next reserve device (local index) a `connect-more` opens. */
  private nextReserve: number;

  /** [lostAtUs, backAtUs, attempts] per loss. */
  private drops: number[] = [];
  /** The node each loss in `drops` happened on, as an index into `nodeNames` (-1: unknown). */
  private readonly dropNodes: number[] = [];
  /** The node each device's current connection is on (from the node's hello), -1 while unknown. */
  private readonly nodeOf: Int32Array;
  private readonly nodeNames: string[] = [];
  private readonly nodeIndexes = new Map<string, number>();
  private initialUnresolved: number;
  private open = 0;
  private established = 0;
  private failedFirst = 0;
  private gaveUp = 0;
  private pastDeadline = false;
  private finishing = false;
  private rampReported = false;
  /** When the whole fleet's initial ramp is due to end (DeviceWorkerData.rampEndUs). */
  private fleetRampEndUs = 0;
  /** Waits for {@link fleetRampEndUs} before reporting the ramp. */
  private rampDoneTimer: NodeJS.Timeout | undefined;
  private duplicates = 0;
  private badFrames = 0;
  private readonly failuresByReason: Record<string, number> = {};
  private readonly closesByCode: Record<string, number> = {};
  private readonly lossesByCause: Record<string, number> = {};
  // Interval counters, reset at each report.
  private iAttempts = 0;
  private iOk = 0;
  private iFailures = 0;
  private iDisconnects = 0;
  private iReceived = 0;
  private iReconnectAttempts = 0;
  private iReconnects = 0;
  private iLosses = 0;
  private iPeriodic = 0;
  private iFailuresByReason: Record<string, number> = {};
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopReports: (() => void) | undefined;

  constructor(
    private readonly data: DeviceWorkerData,
    private readonly port: ReportPort,
    traffic: DeviceTraffic | null = null,
  ) {
    const n = data.deviceCount + data.reserveCount;
    for (let k = 0; k < n; k++) this.conns.push(new WsClientConnection(this, k));
    this.route = new Uint16Array(n);
    this.mode = new Uint8Array(n);
    this.nodeOf = new Int32Array(n).fill(-1);
    this.ownClose = new Uint8Array(n);
    this.firstPending = new Uint8Array(n);
    this.everOpened = new Uint8Array(n);
    this.tries = new Int32Array(n);
    this.prevDelayMs = new Float64Array(n);
    this.dueUs = new Float64Array(n);
    this.hintMs = new Float64Array(n).fill(-1);
    this.dropAt = new Int32Array(n).fill(-1);
    this.gen = new Uint32Array(n);
    this.nextReserve = data.deviceCount;
    this.initialUnresolved = data.deviceCount;
    this.rng = new Rng(data.seed);
    this.traffic = traffic;

    for (let k = 0; k < n; k++) this.route[k] = routeIndexOf(data.routes, this.globalIndex(k));
    this.push = this.series('push');
    this.connect = this.series('connect');
    this.reconnect = this.series('reconnect');
    this.register = data.registration ? this.series('register') : null;
    const regions = new Set(data.routes.map((r) => r.region));
    const regional = (prefix: string) =>
      data.routes.map((r) => (regions.size > 1 ? this.series(`${prefix}@${r.region}`) : null));
    const contexts = new Map<string, SecureContext>();
    this.routeTls = data.routes.map((r) => {
      if (r.tls === undefined) return undefined;
      const ca = r.tls.caPem ?? '';
      let secureContext = contexts.get(ca);
      if (!secureContext) {
        // No CA named: Node's bundled public ones.
        secureContext = createSecureContext(ca === '' ? {} : { ca });
        contexts.set(ca, secureContext);
      }
      return { secureContext, servername: r.tls.servername, resume: r.tls.resume };
    });
    const tls = this.routeTls.some((t) => t !== undefined);
    this.tlsFull = tls ? this.series('tls_full') : null;
    this.tlsResumed = tls ? this.series('tls_resumed') : null;
    this.tcp = tls ? this.series('tcp') : null;
    this.upgrade = tls ? this.series('upgrade') : null;
    this.regionPush = regional('push');
    this.regionConnect = regional('connect');
    this.regionReconnect = regional('reconnect');
  }

  private series(name: string): LatencyHistogram {
    let h = this.hists.get(name);
    if (!h) {
      h = createLatencyHistogram();
      this.hists.set(name, h);
    }
    return h;
  }

  /** Devices open right now. */
  get openDevices(): number {
    return this.open;
  }

  /** Global device index of local device `k` (see {@link DeviceWorkerData} for the scheme). */
  globalIndex(k: number): number {
    const { firstDevice, deviceCount, reserveFirst } = this.data;
    return k < deviceCount ? firstDevice + k : reserveFirst + (k - deviceCount);
  }

  /** Handles one coordinator message. */
  handle(msg: ToWorker): void {
    switch (msg.type) {
      case 'start':
        this.start(msg.atUs, msg.gridUs);
        break;
      case 'connect-more':
        this.connectMore(msg.count, msg.rateHz, msg.atUs);
        break;
      case 'publishing':
        this.traffic?.start(msg.atUs, this);
        break;
      case 'deadline':
        this.pastDeadline = true;
        this.traffic?.stop();
        // Close the measured part of the run: what follows is teardown.
        this.stopReports?.();
        this.stopReports = undefined;
        this.report();
        break;
      case 'finish':
        this.finish();
        break;
      case 'api-targets':
        // Publisher only.
        break;
      case 'clock':
        // An agent on another host followed its clock's drift (loadgen/join/agent.ts).
        setClockOffsetUs(msg.offsetUs);
        break;
    }
  }

  // DeviceChannel, for the traffic module.

  /** Writes one text frame to local device `local`; false if it is not open. */
  send(local: number, text: string): boolean {
    return this.conns[local]?.sendText(text) ?? false;
  }

  /** Whether local device `local` is open right now. */
  isOpen(local: number): boolean {
    return this.conns[local]?.state === 'open';
  }

  private post(msg: FromWorker): void {
    this.port.postMessage(msg);
  }

  private start(atUs: number, gridUs: number): void {
    const { deviceCount, connectRateHz, rampDelayUs = 0, rampEndUs = 0 } = this.data;
    this.fleetRampEndUs = atUs + rampEndUs;
    this.traffic?.connecting(this);
    this.addRamp(0, deviceCount, atUs + rampDelayUs, connectRateHz);
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.stopReports = everyOnGrid(gridUs, this.data.reportIntervalMs, () => this.report());
    this.maybeRampDone();
  }

  private connectMore(count: number, rateHz: number, atUs: number): void {
    if (this.finishing) return;
    const end = Math.min(this.conns.length, this.nextReserve + Math.max(0, Math.floor(count)));
    // The coordinator asks for a start 10 ms ahead; a load agent on another host hears of
    // it later on a busy box (its channel, its process's turn on the cores). Its ramp then
    // starts when it heard: the system under test saw none of these devices before, and
    // counting the message's way here as the thread falling behind its schedule made a
    // 240-device run INVALID (its 40 extra devices' interval, start lag over 50 ms).
    this.addRamp(this.nextReserve, end, Math.max(atUs, monoNowUs()), rateHz);
    this.nextReserve = end;
  }

  private addRamp(first: number, end: number, startUs: number, rateHz: number): void {
    if (end <= first) return;
    for (let k = first; k < end; k++) this.firstPending[k] = 1;
    this.ramps.push({
      first,
      next: first,
      end,
      startUs,
      intervalUs: rateHz > 0 ? 1e6 / rateHz : 0,
    });
    this.pump();
  }

  /** Puts device `k` in the due queue for `atUs`, replacing any earlier entry. */
  private schedule(k: number, atUs: number): void {
    const gen = (this.gen[k]! + 1) >>> 0;
    this.gen[k] = gen;
    this.queue.push(atUs, k, gen);
    if (atUs < this.wakeAtUs) this.arm(atUs);
  }

  /** Sets the one wake-up timer for `atUs`. */
  private arm(atUs: number): void {
    // A catch-up slice is already queued; it re-arms when it is done.
    if (this.pumpSoon) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAtUs = atUs;
    const waitMs = Math.max(0, (atUs - monoNowUs()) / 1000);
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeAtUs = Number.POSITIVE_INFINITY;
      this.pump();
    }, waitMs);
  }

  /**
   * Starts everything that is due (ramp slots, reconnect attempts, periodic
   * closes) and re-arms the timer for the next thing. Open-loop: an attempt
   * starts at its slot whether or not earlier ones have finished.
   */
  private pump(): void {
    if (this.finishing) return;
    this.pumpSoon = false;
    const now = monoNowUs();
    // A late thread catches up in slices so reports, I/O and timers keep running;
    // each attempt still counts its latency from its own slot.
    const budgetEndUs = now + PUMP_SLICE_US;
    let nextUs = Number.POSITIVE_INFINITY;
    let more = false;
    for (const ramp of this.ramps) {
      while (ramp.next < ramp.end) {
        const slotUs = ramp.startUs + (ramp.next - ramp.first) * ramp.intervalUs;
        if (slotUs > now) {
          nextUs = Math.min(nextUs, slotUs);
          break;
        }
        if (monoNowUs() > budgetEndUs) {
          more = true;
          break;
        }
        this.attempt(ramp.next++, slotUs);
      }
    }
    if (this.ramps.some((r) => r.next >= r.end)) {
      const live = this.ramps.filter((r) => r.next < r.end);
      this.ramps.length = 0;
      this.ramps.push(...live);
    }
    const e = this.popped;
    while (!more && this.queue.size > 0 && this.queue.peekUs() <= now) {
      if (monoNowUs() > budgetEndUs) {
        more = true;
        break;
      }
      this.queue.pop(e);
      if (e.gen !== this.gen[e.key]) continue;
      this.due(e.key, e.atUs);
    }
    if (more) {
      this.pumpSoon = true;
      setImmediate(() => this.pump());
    } else {
      nextUs = Math.min(nextUs, this.queue.peekUs());
      if (nextUs < Number.POSITIVE_INFINITY && nextUs < this.wakeAtUs) this.arm(nextUs);
    }
    this.maybeRampDone();
  }

  /** A due-queue entry of device `k` fired: its next attempt, or its periodic close. */
  private due(k: number, dueUs: number): void {
    const conn = this.conns[k]!;
    if (this.mode[k] === Mode.Waiting) {
      this.tries[k]!++;
      this.attempt(k, dueUs);
    } else if (conn.state === 'open') {
      this.ownClose[k] = OwnClose.Periodic;
      conn.close(CloseCode.Normal, 'periodic reconnect');
    }
  }

  /** Starts an attempt of device `k`, due at `dueUs` (what its connect latency counts from). */
  private attempt(k: number, dueUs: number): void {
    const conn = this.conns[k]!;
    const global = this.globalIndex(k);
    const route = this.data.routes[this.route[k]!]!;
    const { secret, tokenTtlSec, accounts } = this.data;
    const expiresAtSec = Math.floor(Date.now() / 1000) + tokenTtlSec;
    const token = signToken({ ...deviceIdentity(global, accounts), expiresAtSec }, secret);
    const addrs = route.localAddresses;
    this.mode[k] = Mode.Active;
    this.dueUs[k] = dueUs;
    this.iAttempts++;
    if (this.firstPending[k] === 0) this.iReconnectAttempts++;
    const d = this.dropAt[k]!;
    if (d >= 0) this.drops[d + 2]!++;
    conn.connect({
      host: route.host,
      port: route.port,
      // hello=1: the node says who it is, so a loss can be laid against the node that lost it.
      path: `${route.path}?token=${token}&hello=1${this.register ? '&registered=1' : ''}`,
      localAddress: addrs.length > 0 ? addrs[global % addrs.length] : undefined,
      tls: this.routeTls[this.route[k]!],
    });
    this.self.started(conn.startedUs - dueUs);
  }

  /** After a loss or a failed attempt: the next attempt by policy, or give up. */
  private retry(k: number, nowUs: number): void {
    const policy = this.data.reconnect;
    const next = this.tries[k]! + 1;
    const hint = this.hintMs[k]!;
    this.hintMs[k] = -1;
    if (policy.maxAttempts > 0 && next > policy.maxAttempts) {
      this.giveUp(k);
      return;
    }
    const delayMs = nextDelayMs(
      policy,
      next,
      this.prevDelayMs[k]!,
      this.rng,
      hint >= 0 && next === 1 ? hint : undefined,
    );
    this.prevDelayMs[k] = delayMs;
    this.mode[k] = Mode.Waiting;
    this.schedule(k, nowUs + delayMs * 1000);
  }

  private giveUp(k: number): void {
    this.mode[k] = Mode.GaveUp;
    this.gaveUp++;
  }

  private maybeRampDone(): void {
    if (this.rampReported || this.initialUnresolved > 0) return;
    // A shard that ramped early reports with the rest, at the fleet's ramp end.
    const earlyMs = (this.fleetRampEndUs - monoNowUs()) / 1000;
    if (earlyMs > 0 && !this.finishing) {
      this.rampDoneTimer ??= setTimeout(() => {
        this.rampDoneTimer = undefined;
        this.maybeRampDone();
      }, Math.ceil(earlyMs));
      return;
    }
    this.rampReported = true;
    const established: number[] = [];
    for (const conn of this.conns) {
      if (conn.state === 'open') established.push(this.globalIndex(conn.id));
    }
    this.post({
      type: 'ramp-done',
      workerIndex: this.data.workerIndex,
      established: Int32Array.from(established),
      failed: this.failedFirst,
    });
  }

  private sweep(): void {
    const now = monoNowUs();
    const timeoutUs = this.data.connectTimeoutMs * 1000;
    const silentUs =
      this.data.heartbeatTimeoutMs === null || this.finishing
        ? Number.POSITIVE_INFINITY
        : this.data.heartbeatTimeoutMs * 1000;
    for (const conn of this.conns) {
      switch (conn.state) {
        case 'connecting':
        case 'closing':
          conn.expireIfStale(now, timeoutUs, CLOSE_TIMEOUT_US);
          break;
        case 'open':
          if (now - conn.lastReceiveUs >= silentUs) {
            this.ownClose[conn.id] = OwnClose.Heartbeat;
            // No close frame: the server is not answering, a handshake would only wait.
            conn.destroy();
          }
          break;
        default:
          break;
      }
    }
  }

  private takeHistograms(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, h] of this.hists) {
      if (h.totalCount === 0) continue;
      out[name] = encodeHistogram(h);
      h.reset();
    }
    if (this.traffic) Object.assign(out, this.traffic.takeHistograms());
    return out;
  }

  private report(): void {
    this.post({
      type: 'device-interval',
      workerIndex: this.data.workerIndex,
      atUs: monoNowUs(),
      open: this.open,
      established: this.established,
      connectAttempts: this.iAttempts,
      connectsOk: this.iOk,
      connectFailures: this.iFailures,
      disconnects: this.iDisconnects,
      received: this.iReceived,
      reconnectAttempts: this.iReconnectAttempts,
      reconnects: this.iReconnects,
      losses: this.iLosses,
      periodic: this.iPeriodic,
      failuresByReason: this.iFailuresByReason,
      trafficCounters: this.traffic?.takeCounters() ?? {},
      histograms: this.takeHistograms(),
      self: this.self.interval(),
    });
    this.iAttempts = this.iOk = this.iFailures = this.iDisconnects = this.iReceived = 0;
    this.iReconnectAttempts = this.iReconnects = this.iLosses = this.iPeriodic = 0;
    this.iFailuresByReason = {};
  }

  private finish(): void {
    this.finishing = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.queue.clear();
    this.ramps.length = 0;
    this.stopReports?.();
    const heldAtEnd = this.open;
    // Devices waiting out a backoff are between connections too (in-flight attempts
    // are counted as they are abandoned, in onClose).
    for (let k = 0; k < this.mode.length; k++) {
      if (this.mode[k] === Mode.Waiting) this.abandonedAtFinish++;
    }
    for (const conn of this.conns) {
      if (conn.state === 'open') conn.close(CloseCode.Normal, 'run finished');
      else if (conn.state === 'connecting') conn.destroy();
    }
    const done = () => {
      if (this.sweepTimer) clearInterval(this.sweepTimer);
      if (this.rampDoneTimer) clearTimeout(this.rampDoneTimer);
      this.post({
        type: 'device-final',
        workerIndex: this.data.workerIndex,
        histograms: this.takeHistograms(),
        delivered: this.delivered.toBytes(),
        late: this.late.toBytes(),
        duplicates: this.duplicates,
        heldAtEnd,
        established: this.established,
        // Local indices below nextReserve are the initial share plus the reserve opened.
        requested: this.nextReserve,
        failuresByReason: this.failuresByReason,
        reconnectingAtEnd: this.abandonedAtFinish,
        closesByCode: this.closesByCode,
        lossesByCause: this.lossesByCause,
        drops: Float64Array.from(this.drops),
        dropNodes: Int32Array.from(this.dropNodes),
        nodeNames: this.nodeNames,
        gaveUp: this.gaveUp,
        badFrames: this.badFrames,
        traffic: this.traffic?.final() ?? null,
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
    const k = conn.id;
    const now = monoNowUs();
    recordUs(this.connect, now - this.dueUs[k]!);
    const regionalConnect = this.regionConnect[this.route[k]!];
    if (regionalConnect) recordUs(regionalConnect, now - this.dueUs[k]!);
    const tls = this.tlsFull === null ? undefined : conn.tlsTiming;
    if (tls) {
      recordUs(this.tcp!, tls.tcpUs);
      recordUs(tls.resumed ? this.tlsResumed! : this.tlsFull!, tls.tlsUs);
      recordUs(this.upgrade!, tls.upgradeUs);
    }
    this.open++;
    this.iOk++;
    if (this.everOpened[k] === 0) {
      this.everOpened[k] = 1;
      this.established++;
    }
    if (this.firstPending[k] === 1) {
      this.firstPending[k] = 0;
      if (k < this.data.deviceCount) this.initialUnresolved--;
    } else {
      this.iReconnects++;
    }
    const d = this.dropAt[k]!;
    if (d >= 0) {
      this.drops[d + 1] = now;
      recordUs(this.reconnect, now - this.drops[d]!);
      const regionalReconnect = this.regionReconnect[this.route[k]!];
      if (regionalReconnect) recordUs(regionalReconnect, now - this.drops[d]!);
      this.dropAt[k] = -1;
    }
    this.tries[k] = 0;
    this.prevDelayMs[k] = this.data.reconnect.baseMs;
    this.hintMs[k] = -1;
    this.ownClose[k] = OwnClose.None;
    if (this.finishing) {
      conn.close(CloseCode.Normal, 'run finished');
      return;
    }
    const periodic = this.data.periodicReconnect;
    if (periodic !== null) {
      const afterMs = Math.max(0, periodic.everyMs - this.rng.next() * periodic.staggerMs);
      this.schedule(k, now + afterMs * 1000);
    }
    if (k < this.data.deviceCount) this.traffic?.onOpen(k);
    this.maybeRampDone();
  }

  private nodeIndex(nodeId: string): number {
    let i = this.nodeIndexes.get(nodeId);
    if (i === undefined) {
      i = this.nodeNames.length;
      this.nodeNames.push(nodeId);
      this.nodeIndexes.set(nodeId, i);
    }
    return i;
  }

  /**
   * A text message's validated bytes. Pushes and room messages of pushbench's
   * own publisher are read by the fast lane (frame-scan.ts) without decoding
   * or JSON.parse; every other frame, or one the lane does not recognise, goes
   * to {@link onText} and the full parser.
   */
  onTextBytes(conn: WsClientConnection, data: Buffer): void {
    // Arrival time is when the read that carried the frame happened.
    if (scanPush(data)) {
      this.onPushFields(conn.id, scanned.seq, scanned.t, conn.lastReceiveUs);
      return;
    }
    if (
      this.traffic !== null &&
      conn.id < this.data.deviceCount &&
      scanRoom(data) &&
      this.traffic.onRoomScanned(conn.id, data, conn.lastReceiveUs)
    ) {
      return;
    }
    this.onText(conn, data.toString('utf8'));
  }

  onText(conn: WsClientConnection, text: string): void {
    const now = monoNowUs();
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.badFrames++;
      return;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      this.badFrames++;
      return;
    }
    const f = frame as { type?: unknown } & Record<string, unknown>;
    switch (f.type) {
      case 'push':
        this.onPush(conn.id, f.payload, now);
        return;
      case 'goaway':
        this.onGoaway(conn, f.reconnectAfterMs);
        return;
      case 'hello':
        this.nodeOf[conn.id] = typeof f.nodeId === 'string' ? this.nodeIndex(f.nodeId) : -1;
        return;
      case 'registered':
        // From the attempt's due time, like connect: what the device waited to be reachable.
        if (this.register) recordUs(this.register, now - this.dueUs[conn.id]!);
        else this.badFrames++;
        return;
      default:
        if (
          typeof f.type !== 'string' ||
          this.traffic === null ||
          conn.id >= this.data.deviceCount ||
          !this.traffic.onFrame(conn.id, f as { type: string } & Record<string, unknown>, now)
        ) {
          this.badFrames++;
        }
    }
  }

  private onPush(k: number, payload: unknown, nowUs: number): void {
    if (typeof payload !== 'object' || payload === null) {
      this.badFrames++;
      return;
    }
    const { seq, t } = payload as { seq?: unknown; t?: unknown };
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || typeof t !== 'number') {
      this.badFrames++;
      return;
    }
    this.onPushFields(k, seq, t, nowUs);
  }

  /** Push `seq` (scheduled at `t`, µs) reached local device `k`: dedupe, ledger, latency; allocates nothing. */
  private onPushFields(k: number, seq: number, t: number, nowUs: number): void {
    this.iReceived++;
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
    recordUs(this.push, nowUs - t);
    const regional = this.regionPush[this.route[k]!];
    if (regional) recordUs(regional, nowUs - t);
  }

  /**
   * The server will close this connection soon. Under server-hint the device
   * leaves now and comes back after the hint; other policies wait for the
   * server's close and then follow their own delays.
   */
  private onGoaway(conn: WsClientConnection, reconnectAfterMs: unknown): void {
    const k = conn.id;
    this.hintMs[k] =
      typeof reconnectAfterMs === 'number' && reconnectAfterMs >= 0 ? reconnectAfterMs : 0;
    if (this.data.reconnect.policy === 'server-hint' && conn.state === 'open' && !this.finishing) {
      this.ownClose[k] = OwnClose.Goaway;
      conn.close(CloseCode.Normal, 'goaway');
    }
  }

  /** Connect attempts cut short because the run ended (reported with the final counts). */
  private abandonedAtFinish = 0;

  onClose(conn: WsClientConnection, info: WsCloseInfo): void {
    const k = conn.id;
    const now = monoNowUs();
    // Drops any periodic close still queued for this connection.
    this.gen[k] = (this.gen[k]! + 1) >>> 0;
    if (!info.opened) {
      if (this.finishing) {
        // Attempts still in flight when the run ends are abandoned, not failed.
        this.abandonedAtFinish++;
        return;
      }
      this.iFailures++;
      // How long a failed attempt took to fail, from its scheduled time: a refused
      // connect fails in a round trip, a dropped SYN only at a retransmission or timeout.
      recordUs(this.series('connect_failed'), now - this.dueUs[k]!);
      const reason =
        info.failure === 'http_status' ? `http_${info.httpStatus}` : (info.failure ?? 'error');
      this.failuresByReason[reason] = (this.failuresByReason[reason] ?? 0) + 1;
      this.iFailuresByReason[reason] = (this.iFailuresByReason[reason] ?? 0) + 1;
      if (this.firstPending[k] === 1) {
        this.firstPending[k] = 0;
        if (k < this.data.deviceCount) {
          this.initialUnresolved--;
          this.failedFirst++;
        }
      }
      if (!this.finishing) this.retry(k, now);
      this.maybeRampDone();
      return;
    }
    this.open--;
    const own = this.ownClose[k]!;
    this.ownClose[k] = OwnClose.None;
    if (this.finishing) return;
    this.iDisconnects++;
    this.closesByCode[info.code] = (this.closesByCode[info.code] ?? 0) + 1;
    if (k < this.data.deviceCount) this.traffic?.onClose(k);
    this.tries[k] = 0;
    this.prevDelayMs[k] = this.data.reconnect.baseMs;
    if (own === OwnClose.Periodic) {
      // Not a loss: the device chose to leave and comes back at once.
      this.iPeriodic++;
      this.mode[k] = Mode.Waiting;
      this.schedule(k, now);
      return;
    }
    this.iLosses++;
    const cause =
      own === OwnClose.Heartbeat
        ? 'heartbeat_timeout'
        : own === OwnClose.Goaway || this.hintMs[k]! >= 0
          ? 'goaway'
          : `code_${info.code}`;
    this.lossesByCause[cause] = (this.lossesByCause[cause] ?? 0) + 1;
    this.dropAt[k] = this.drops.length;
    this.drops.push(now, 0, 0);
    this.dropNodes.push(this.nodeOf[k]!);
    this.nodeOf[k] = -1;
    // 4001 "replaced": a device of this fleet never opens two connections at once, so the
    // newer one was its own attempt that timed out here but that the node admitted late.
    if (
      own === OwnClose.None &&
      !retryableCloseCodes.has(info.code) &&
      info.code !== CloseCode.Replaced
    ) {
      // A terminal close code (protocol violation, bad frame): retrying would repeat it.
      this.giveUp(k);
      return;
    }
    this.retry(k, now);
  }
}

/** Runs a device worker on `port` until `finish` has been answered. */
export function runFleet(data: DeviceWorkerData, port: ShardLink): void {
  // On another host than the coordinator's: every timestamp on the coordinator's clock.
  if (data.clockOffsetUs !== undefined) setClockOffsetUs(data.clockOffsetUs);
  runThisThreadAhead(data.aheadBy ?? 0);
  const traffic =
    data.traffic === null || data.traffic === undefined
      ? null
      : createDeviceTraffic(data.traffic, {
          workerIndex: data.workerIndex,
          firstDevice: data.firstDevice,
          deviceCount: data.deviceCount,
          accounts: data.accounts,
          seed: data.seed,
        });
  const fleet = new Fleet(data, port, traffic);
  port.on('message', (msg: ToWorker) => fleet.handle(msg));
  port.postMessage({ type: 'ready', role: 'devices' } satisfies FromWorker);
}

/** The route holding global index `g`; throws `PB_INTERNAL` when the coordinator left a gap. */
function routeIndexOf(routes: DeviceRoute[], g: number): number {
  for (let r = 0; r < routes.length; r++) {
    const route = routes[r]!;
    if (g >= route.first && g < route.first + route.count) return r;
  }
  throw new PushbenchError(
    'PB_INTERNAL',
    `device ${g} is in no route (routes cover ${routes.map((r) => `[${r.first}, ${r.first + r.count})`).join(' ') || 'nothing'}); the coordinator must route every device`,
  );
}
