/**
 * The incoming-frame parser of the lean client and the lean server socket: a
 * state machine fed socket chunks that may split anywhere, down to one byte at a
 * time. It checks every rule its side must enforce on the peer's frames (a
 * client rejects masked frames, a server requires them) and reassembles
 * fragmented messages.
 */
import { isUtf8 } from 'node:buffer';
import { CloseCode } from './close-codes.js';
import { applyMask, isValidCloseCode, MAX_CONTROL_PAYLOAD_BYTES, Opcode } from './frame.js';

/** The largest message {@link FrameParser} accepts unless told otherwise: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Stable codes of the violations {@link FrameParser} reports; the names follow `ws`. */
export type WsProtocolErrorCode =
  | 'WS_ERR_UNEXPECTED_RSV'
  | 'WS_ERR_INVALID_OPCODE'
  | 'WS_ERR_UNEXPECTED_CONTINUATION'
  | 'WS_ERR_EXPECTED_CONTINUATION'
  | 'WS_ERR_EXPECTED_FIN'
  | 'WS_ERR_UNEXPECTED_MASK'
  | 'WS_ERR_EXPECTED_MASK'
  | 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH'
  | 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
  | 'WS_ERR_INVALID_UTF8'
  | 'WS_ERR_INVALID_CLOSE_CODE';

/**
 * A frame from the peer broke RFC 6455 or our limits; `closeCode` is the code
 * to close with (1002, 1007 or 1009). It is a `RangeError` because
 * the peer sent a value outside what the protocol allows, as in `ws`.
 */
export class WsProtocolError extends RangeError {
  /** Stable machine-readable code, e.g. `WS_ERR_UNEXPECTED_MASK`. */
  readonly code: WsProtocolErrorCode;
  /** The close code to send: 1002 protocol error, 1007 invalid payload, 1009 too big. */
  readonly closeCode: number;

  constructor(code: WsProtocolErrorCode, closeCode: number, message: string) {
    super(message);
    this.name = 'WsProtocolError';
    this.code = code;
    this.closeCode = closeCode;
  }
}

/**
 * What a parser reports, as plain methods taking the owner first so that one
 * handler object serves every connection of a process (no closure per socket).
 * Buffers passed to a handler may be views into the socket's chunk: copy them to
 * keep them past the call. Text messages arrive either decoded
 * ({@link DecodedTextHandler}) or as their validated bytes ({@link TextBytesHandler}),
 * whichever of the two methods the handler has.
 */
export type FrameHandler<TOwner> = FrameEventHandler<TOwner> &
  (DecodedTextHandler<TOwner> | TextBytesHandler<TOwner>);

/** A handler that takes text messages as strings (the client: its owner wants text). */
export interface DecodedTextHandler<TOwner> {
  /** A whole text message, validated as UTF-8 and decoded. */
  onText(owner: TOwner, text: string): void;
}

/**
 * A handler that takes text messages as bytes (the server: its sink hands `Buffer`s
 * on, as `ws` does, and decodes later or never), which saves decoding twice.
 */
export interface TextBytesHandler<TOwner> {
  /** A whole text message as bytes already validated as UTF-8. */
  onTextBytes(owner: TOwner, data: Buffer): void;
}

/** The events every {@link FrameHandler} takes, whatever its text form. */
export interface FrameEventHandler<TOwner> {
  /** A whole binary message. */
  onBinary(owner: TOwner, data: Buffer): void;
  /** A ping; the payload must be echoed in a pong. */
  onPing(owner: TOwner, payload: Buffer): void;
  /** A pong. */
  onPong(owner: TOwner, payload: Buffer): void;
  /** A valid close frame; code 1005 when it carried no payload. The parser stops after it. */
  onClose(owner: TOwner, code: number, reason: string): void;
  /** A violation; the parser has stopped and ignores further input. */
  onError(owner: TOwner, err: WsProtocolError): void;
}

/**
 * Which end of the connection the parser serves. A `client` parses server
 * frames, which must not be masked; a `server` parses client frames, which must
 * be (RFC 6455 §5.1), and unmasks their payloads in place.
 */
export type ParserRole = 'client' | 'server';

/** Options for {@link FrameParser}. */
export interface FrameParserOptions {
  /** Largest message (all fragments together) accepted before failing with 1009; default 16 MiB. */
  maxMessageBytes?: number;
  /** The side this parser is on; default `client`. */
  role?: ParserRole;
}

// Parser states, named as in ws's receiver.js. Each header state consumes one byte
// at a time into number fields, so a header split anywhere needs no buffer at all.
/** Expecting the first header byte: FIN, RSV1-3, opcode. */
const FRAME_START = 0;
/** Expecting the second header byte: MASK and the 7-bit length. */
const PAYLOAD_LENGTH_7 = 1;
/** Collecting the bytes of a 16-bit or 64-bit extended length. */
const PAYLOAD_LENGTH_EXTENDED = 2;
/** Collecting the payload. */
const PAYLOAD = 3;
/** Stopped after a close frame, a violation or {@link FrameParser.stop}; input is ignored. */
const DONE = 4;
/** Collecting the 4 bytes of a client frame's masking key (server role only). */
const MASK_KEY = 5;

type ParserState =
  | typeof FRAME_START
  | typeof PAYLOAD_LENGTH_7
  | typeof PAYLOAD_LENGTH_EXTENDED
  | typeof MASK_KEY
  | typeof PAYLOAD
  | typeof DONE;

const EMPTY = Buffer.alloc(0);

/**
 * Incremental parser of one connection's incoming frames. State is a handful of
 * numbers; a payload buffer is allocated only when a frame's payload arrives
 * split across chunks, and a fragment list only while a fragmented message is in
 * flight.
 *
 * In the server role payloads are unmasked in place, in the chunk passed to
 * {@link feed}: the caller must own that chunk (a socket's 'data' chunk or an
 * upgrade's `head` is) and must not read it afterwards.
 */
export class FrameParser<TOwner> {
  private readonly handler: FrameHandler<TOwner>;
  private readonly owner: TOwner;
  private readonly maxMessageBytes: number;
  /** Server role: frames must be masked. */
  private readonly expectMask: boolean;

  private state: ParserState = FRAME_START;
  /** FIN bit of the frame being parsed. */
  private fin = false;
  /** Opcode of the frame being parsed. */
  private opcode = 0;
  /** Payload length of the frame being parsed, accumulated byte by byte when extended. */
  private payloadLength = 0;
  /** Extended-length or mask-key bytes still expected. */
  private lengthBytesLeft = 0;
  /** The frame's masking key, its 4 bytes as one big-endian int32 (server role). */
  private maskKey = 0;
  /** The payload so far, when it arrived split across chunks; `null` otherwise. */
  private partial: Buffer | null = null;
  /** Bytes of {@link partial} filled. */
  private partialFilled = 0;
  /** Opcode of the fragmented message in flight, 0 when there is none. */
  private fragmentOpcode = 0;
  /** The fragments of that message so far. */
  private fragments: Buffer[] | null = null;
  /** Their total length. */
  private fragmentBytes = 0;

  constructor(handler: FrameHandler<TOwner>, owner: TOwner, opts: FrameParserOptions = {}) {
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1) {
      throw new TypeError(
        `FrameParser: maxMessageBytes must be a positive integer, got ${maxMessageBytes}`,
      );
    }
    const role = opts.role ?? 'client';
    if (role !== 'client' && role !== 'server') {
      throw new TypeError(`FrameParser: role must be 'client' or 'server', got ${String(role)}`);
    }
    this.handler = handler;
    this.owner = owner;
    this.maxMessageBytes = maxMessageBytes;
    this.expectMask = role === 'server';
  }

  /** True once the parser has stopped (close frame, violation or {@link stop}). */
  get stopped(): boolean {
    return this.state === DONE;
  }

  /**
   * Parses the first `length` bytes of `chunk` (all of it by default), calling
   * the handler for each complete message or control frame, in order. A handler
   * may call {@link stop}; parsing then ends at once. The parser keeps no view
   * into `chunk` once this returns (a split payload or a fragment is copied), so
   * the caller may reuse it for the next read.
   */
  feed(chunk: Buffer, length = chunk.length): void {
    let offset = 0;
    while (offset < length) {
      switch (this.state) {
        case FRAME_START:
          this.readFirstByte(chunk[offset]!);
          offset++;
          break;
        case PAYLOAD_LENGTH_7:
          this.readSecondByte(chunk[offset]!);
          offset++;
          break;
        case PAYLOAD_LENGTH_EXTENDED:
          this.readLengthByte(chunk[offset]!);
          offset++;
          break;
        case MASK_KEY:
          this.readMaskByte(chunk[offset]!);
          offset++;
          break;
        case PAYLOAD:
          offset = this.readPayload(chunk, offset, length);
          break;
        case DONE:
          return;
      }
    }
  }

  /** Stops parsing for good and drops any buffered payload or fragments. */
  stop(): void {
    this.state = DONE;
    this.partial = null;
    this.fragments = null;
  }

  private readFirstByte(byte: number): void {
    const violation = firstByteViolation(byte, this.fragmentOpcode);
    if (violation !== null) {
      this.fail(violation);
      return;
    }
    this.fin = (byte & 0x80) !== 0;
    this.opcode = byte & 0x0f;
    this.state = PAYLOAD_LENGTH_7;
  }

  private readSecondByte(byte: number): void {
    // A server must fail the connection on an unmasked client frame, a client on a
    // masked server frame (§5.1).
    const masked = (byte & 0x80) !== 0;
    if (masked !== this.expectMask) {
      this.fail(
        masked
          ? protocolError('WS_ERR_UNEXPECTED_MASK', 'server frame is masked')
          : protocolError('WS_ERR_EXPECTED_MASK', 'client frame is not masked'),
      );
      return;
    }
    const length7 = byte & 0x7f;
    if (this.opcode >= Opcode.Close && length7 > MAX_CONTROL_PAYLOAD_BYTES) {
      this.fail(
        protocolError(
          'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
          `control frame payload length ${length7} exceeds ${MAX_CONTROL_PAYLOAD_BYTES}`,
        ),
      );
      return;
    }
    if (length7 === 126 || length7 === 127) {
      this.payloadLength = 0;
      this.lengthBytesLeft = length7 === 126 ? 2 : 8;
      this.state = PAYLOAD_LENGTH_EXTENDED;
      return;
    }
    this.payloadLength = length7;
    this.headerComplete();
  }

  private readLengthByte(byte: number): void {
    this.payloadLength = this.payloadLength * 256 + byte;
    // Checked after every byte, not only the last: a partial value never exceeds
    // the final one, so a 64-bit length over the cap fails before it can grow past
    // 2^53, where a JS number would stop being exact.
    if (this.exceedsMessageCap()) this.failTooBig();
    else if (--this.lengthBytesLeft === 0) this.headerComplete();
  }

  private readMaskByte(byte: number): void {
    // Kept a signed 32-bit integer (a Smi): were the field ever to hold a number
    // above 2^31, V8 would box it in a heap number, for every parser.
    this.maskKey = (this.maskKey << 8) | byte;
    if (--this.lengthBytesLeft === 0) this.payloadStart();
  }

  /** The length is known: checks it, then expects the mask key (server) or the payload. */
  private headerComplete(): void {
    if (this.opcode < Opcode.Close && this.exceedsMessageCap()) {
      this.failTooBig();
    } else if (this.expectMask) {
      this.maskKey = 0;
      this.lengthBytesLeft = 4;
      this.state = MASK_KEY;
    } else {
      this.payloadStart();
    }
  }

  private payloadStart(): void {
    if (this.payloadLength === 0) this.frameComplete(EMPTY);
    else this.state = PAYLOAD;
  }

  /** Consumes payload bytes from `chunk` at `offset`, up to `length`; returns the offset after them. */
  private readPayload(chunk: Buffer, offset: number, length: number): number {
    const available = length - offset;
    if (this.partial === null) {
      // The common case: the whole payload is in this chunk; hand out a view, no copy.
      if (available >= this.payloadLength) {
        const end = offset + this.payloadLength;
        // Unmasked in place: the caller owns the chunk (see the class comment).
        if (this.expectMask) applyMask(chunk, offset, this.payloadLength, this.maskKey);
        this.frameComplete(chunk.subarray(offset, end));
        return end;
      }
      this.partial = Buffer.allocUnsafe(this.payloadLength);
      this.partialFilled = 0;
    }
    const take = Math.min(available, this.payloadLength - this.partialFilled);
    chunk.copy(this.partial, this.partialFilled, offset, offset + take);
    this.partialFilled += take;
    if (this.partialFilled === this.payloadLength) {
      const payload = this.partial;
      this.partial = null;
      if (this.expectMask) applyMask(payload, 0, payload.length, this.maskKey);
      this.frameComplete(payload);
    }
    return offset + take;
  }

  private frameComplete(payload: Buffer): void {
    // Back to FRAME_START before any handler runs, so a handler's stop() sticks.
    this.state = FRAME_START;
    const opcode = this.opcode;
    if (opcode >= Opcode.Close) {
      this.controlFrame(opcode, payload);
      return;
    }

    if (!this.fin) {
      if (opcode !== Opcode.Continuation) this.fragmentOpcode = opcode;
      // A copy: the payload may be a view into a chunk the caller reuses after feed().
      const fragment = Buffer.from(payload);
      if (this.fragments === null) this.fragments = [fragment];
      else this.fragments.push(fragment);
      this.fragmentBytes += payload.length;
      return;
    }

    let message = payload;
    let messageOpcode = opcode;
    if (opcode === Opcode.Continuation && this.fragments !== null) {
      this.fragments.push(payload);
      message = Buffer.concat(this.fragments, this.fragmentBytes + payload.length);
      messageOpcode = this.fragmentOpcode;
      this.fragments = null;
      this.fragmentBytes = 0;
      this.fragmentOpcode = 0;
    }

    if (messageOpcode === Opcode.Text) {
      // Validated whole, not per fragment: a code point may straddle two fragments.
      if (!isUtf8(message)) this.fail(invalidUtf8('text message is not UTF-8'));
      else if ('onTextBytes' in this.handler) this.handler.onTextBytes(this.owner, message);
      else this.handler.onText(this.owner, message.toString('utf8'));
    } else {
      this.handler.onBinary(this.owner, message);
    }
  }

  private controlFrame(opcode: number, payload: Buffer): void {
    if (opcode === Opcode.Ping) {
      this.handler.onPing(this.owner, payload);
    } else if (opcode === Opcode.Pong) {
      this.handler.onPong(this.owner, payload);
    } else {
      this.closeFrame(payload);
    }
  }

  private closeFrame(payload: Buffer): void {
    let code: number = CloseCode.NoStatus;
    let reason = '';
    if (payload.length === 1) {
      this.fail(
        protocolError(
          'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
          'close frame payload of 1 byte cannot hold a close code',
        ),
      );
      return;
    }
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) {
        this.fail(
          protocolError(
            'WS_ERR_INVALID_CLOSE_CODE',
            `close frame carries code ${code}, which may not be sent`,
          ),
        );
        return;
      }
      const reasonBytes = payload.subarray(2);
      if (!isUtf8(reasonBytes)) {
        this.fail(invalidUtf8('close reason is not UTF-8'));
        return;
      }
      reason = reasonBytes.toString('utf8');
    }
    // Nothing the peer sends after a close frame counts (§5.5.1), so stop before reporting.
    this.stop();
    this.handler.onClose(this.owner, code, reason);
  }

  private exceedsMessageCap(): boolean {
    return this.fragmentBytes + this.payloadLength > this.maxMessageBytes;
  }

  private failTooBig(): void {
    this.fail(
      new WsProtocolError(
        'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
        CloseCode.MessageTooBig,
        `message exceeds maxMessageBytes ${this.maxMessageBytes}`,
      ),
    );
  }

  private fail(err: WsProtocolError): void {
    this.stop();
    this.handler.onError(this.owner, err);
  }
}

/**
 * What is wrong with a frame's first byte (FIN, RSV1-3, opcode) given the
 * fragmented message in flight (`fragmentOpcode`, 0 if none), or null if nothing.
 */
function firstByteViolation(byte: number, fragmentOpcode: number): WsProtocolError | null {
  // No extension is negotiated, so any RSV bit is a violation (RFC 6455 §5.2).
  if ((byte & 0x70) !== 0) {
    const rsv = (byte & 0x70).toString(16);
    return protocolError(
      'WS_ERR_UNEXPECTED_RSV',
      `RSV bits 0x${rsv} set but no extension was negotiated`,
    );
  }
  const opcode = byte & 0x0f;
  const hex = opcode.toString(16);
  switch (opcode) {
    case Opcode.Continuation:
      return fragmentOpcode === 0
        ? protocolError(
            'WS_ERR_UNEXPECTED_CONTINUATION',
            'continuation frame without a fragmented message to continue',
          )
        : null;
    case Opcode.Text:
    case Opcode.Binary:
      return fragmentOpcode !== 0
        ? protocolError(
            'WS_ERR_EXPECTED_CONTINUATION',
            `new data frame (opcode 0x${hex}) inside a fragmented message`,
          )
        : null;
    case Opcode.Close:
    case Opcode.Ping:
    case Opcode.Pong:
      // Control frames may interleave with fragments but may not be fragmented (§5.5).
      return (byte & 0x80) === 0
        ? protocolError('WS_ERR_EXPECTED_FIN', `control frame 0x${hex} without FIN`)
        : null;
    default:
      return protocolError('WS_ERR_INVALID_OPCODE', `unknown opcode 0x${hex}`);
  }
}

function protocolError(code: WsProtocolErrorCode, message: string): WsProtocolError {
  return new WsProtocolError(code, CloseCode.ProtocolError, message);
}

function invalidUtf8(message: string): WsProtocolError {
  return new WsProtocolError('WS_ERR_INVALID_UTF8', CloseCode.InvalidPayload, message);
}
