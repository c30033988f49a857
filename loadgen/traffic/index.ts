/**
 * Builds a device worker's {@link DeviceTraffic} from the traffic config the
 * coordinator made with `deviceTrafficConfig` (ledgers.ts): room members
 * (rooms.ts) and d2d senders/receivers (d2d.ts). With both off the hooks do
 * nothing and cost nothing.
 *
 * Hook contract for the fleet: `connecting` when the fleet starts connecting (rooms are
 * joined from then on); `start` when publishing starts; `onOpen` after
 * every (re)open; `onFrame` for every frame type other than `push`/`goaway`;
 * `onClose` on every loss; `stop` when the coordinator's `deadline` arrives
 * (the d2d schedule ends by itself after the scenario duration, so `stop` only
 * matters as the deadline: arrivals after it are late).
 */
import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import { d2dOn, parseTrafficConfig, roomsOn, type TrafficConfig } from './config.js';
import { type D2dFinal, D2dTraffic } from './d2d.js';
import type { DeviceChannel, DeviceTraffic } from './device-traffic.js';
import { type RoomFinal, RoomTraffic } from './rooms.js';

export type { TrafficConfig } from './config.js';
export type { D2dFinal } from './d2d.js';
export type { RoomFinal } from './rooms.js';

/** What `DeviceTraffic.final()` returns: each part present only when that traffic ran. */
export interface TrafficFinal {
  kind: 'pushbench-traffic';
  workerIndex: number;
  rooms?: RoomFinal;
  d2d?: D2dFinal;
  /** `error` frames the node sent (e.g. `room_cap`), by code. */
  errors: Record<string, number>;
}

/** Where in the fleet a worker sits. */
export interface TrafficContext {
  workerIndex: number;
  firstDevice: number;
  deviceCount: number;
  accounts: number;
  seed: number;
}

/** The device-side traffic of one worker (rooms and d2d, each only when on). */
export function createDeviceTraffic(config: unknown, ctx: TrafficContext): DeviceTraffic {
  const c: TrafficConfig = parseTrafficConfig(config);
  if (ctx.workerIndex >= c.workerStride) {
    // d2d seqs are m * workerStride + workerIndex: a larger index would collide.
    throw new PushbenchError(
      'PB_INTERNAL',
      `device worker ${ctx.workerIndex} is outside the traffic config's workerStride ${c.workerStride}; build the config for at least ${ctx.workerIndex + 1} workers`,
    );
  }
  const rooms = roomsOn(c)
    ? new RoomTraffic(c.rooms, ctx.firstDevice, ctx.deviceCount, c.devices)
    : undefined;
  const d2d = d2dOn(c)
    ? new D2dTraffic(
        {
          rateHz: c.d2d.rateHz,
          payloadBytes: c.d2d.payloadBytes,
          devices: c.devices,
          accounts: ctx.accounts,
          workerIndex: ctx.workerIndex,
          workerStride: c.workerStride,
          firstDevice: ctx.firstDevice,
          deviceCount: ctx.deviceCount,
          durationMs: c.durationMs,
        },
        monoNowUs,
      )
    : undefined;
  if (!rooms && !d2d) return new NoTraffic(ctx.workerIndex);
  return new MixedTraffic(ctx.workerIndex, rooms, d2d);
}

/** Traffic when rooms and d2d are off: every hook returns at once. */
class NoTraffic implements DeviceTraffic {
  constructor(private readonly workerIndex: number) {}
  connecting(): void {}
  start(): void {}
  onOpen(): void {}
  onFrame(): boolean {
    return false;
  }
  onRoomScanned(): boolean {
    return false;
  }
  onClose(): void {}
  stop(): void {}
  takeHistograms(): Record<string, string> {
    return {};
  }
  takeCounters(): Record<string, number> {
    return {};
  }
  final(): TrafficFinal {
    return { kind: 'pushbench-traffic', workerIndex: this.workerIndex, errors: {} };
  }
}

/** Rooms and/or d2d. */
class MixedTraffic implements DeviceTraffic {
  private readonly errors: Record<string, number> = {};

  constructor(
    private readonly workerIndex: number,
    private readonly rooms: RoomTraffic | undefined,
    private readonly d2d: D2dTraffic | undefined,
  ) {}

  connecting(channel: DeviceChannel): void {
    this.rooms?.attach(channel);
  }

  start(atUs: number, channel: DeviceChannel): void {
    this.rooms?.attach(channel);
    this.d2d?.start(atUs, channel);
  }

  onOpen(local: number): void {
    this.rooms?.onOpen(local);
  }

  onRoomScanned(local: number, data: Buffer, nowUs: number): boolean {
    if (this.rooms === undefined) return false;
    this.rooms.onRoomScanned(local, data, nowUs);
    return true;
  }

  onFrame(
    local: number,
    frame: { type: string } & Record<string, unknown>,
    nowUs: number,
  ): boolean {
    switch (frame.type) {
      case 'room':
      case 'subscribed':
        return this.rooms?.onFrame(local, frame, nowUs) ?? false;
      case 'd2d':
      case 'd2d_status':
        return this.d2d?.onFrame(local, frame, nowUs) ?? false;
      case 'unsubscribed':
        return true;
      case 'error': {
        const code = typeof frame.code === 'string' ? frame.code : 'unknown';
        this.errors[code] = (this.errors[code] ?? 0) + 1;
        return true;
      }
      default:
        return false;
    }
  }

  onClose(local: number): void {
    // Resume positions survive the loss (onOpen resubscribes); d2d routes to this device go cold.
    this.d2d?.onClose(local);
  }

  stop(): void {
    this.rooms?.deadline();
    this.d2d?.stop();
  }

  takeHistograms(): Record<string, string> {
    const out: Record<string, string> = {};
    if (this.rooms) out.room = this.rooms.takeHistogram();
    if (this.d2d) Object.assign(out, this.d2d.takeHistograms());
    return out;
  }

  takeCounters(): Record<string, number> {
    const out: Record<string, number> = {};
    if (this.rooms) out.roomReceived = this.rooms.takeReceived();
    if (this.d2d) {
      const c = this.d2d.takeCounts();
      out.d2dSent = c.sent;
      out.d2dReceived = c.received;
    }
    return out;
  }

  final(): TrafficFinal {
    return {
      kind: 'pushbench-traffic',
      workerIndex: this.workerIndex,
      ...(this.rooms && { rooms: this.rooms.final() }),
      ...(this.d2d && { d2d: this.d2d.final() }),
      errors: { ...this.errors },
    };
  }
}
