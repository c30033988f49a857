/**
 * RFC 6455 frame encoding, masking and handshake helpers shared by the lean
 * device-side client (`loadgen/ws-client/`) and the lean server socket
 * (`server/ws-server.ts`). It sits in `core/` because the server may not import
 * `loadgen/`. Everything here is a pure function of its arguments, except that
 * mask keys and handshake keys are drawn from a shared pool of CSPRNG bytes.
 */
import { hash, randomFillSync } from 'node:crypto';

/** The frame opcodes of RFC 6455 §5.2; no extension defines others here. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** One of the {@link Opcode} values. */
export type OpcodeValue = (typeof Opcode)[keyof typeof Opcode];

/** The largest payload a control frame (close, ping, pong) may carry, RFC 6455 §5.5. */
export const MAX_CONTROL_PAYLOAD_BYTES = 125;

/** The GUID RFC 6455 §1.3 appends to the handshake key before hashing it. */
const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * CSPRNG bytes handed out 4 at a time as mask keys. Masking exists so a hostile
 * page cannot steer the bytes a proxy sees, so the keys must be unpredictable;
 * but one `randomBytes()` per frame costs a call into OpenSSL and an allocation
 * for every message a device sends. Filling 2048 keys per call amortises that.
 * `allocUnsafeSlow` keeps the pool out of Node's shared slab, so no other
 * buffer ever aliases it.
 */
const RANDOM_POOL_BYTES = 8192;
const randomPool = Buffer.allocUnsafeSlow(RANDOM_POOL_BYTES);
/** Next unread byte of {@link randomPool}; starts "exhausted" so the first use fills it. */
let randomPoolOffset = RANDOM_POOL_BYTES;

/** Copies `n` fresh random bytes into `target` at `targetOffset`; no byte is ever handed out twice. */
function takeRandomBytes(target: Buffer, targetOffset: number, n: number): void {
  if (randomPoolOffset + n > RANDOM_POOL_BYTES) {
    randomFillSync(randomPool);
    randomPoolOffset = 0;
  }
  randomPool.copy(target, targetOffset, randomPoolOffset, randomPoolOffset + n);
  randomPoolOffset += n;
}

/** Options for {@link encodeFrame}. */
export interface EncodeFrameOptions {
  /** Whether this is the final fragment of its message; default `true`. */
  fin?: boolean;
  /**
   * The 4-byte masking key. Omitted or `undefined`: a fresh random key from the
   * pool (what a client must do). `null`: the frame is not masked, as a server
   * must send it.
   */
  maskKey?: Buffer | null;
}

/**
 * Encodes one frame into a single new buffer (header, mask key, masked payload).
 * A string payload is written as UTF-8 straight into the frame, which saves the
 * intermediate buffer `Buffer.from(text)` would cost on the send path.
 * Throws `RangeError` for an unknown opcode, a fragmented or oversized control
 * frame, or a mask key that is not 4 bytes: those are caller bugs.
 */
export function encodeFrame(
  opcode: number,
  payload: Buffer | string,
  opts: EncodeFrameOptions = {},
): Buffer {
  const fin = opts.fin ?? true;
  const maskKey = opts.maskKey;
  if (!isKnownOpcode(opcode)) {
    throw new RangeError(`encodeFrame: opcode 0x${opcode.toString(16)} is not defined by RFC 6455`);
  }
  const payloadBytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (opcode >= Opcode.Close && (!fin || payloadBytes > MAX_CONTROL_PAYLOAD_BYTES)) {
    throw new RangeError(
      `encodeFrame: control frame 0x${opcode.toString(16)} must be final and at most ` +
        `${MAX_CONTROL_PAYLOAD_BYTES} bytes, got fin=${fin} and ${payloadBytes} bytes`,
    );
  }
  if (maskKey != null && maskKey.length !== 4) {
    throw new RangeError(`encodeFrame: maskKey must be 4 bytes, got ${maskKey.length}`);
  }

  const masked = maskKey !== null;
  const lengthBytes = payloadBytes < 126 ? 0 : payloadBytes < 0x10000 ? 2 : 8;
  const maskOffset = 2 + lengthBytes;
  const payloadOffset = maskOffset + (masked ? 4 : 0);
  const frame = Buffer.allocUnsafe(payloadOffset + payloadBytes);

  frame[0] = (fin ? 0x80 : 0) | opcode;
  const maskBit = masked ? 0x80 : 0;
  if (lengthBytes === 0) {
    frame[1] = maskBit | payloadBytes;
  } else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(payloadBytes, 2);
  } else {
    frame[1] = maskBit | 127;
    // Split in two 32-bit halves: writeBigUInt64BE would need a BigInt per frame.
    frame.writeUInt32BE(Math.floor(payloadBytes / 0x100000000), 2);
    frame.writeUInt32BE(payloadBytes >>> 0, 6);
  }

  if (typeof payload === 'string') frame.write(payload, payloadOffset, 'utf8');
  else payload.copy(frame, payloadOffset);

  if (masked) {
    if (maskKey === undefined) takeRandomBytes(frame, maskOffset, 4);
    else maskKey.copy(frame, maskOffset);
    applyMask(frame, payloadOffset, payloadBytes, frame.readUInt32BE(maskOffset));
  }
  return frame;
}

/**
 * XORs `length` bytes of `buf` from `offset`, in place, with a masking key given
 * as the big-endian 32-bit value of its 4 bytes, signed or unsigned (only the low
 * 32 bits are read) (RFC 6455 §5.3). Masking and
 * unmasking are the same operation. The key is a number rather than a buffer so
 * that a parser can collect it byte by byte into a field without allocating.
 */
export function applyMask(buf: Buffer, offset: number, length: number, key: number): void {
  const k0 = (key >>> 24) & 0xff;
  const k1 = (key >>> 16) & 0xff;
  const k2 = (key >>> 8) & 0xff;
  const k3 = key & 0xff;
  const end = offset + length;
  let i = offset;
  // Four bytes per turn so the key index needs no `% 4` in the loop.
  for (; i + 3 < end; i += 4) {
    buf[i] = buf[i]! ^ k0;
    buf[i + 1] = buf[i + 1]! ^ k1;
    buf[i + 2] = buf[i + 2]! ^ k2;
    buf[i + 3] = buf[i + 3]! ^ k3;
  }
  if (i < end) buf[i] = buf[i]! ^ k0;
  if (i + 1 < end) buf[i + 1] = buf[i + 1]! ^ k1;
  if (i + 2 < end) buf[i + 2] = buf[i + 2]! ^ k2;
}

/** True when `opcode` is one of the six opcodes RFC 6455 defines. */
export function isKnownOpcode(opcode: number): opcode is OpcodeValue {
  return (opcode >= 0x0 && opcode <= 0x2) || (opcode >= 0x8 && opcode <= 0xa);
}

/**
 * True when `code` may appear in a close frame on the wire (RFC 6455 §7.4): the
 * defined codes 1000–1014 except the three reserved for local use only (1004,
 * 1005 "no status", 1006 "abnormal closure"), and the registered/private range
 * 3000–4999.
 */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * Encodes a close frame payload: the code as 2 bytes big-endian, then the reason
 * as UTF-8. Throws `RangeError` if the code may not be sent or the reason does
 * not fit the 123 bytes a control frame leaves for it.
 */
export function encodeClosePayload(code: number, reason = ''): Buffer {
  if (!isValidCloseCode(code)) {
    throw new RangeError(`close code ${code} may not be sent; use 1000-1014 or 3000-4999`);
  }
  const reasonBytes = Buffer.byteLength(reason);
  if (reasonBytes > MAX_CONTROL_PAYLOAD_BYTES - 2) {
    throw new RangeError(
      `close reason is ${reasonBytes} bytes of UTF-8; at most ${MAX_CONTROL_PAYLOAD_BYTES - 2} fit`,
    );
  }
  const payload = Buffer.allocUnsafe(2 + reasonBytes);
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2, 'utf8');
  return payload;
}

/** A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1). */
export function makeHandshakeKey(): string {
  const key = Buffer.allocUnsafe(16);
  takeRandomBytes(key, 0, 16);
  return key.toString('base64');
}

/** The `Sec-WebSocket-Accept` value a server must answer to `key`: base64(sha1(key + GUID)). */
export function expectedAccept(key: string): string {
  // One-shot hash (Node >= 20.12): no Hash object per handshake for the GC to finalize.
  return hash('sha1', key + HANDSHAKE_GUID, 'base64');
}
