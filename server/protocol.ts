/**
 * The device protocol: WebSocket text frames carrying one JSON object each.
 * docs/protocol.md is the human-readable version of this file; keep them in step.
 */

/**
 * Close codes the server uses. `retryable` tells a client whether reconnecting
 * (with backoff) is the right reaction; a terminal code means "fix something first".
 */
export const CloseCode = {
  /** Normal closure, e.g. the client asked to close. Retryable. */
  Normal: 1000,
  /** The node is shutting down or draining. Retryable: reconnect elsewhere. */
  GoingAway: 1001,
  /** Frame-level protocol violation (e.g. an unmasked client frame). Terminal. */
  ProtocolError: 1002,
  /** Binary frame: the protocol is JSON text only. Terminal. */
  UnsupportedData: 1003,
  /** Text that is not valid UTF-8. Terminal. */
  InvalidPayload: 1007,
  /** Well-formed text that is not a valid protocol frame. Terminal. */
  PolicyViolation: 1008,
  /** Frame larger than the node accepts. Terminal. */
  MessageTooBig: 1009,
  /** The node failed internally. Retryable. */
  InternalError: 1011,
  /** Another connection of the same device replaced this one. Terminal for this socket. */
  Replaced: 4001,
} as const;

/** Whether a client should reconnect after each close code (1006: dropped without a close frame). */
export const retryableCloseCodes: ReadonlySet<number> = new Set([1000, 1001, 1006, 1011]);

/** A frame a device may send, parsed and checked. */
export type DeviceFrame = { type: 'ack'; id: string };

/** The result of parsing a device's text frame. */
export type ParsedDeviceFrame = { ok: true; frame: DeviceFrame } | { ok: false; error: string };

/** Message ids: 1-128 printable ASCII characters without quotes or backslashes. */
const MESSAGE_ID = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;

/** True when `id` is acceptable as a message id. */
export function isValidMessageId(id: unknown): id is string {
  return typeof id === 'string' && MESSAGE_ID.test(id);
}

/** Parses a device frame; never throws. */
export function parseDeviceFrame(text: string): ParsedDeviceFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: 'frame is not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'frame is not a JSON object' };
  }
  const { type, id } = value as Record<string, unknown>;
  switch (type) {
    case 'ack':
      if (!isValidMessageId(id)) return { ok: false, error: 'ack needs a string id' };
      return { ok: true, frame: { type: 'ack', id } };
    default:
      return { ok: false, error: `unknown frame type ${JSON.stringify(type)}` };
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
