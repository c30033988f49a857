/**
 * What a device worker needs to know to run room and d2d traffic, parsed from
 * the structured-clone value the coordinator puts in the worker's data.
 */
import { PushbenchError } from '../../core/errors.js';

/** Device-side traffic settings, the same in every device worker. */
export interface TrafficConfig {
  /**
   * Devices that take part (global indices below this): the scenario's initial
   * fleet. Room membership and d2d pairs are computed over these only, so the
   * coordinator can count what every room message owes without asking workers.
   */
  devices: number;
  /** Device i is in account `a${i % accounts}`. */
  accounts: number;
  /** Upper bound of device worker indices; d2d seqs are `m * workerStride + workerIndex`. */
  workerStride: number;
  /** How long the d2d schedule runs after `start`, ms. */
  durationMs: number;
  seed: number;
  rooms: { count: number; perDevice: number; rateHz: number; payloadBytes: number };
  d2d: { rateHz: number; payloadBytes: number };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function field(obj: Record<string, unknown>, path: string, key: string, min: number): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new PushbenchError(
      'PB_INTERNAL',
      `traffic config ${path}${key} must be a number >= ${min}, got ${JSON.stringify(v)}; build it with deviceTrafficConfig()`,
    );
  }
  return v;
}

function part(obj: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = obj[key];
  if (!isRecord(v)) {
    throw new PushbenchError(
      'PB_INTERNAL',
      `traffic config ${key} must be an object; build it with deviceTrafficConfig()`,
    );
  }
  return v;
}

/** Parses a traffic config made by `deviceTrafficConfig`; throws `PB_BAD_WORKER_DATA` otherwise. */
export function parseTrafficConfig(value: unknown): TrafficConfig {
  if (!isRecord(value)) {
    throw new PushbenchError(
      'PB_INTERNAL',
      `traffic config must be an object, got ${JSON.stringify(value)}; build it with deviceTrafficConfig()`,
    );
  }
  const rooms = part(value, 'rooms');
  const d2d = part(value, 'd2d');
  const config: TrafficConfig = {
    devices: field(value, '', 'devices', 0),
    accounts: field(value, '', 'accounts', 1),
    workerStride: field(value, '', 'workerStride', 1),
    durationMs: field(value, '', 'durationMs', 0),
    seed: field(value, '', 'seed', 0),
    rooms: {
      count: field(rooms, 'rooms.', 'count', 0),
      perDevice: field(rooms, 'rooms.', 'perDevice', 0),
      rateHz: field(rooms, 'rooms.', 'rateHz', 0),
      payloadBytes: field(rooms, 'rooms.', 'payloadBytes', 0),
    },
    d2d: {
      rateHz: field(d2d, 'd2d.', 'rateHz', 0),
      payloadBytes: field(d2d, 'd2d.', 'payloadBytes', 0),
    },
  };
  if (config.rooms.perDevice > config.rooms.count) {
    throw new PushbenchError(
      'PB_INTERNAL',
      `traffic config rooms.perDevice (${config.rooms.perDevice}) exceeds rooms.count (${config.rooms.count})`,
    );
  }
  return config;
}

/** Whether devices join rooms at all (rooms exist and every device joins some). */
export function roomsOn(config: TrafficConfig): boolean {
  return config.rooms.count > 0 && config.rooms.perDevice > 0 && config.devices > 0;
}

/** Whether devices send each other messages. */
export function d2dOn(config: TrafficConfig): boolean {
  return config.d2d.rateHz > 0 && config.devices > 0;
}
