/** Frames and a recording parser shared by the WebSocket frame, parser and client tests. */
import { encodeFrame } from '../../core/ws/frame.js';
import {
  FrameParser,
  type FrameParserOptions,
  type WsProtocolError,
} from '../../core/ws/parser.js';

/** Bytes 0..255 repeating with an offset, so a shifted or mis-masked payload differs. */
export function pattern(bytes: number, seed = 3): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

/** A frame as a server sends it: unmasked. */
export function serverFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, maskKey: null });
}

/** A frame as a client must send it: masked with a fresh random key. */
export function clientFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin });
}

/** A parser event as a plain tuple. */
export type ParsedEvent =
  | ['text', string]
  | ['binary', string]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number];

/**
 * A parser recording its events as tuples. The client role takes text as
 * strings; the server role as bytes (decoded here for the record), as each does in use.
 */
export function recordingParser(options: FrameParserOptions = {}): {
  parser: FrameParser<ParsedEvent[]>;
  events: ParsedEvent[];
} {
  const events: ParsedEvent[] = [];
  const common = {
    onBinary: (out: ParsedEvent[], data: Buffer) => out.push(['binary', data.toString('hex')]),
    onPing: (out: ParsedEvent[], payload: Buffer) => out.push(['ping', payload.toString()]),
    onPong: (out: ParsedEvent[], payload: Buffer) => out.push(['pong', payload.toString()]),
    onClose: (out: ParsedEvent[], code: number, reason: string) =>
      out.push(['close', code, reason]),
    onError: (out: ParsedEvent[], err: WsProtocolError) =>
      out.push(['error', err.code, err.closeCode]),
  };
  const handler =
    options.role === 'server'
      ? {
          ...common,
          onTextBytes: (out: ParsedEvent[], data: Buffer) =>
            out.push(['text', data.toString('utf8')]),
        }
      : { ...common, onText: (out: ParsedEvent[], text: string) => out.push(['text', text]) };
  return { parser: new FrameParser(handler, events, options), events };
}

/** One frame as read off the wire. */
export interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Decodes (and unmasks) the whole frames at the start of `buf`; returns them and the bytes used. */
export function decodeFrames(buf: Buffer): { frames: DecodedFrame[]; used: number } {
  const frames: DecodedFrame[] = [];
  let offset = 0;
  for (;;) {
    if (buf.length - offset < 2) break;
    const b0 = buf[offset]!;
    const b1 = buf[offset + 1]!;
    let length = b1 & 0x7f;
    let at = offset + 2;
    if (length === 126) {
      if (buf.length < at + 2) break;
      length = buf.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      if (buf.length < at + 8) break;
      length = Number(buf.readBigUInt64BE(at));
      at += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    const key = masked ? buf.subarray(at, at + 4) : null;
    if (masked) at += 4;
    if (buf.length < at + length) break;
    const payload = Buffer.from(buf.subarray(at, at + length));
    if (key !== null) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: b0 & 0x70, opcode: b0 & 0x0f, masked, payload });
    offset = at + length;
  }
  return { frames, used: offset };
}
