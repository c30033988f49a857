/**
 * The `traffic` section: the open-loop flows of messages (direct pushes,
 * queued pushes, device-to-device messages, rooms).
 */
import { checkKeys, computed, type Defaults, num, type Problems, section } from '../fields.js';
import type { Flow, FlowInput, Scenario, TrafficInput } from '../types.js';

/** Defaults of `traffic`: each flow's own table. */
export const trafficDefaults = {
  direct: { rate: 100, payloadBytes: 64 },
  indirect: { rate: 0, payloadBytes: 64 },
  d2d: { rate: 0, payloadBytes: 64 },
  rooms: {
    count: 0,
    perDevice: computed('1 if `count` is given, else 0'),
    rate: 0,
    payloadBytes: 64,
  },
} as const satisfies Defaults<TrafficInput>;

/** Padding bytes a payload may carry: 0 to 60 KiB. */
const PAYLOAD = { min: 0, integer: true, max: 60 * 1024 };

/** Validates `traffic`. */
export function validateTraffic(p: Problems, input: unknown): Scenario['traffic'] {
  const traffic = section(p, 'traffic', input);
  checkKeys(p, 'traffic', traffic, trafficDefaults);
  return {
    direct: flow(p, 'direct', traffic.direct),
    indirect: flow(p, 'indirect', traffic.indirect),
    d2d: flow(p, 'd2d', traffic.d2d),
    rooms: rooms(p, traffic.rooms),
  };
}

function flow(p: Problems, key: 'direct' | 'indirect' | 'd2d', v: unknown): Flow {
  const path = `traffic.${key}`;
  const f = section(p, path, v);
  const d: Required<FlowInput> = trafficDefaults[key];
  checkKeys(p, path, f, d);
  return {
    rateHz: num(p, `${path}.rate`, f.rate, d.rate, { min: 0 }),
    payloadBytes: num(p, `${path}.payloadBytes`, f.payloadBytes, d.payloadBytes, PAYLOAD),
  };
}

function rooms(p: Problems, v: unknown): Scenario['traffic']['rooms'] {
  const path = 'traffic.rooms';
  const ro = section(p, path, v);
  const d = trafficDefaults.rooms;
  checkKeys(p, path, ro, d);
  const count = num(p, `${path}.count`, ro.count, d.count, { min: 0, integer: true, max: 100_000 });
  const perDevice = num(p, `${path}.perDevice`, ro.perDevice, ro.count === undefined ? 0 : 1, {
    min: 0,
    integer: true,
    max: 100,
  });
  const out = {
    count,
    perDevice,
    rateHz: num(p, `${path}.rate`, ro.rate, d.rate, { min: 0 }),
    payloadBytes: num(p, `${path}.payloadBytes`, ro.payloadBytes, d.payloadBytes, PAYLOAD),
  };
  if (out.perDevice > out.count) {
    p.add(`${path}.perDevice`, `must be <= rooms.count (${count}), got ${perDevice}`);
  }
  if (out.rateHz > 0 && count === 0) p.add(`${path}.count`, 'must be >= 1 when rooms.rate > 0');
  return out;
}
