/**
 * The device read path's fast lane: reads the two frames pushbench's own
 * publisher causes, `push` and `room`, straight from their validated UTF-8
 * bytes, without decoding the frame to a string and without `JSON.parse`.
 * The publisher controls the payload's layout, and the node frames it in a
 * fixed order (server/protocol.ts `encodePushFrame`, `encodeRoomFrame`), so the
 * fast lane accepts exactly this grammar and nothing else:
 *
 *   push   {"type":"push","id":"S","payload":B}
 *   room   {"type":"room","room":"rK","offset":U,"epoch":"S","message":{"id":"S","payload":B}}
 *   B      {"seq":U,"t":N}  |  {"seq":U,"t":N,"pad":"S"}
 *
 * S is a string of printable ASCII without `"` or `\`; U an unsigned integer
 * without leading zeros and at most 15 digits (a safe integer); N a U with an
 * optional fraction; K a U. Any other frame, a foreign or malformed one
 * included, makes the scan return false, and the caller hands the frame to the
 * full parser. Every frame the fast lane accepts is valid JSON that the full
 * parser reads to the same fields (N equal to within one unit in the last
 * place), so correctness never depends on the fast lane.
 *
 * The scan allocates nothing: it writes its fields into {@link scanned}, one
 * object per thread, valid until the next scan.
 */

/** The fields of the last successful scan. */
export const scanned = {
  /** Message number (`payload.seq`). */
  seq: 0,
  /** Scheduled send time, host-monotonic µs (`payload.t`). */
  t: 0,
  /** Room index K of `rK` (room frames). */
  room: 0,
  /** The room message's offset (room frames). */
  offset: 0,
  /** Byte range of the epoch string inside the frame, quotes excluded (room frames). */
  epochStart: 0,
  epochEnd: 0,
};

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const CLOSE_BRACE = 0x7d;
const COMMA = 0x2c;
/** A safe integer has at most 15 digits for sure (2^53 has 16). */
const MAX_DIGITS = 15;

const PUSH_HEAD = Buffer.from('{"type":"push","id":"');
const PAYLOAD_KEY = Buffer.from(',"payload":');
const ROOM_HEAD = Buffer.from('{"type":"room","room":"r');
const OFFSET_KEY = Buffer.from('","offset":');
const EPOCH_KEY = Buffer.from(',"epoch":"');
const MESSAGE_KEY = Buffer.from(',"message":{"id":"');
const SEQ_KEY = Buffer.from('{"seq":');
const T_KEY = Buffer.from(',"t":');
const PAD_KEY = Buffer.from(',"pad":"');

/** Position after the number the last `uint`/`num` read; -1 when it read none. */
let end = -1;

/** True when `data` holds `lit` at `pos`. */
function at(data: Buffer, pos: number, lit: Buffer): boolean {
  if (pos + lit.length > data.length) return false;
  for (let i = 0; i < lit.length; i++) if (data[pos + i] !== lit[i]) return false;
  return true;
}

/** Reads U at `pos`; sets `end` (-1 when there is none). */
function uint(data: Buffer, pos: number): number {
  let value = 0;
  let i = pos;
  while (i < data.length) {
    const c = data[i]!;
    if (c < ZERO || c > NINE) break;
    value = value * 10 + (c - ZERO);
    i++;
  }
  const digits = i - pos;
  // JSON has no leading zeros ("012"); and beyond 15 digits precision may be lost.
  end = digits === 0 || digits > MAX_DIGITS || (digits > 1 && data[pos] === ZERO) ? -1 : i;
  return value;
}

/** Reads N (U with an optional fraction) at `pos`; sets `end`. */
function num(data: Buffer, pos: number): number {
  const whole = uint(data, pos);
  if (end < 0 || data[end] !== DOT) return whole;
  let i = end + 1;
  let fraction = 0;
  let scale = 1;
  while (i < data.length && scale < 1e15) {
    const c = data[i]!;
    if (c < ZERO || c > NINE) break;
    fraction = fraction * 10 + (c - ZERO);
    scale *= 10;
    i++;
  }
  const c = data[i];
  // No digit after the dot, more digits than we read, or an exponent: not ours.
  end = scale === 1 || (c !== undefined && c >= ZERO && c <= NINE) ? -1 : i;
  return whole + fraction / scale;
}

/** Skips S from `pos` (just after its opening quote); the position of its closing quote, or -1. */
function str(data: Buffer, pos: number): number {
  const close = data.indexOf(QUOTE, pos);
  if (close < 0) return -1;
  for (let i = pos; i < close; i++) {
    const c = data[i]!;
    // Control characters are not allowed raw in JSON; escapes and non-ASCII go to the full parser.
    if (c < 0x20 || c === BACKSLASH || c > 0x7e) return -1;
  }
  return close;
}

/** Reads B at `pos` into `scanned.seq`/`t`; the position after its `}`, or -1. */
function bench(data: Buffer, pos: number): number {
  if (!at(data, pos, SEQ_KEY)) return -1;
  const seq = uint(data, pos + SEQ_KEY.length);
  if (end < 0 || !at(data, end, T_KEY)) return -1;
  const t = num(data, end + T_KEY.length);
  if (end < 0) return -1;
  let p = end;
  if (data[p] === COMMA) {
    if (!at(data, p, PAD_KEY)) return -1;
    p = str(data, p + PAD_KEY.length);
    if (p < 0) return -1;
    p++;
  }
  if (data[p] !== CLOSE_BRACE) return -1;
  scanned.seq = seq;
  scanned.t = t;
  return p + 1;
}

/** Scans a `push` frame of pushbench's publisher; false: read it with the full parser. */
export function scanPush(data: Buffer): boolean {
  if (!at(data, 0, PUSH_HEAD)) return false;
  const idEnd = str(data, PUSH_HEAD.length);
  if (idEnd < 0 || !at(data, idEnd + 1, PAYLOAD_KEY)) return false;
  const p = bench(data, idEnd + 1 + PAYLOAD_KEY.length);
  return p === data.length - 1 && data[p] === CLOSE_BRACE;
}

/** Scans a `room` frame carrying a message of pushbench's publisher; false: read it with the full parser. */
export function scanRoom(data: Buffer): boolean {
  if (!at(data, 0, ROOM_HEAD)) return false;
  const room = uint(data, ROOM_HEAD.length);
  if (end < 0 || !at(data, end, OFFSET_KEY)) return false;
  const offset = uint(data, end + OFFSET_KEY.length);
  if (end < 0 || !at(data, end, EPOCH_KEY)) return false;
  const epochStart = end + EPOCH_KEY.length;
  const epochEnd = str(data, epochStart);
  if (epochEnd < 0 || !at(data, epochEnd + 1, MESSAGE_KEY)) return false;
  const idEnd = str(data, epochEnd + 1 + MESSAGE_KEY.length);
  if (idEnd < 0 || !at(data, idEnd + 1, PAYLOAD_KEY)) return false;
  const p = bench(data, idEnd + 1 + PAYLOAD_KEY.length);
  if (p < 0 || p !== data.length - 2 || data[p] !== CLOSE_BRACE || data[p + 1] !== CLOSE_BRACE) {
    return false;
  }
  scanned.room = room;
  scanned.offset = offset;
  scanned.epochStart = epochStart;
  scanned.epochEnd = epochEnd;
  return true;
}

/** True when the bytes `data[start, end)` spell `text` (ASCII). */
export function bytesEqual(data: Buffer, start: number, stop: number, text: string): boolean {
  if (stop - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (data[start + i] !== text.charCodeAt(i)) return false;
  return true;
}
