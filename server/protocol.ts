/**
 * The device protocol: WebSocket text frames carrying one JSON object each.
 * docs/protocol.md is the human-readable version of this file; keep them in step.
 * The close codes, which the load generator reads too, are in
 * core/ws/close-codes.ts.
 */

/** Codes of `error` frames: the node refused one request but keeps the connection. */
export type ErrorCode =
  | 'unknown_type'
  | 'bad_request'
  | 'room_cap'
  | 'unavailable'
  | 'rate_limited';

/** Message ids: 1-128 printable ASCII characters without quotes or backslashes. */
const MESSAGE_ID = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;
/** Device, account and room names: 1-128 of `A-Z a-z 0-9 . _ : @ -`. */
const NAME = /^[A-Za-z0-9._:@-]{1,128}$/;

/** True when `id` is acceptable as a message id. */
export function isValidMessageId(id: unknown): id is string {
  return typeof id === 'string' && MESSAGE_ID.test(id);
}

/** True when `name` is acceptable as a device, account or room name. */
export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME.test(name);
}

/** Where a resubscribing device left off in a room. */
export interface RoomPosition {
  offset: number;
  epoch: string;
}

/** A frame a device may send, parsed and checked. `ref` echoes back in replies. */
export type DeviceFrame =
  | { type: 'ack'; id: string }
  | { type: 'd2d'; to: string; id: string; payloadJson: string }
  | {
      type: 'subscribe';
      room: string;
      dump: boolean;
      since: RoomPosition | undefined;
      ref: string | undefined;
    }
  | { type: 'unsubscribe'; room: string; ref: string | undefined }
  | { type: 'devices'; ref: string | undefined }
  | { type: 'presence'; subscribe: boolean; ref: string | undefined };

/**
 * The result of parsing a device's text frame: a frame; a `reject` (well-formed
 * JSON object the node answers with an `error` frame, connection kept); or a
 * `violation` (not a protocol frame at all: the node closes with 1008).
 */
export type ParsedDeviceFrame =
  | { ok: true; frame: DeviceFrame }
  | { ok: false; kind: 'reject'; code: ErrorCode; error: string; ref: string | undefined }
  | { ok: false; kind: 'violation'; error: string };

function optionalRef(v: unknown): string | undefined {
  return isValidMessageId(v) ? v : undefined;
}

/** Parses a device frame; never throws. */
export function parseDeviceFrame(text: string): ParsedDeviceFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, kind: 'violation', error: 'frame is not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, kind: 'violation', error: 'frame is not a JSON object' };
  }
  const f = value as Record<string, unknown>;
  if (typeof f.type !== 'string') {
    return { ok: false, kind: 'violation', error: 'frame has no string "type"' };
  }
  const ref = optionalRef(f.ref);
  const reject = (error: string, code: ErrorCode = 'bad_request'): ParsedDeviceFrame => ({
    ok: false,
    kind: 'reject',
    code,
    error,
    ref,
  });
  switch (f.type) {
    case 'ack':
      if (!isValidMessageId(f.id)) return reject('ack needs a string id');
      return { ok: true, frame: { type: 'ack', id: f.id } };
    case 'd2d': {
      if (!isValidName(f.to)) return reject('d2d needs "to": a device id');
      if (!isValidMessageId(f.id)) return reject('d2d needs "id": a message id');
      if (!('payload' in f) || f.payload === undefined) return reject('d2d needs a payload');
      return {
        ok: true,
        frame: { type: 'd2d', to: f.to, id: f.id, payloadJson: JSON.stringify(f.payload) },
      };
    }
    case 'subscribe': {
      if (!isValidName(f.room)) return reject('subscribe needs "room": a room name');
      let since: RoomPosition | undefined;
      if (f.since !== undefined) {
        const s = f.since as Record<string, unknown> | null;
        if (
          typeof s !== 'object' ||
          s === null ||
          typeof s.offset !== 'number' ||
          !Number.isInteger(s.offset) ||
          s.offset < 0 ||
          typeof s.epoch !== 'string' ||
          s.epoch.length > 128
        ) {
          return reject('subscribe "since" must be {"offset": <integer >= 0>, "epoch": <string>}');
        }
        since = { offset: s.offset, epoch: s.epoch };
      }
      return {
        ok: true,
        frame: { type: 'subscribe', room: f.room, dump: f.dump === true, since, ref },
      };
    }
    case 'unsubscribe':
      if (!isValidName(f.room)) return reject('unsubscribe needs "room": a room name');
      return { ok: true, frame: { type: 'unsubscribe', room: f.room, ref } };
    case 'devices':
      return { ok: true, frame: { type: 'devices', ref } };
    case 'presence':
      return { ok: true, frame: { type: 'presence', subscribe: f.subscribe !== false, ref } };
    default:
      return reject(`unknown frame type ${JSON.stringify(f.type).slice(0, 40)}`, 'unknown_type');
  }
}

/**
 * Frames a push for a device. `payloadJson` must already be serialised JSON; the
 * frame is built once per message, never per recipient.
 */
export function encodePushFrame(id: string, payloadJson: string): string {
  // Ids are validated to contain no characters that need JSON escaping.
  return `{"type":"push","id":"${id}","payload":${payloadJson}}`;
}

/** Frames a device-to-device message for its target. */
export function encodeD2dFrame(from: string, id: string, payloadJson: string): string {
  return `{"type":"d2d","from":"${from}","id":"${id}","payload":${payloadJson}}`;
}

/** Frames a room message once for every local subscriber. */
export function encodeRoomFrame(
  room: string,
  offset: number,
  epoch: string,
  messageJson: string,
): string {
  return `{"type":"room","room":"${room}","offset":${offset},"epoch":${JSON.stringify(epoch)},"message":${messageJson}}`;
}

/** Any other server frame, serialised. */
export function encodeFrame(frame: { type: string } & Record<string, unknown>): string {
  return JSON.stringify(frame);
}
