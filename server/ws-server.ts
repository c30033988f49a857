/**
 * The node's server side of RFC 6455, written over the upgraded socket rather
 * than with `ws` because a node holds tens of thousands of idle devices and a
 * `ws` WebSocket (an EventEmitter, a Receiver that is a Writable stream, a
 * Sender, their buffers and listeners) costs more than the socket it wraps.
 *
 * It does what the node needs and no more: the upgrade (no extension, no
 * subprotocol), text and binary messages in, text out, ping/pong and the close
 * handshake. Per connection there is one small object and a parser; no closure
 * and no timer. Socket events go to module-level functions that find the
 * connection through a symbol on the socket, and everything a connection
 * reports goes to one {@link LeanWebSocketSink} shared by the whole server.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WsNotOpenError } from '../core/errors.js';
import { CloseCode } from '../core/ws/close-codes.js';
import { encodeClosePayload, encodeFrame, expectedAccept, Opcode } from '../core/ws/frame.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  type FrameHandler,
  FrameParser,
  type WsProtocolError,
} from '../core/ws/parser.js';

/** What connections report; one sink object serves every connection of a server. */
export interface LeanWebSocketSink<TOwner> {
  /**
   * A whole (reassembled) message: text already validated as UTF-8, or binary.
   * `data` may be a view into a socket chunk: copy it to keep it past the call.
   * Also called while closing, for messages the peer sent before its close frame.
   */
  onMessage(ws: LeanWebSocket<TOwner>, data: Buffer, isBinary: boolean): void;
  /** A pong arrived (the answer to {@link LeanWebSocket.ping}, or unsolicited). */
  onPong(ws: LeanWebSocket<TOwner>): void;
  /**
   * A frame broke RFC 6455 or the size limit. The connection is already failing
   * with `err.closeCode` (1002, 1007 or 1009); {@link onClose} follows.
   */
  onError(ws: LeanWebSocket<TOwner>, err: WsProtocolError): void;
  /**
   * The TCP connection is closed; exactly once per connection. `code` is the
   * one in the peer's close frame, 1005 if that frame had none, or 1006 if no
   * close frame arrived (reset, timeout, terminate, protocol error), as in `ws`.
   */
  onClose(ws: LeanWebSocket<TOwner>, code: number): void;
}

/**
 * What the upgrade needs of a request: node:http's IncomingMessage is one, and
 * so is what the node's device port parses itself (server/device-port.ts).
 */
export interface UpgradeRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: {
    readonly upgrade?: string | undefined;
    readonly connection?: string | undefined;
    readonly 'sec-websocket-key'?: string | undefined;
    readonly 'sec-websocket-version'?: string | undefined;
  };
}

/** Settings of a {@link LeanWebSocketServer}. */
export interface LeanWebSocketServerOptions {
  /** Largest message (all fragments together) accepted; larger fails with 1009. Default 16 MiB. */
  maxMessageBytes?: number;
  /**
   * How long a closing connection may wait for the peer's close frame and FIN
   * before it is destroyed. Default 30 s (as in `ws`).
   */
  closeTimeoutMs?: number;
  /** Monotonic milliseconds; injectable for tests. Default `performance.now`. */
  nowMs?: () => number;
}

/** The `readyState` values, as in the WHATWG WebSocket and `ws`. */
export type LeanReadyState = 0 | 1 | 2 | 3;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** The most UTF-8 bytes a close reason may have: a control frame's 125 less the code. */
const MAX_CLOSE_REASON_BYTES = 123;

const UNMASKED = { maskKey: null } as const;
/** Our pings carry no payload, so one frame serves every connection. It is never mutated. */
const PING_FRAME = encodeFrame(Opcode.Ping, Buffer.alloc(0), UNMASKED);

/** A text message encoded once as a server-to-client frame, for {@link LeanWebSocket.sendEncoded}. */
export function encodeTextFrame(text: string): Buffer {
  return encodeFrame(Opcode.Text, text, UNMASKED);
}
/** The empty close frame that answers a close frame without a code. */
const EMPTY_CLOSE_FRAME = encodeFrame(Opcode.Close, Buffer.alloc(0), UNMASKED);
/** A `Sec-WebSocket-Key` is 16 bytes in base64: 22 characters and `==` (RFC 6455 §4.1). */
const HANDSHAKE_KEY = /^[+/0-9A-Za-z]{22}==$/;

/** The socket property through which the shared handlers find their connection. */
const kWebSocket = Symbol('pushbench.leanWebSocket');
type OwnedSocket = Duplex & { [kWebSocket]?: LeanWebSocket<unknown> | undefined };

/**
 * Accepts WebSocket upgrades handed to it (by an `http.Server`'s `'upgrade'`
 * event, or by the node's device port) and runs the connections. It never tracks the connections it opened
 * (the owner does); it only tracks those that are closing, for
 * {@link LeanWebSocketServerOptions.closeTimeoutMs}.
 */
export class LeanWebSocketServer<TOwner = unknown> {
  /** @internal Where every connection of this server reports. */
  readonly sink: LeanWebSocketSink<TOwner>;
  /** @internal Passed to each connection's parser. */
  readonly maxMessageBytes: number;
  private readonly closeTimeoutMs: number;
  private readonly nowMs: () => number;
  /**
   * Closing connections and when each started closing, in that order (a Map
   * iterates in insertion order), so the sweep stops at the first young one.
   */
  private readonly closing = new Map<LeanWebSocket<TOwner>, number>();
  /** One timer for the whole server, running only while some connection is closing. */
  private closeSweep: NodeJS.Timeout | undefined;

  /** Creates a server whose connections report to `sink`. Throws `TypeError` for a bad option. */
  constructor(sink: LeanWebSocketSink<TOwner>, options: LeanWebSocketServerOptions = {}) {
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const closeTimeoutMs = options.closeTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1) {
      throw new TypeError(`maxMessageBytes must be a positive integer, got ${maxMessageBytes}`);
    }
    if (!(closeTimeoutMs > 0)) {
      throw new TypeError(`closeTimeoutMs must be positive, got ${closeTimeoutMs}`);
    }
    this.sink = sink;
    this.maxMessageBytes = maxMessageBytes;
    this.closeTimeoutMs = closeTimeoutMs;
    this.nowMs = options.nowMs ?? (() => performance.now());
  }

  /**
   * Completes the upgrade of `socket` (the arguments of an `http.Server`
   * `'upgrade'` event): answers 101 and calls `onOpen` synchronously with the
   * open connection, then parses `head`, so `onOpen` can attach the owner
   * before any message is reported. A request that is not a valid version-13
   * upgrade is answered 400 and the socket closed; `onOpen` is then not called.
   * The caller must not use `socket` afterwards.
   */
  handleUpgrade(
    req: UpgradeRequest,
    socket: Duplex,
    head: Buffer,
    onOpen: (ws: LeanWebSocket<TOwner>) => void,
  ): void {
    // Listening is what keeps a socket error from crashing the process.
    socket.on('error', onSocketError);
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    const check = checkUpgrade(req);
    if (!check.ok) {
      refuseHandshake(socket, check);
      return;
    }
    // Corked until onOpen has run: a first frame it sends (the node's hello) leaves
    // in one write with the 101, and the device reads both at once.
    socket.cork();
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${expectedAccept(check.key)}\r\n\r\n`,
    );
    if (socket instanceof Socket) {
      // Pushes are small; Nagle would hold one back for the previous ACK and add up
      // to 40 ms of latency. setTimeout(0) clears any timeout the HTTP server set.
      socket.setNoDelay(true);
      socket.setTimeout(0);
    }
    // An http.Server's sockets allow half-open connections. Turned off, the stream
    // itself ends our side when the peer's FIN arrives (the peer is gone; nothing
    // more can be read), which spares an 'end' listener per socket: net.Socket has
    // one already, and a second turns the listener slot into an array.
    socket.allowHalfOpen = false;
    const ws = new LeanWebSocket(this, socket);
    (socket as OwnedSocket)[kWebSocket] = ws;
    socket.on('data', onSocketData);
    socket.on('close', onSocketClose);
    onOpen(ws);
    socket.uncork();
    // Frames the client sent right behind its request came with the request's chunk.
    if (head.length > 0) ws.receive(head);
  }

  /** @internal A connection started closing: put it under the close sweep. */
  closingStarted(ws: LeanWebSocket<TOwner>): void {
    this.closing.set(ws, this.nowMs());
    if (this.closeSweep !== undefined) return;
    this.closeSweep = setInterval(() => this.sweepClosing(), Math.min(1000, this.closeTimeoutMs));
    this.closeSweep.unref();
  }

  /** @internal A connection's socket is closed. */
  closed(ws: LeanWebSocket<TOwner>): void {
    if (this.closing.delete(ws) && this.closing.size === 0) this.stopCloseSweep();
  }

  /**
   * Destroys connections that have been closing longer than closeTimeoutMs: the
   * peer never answered our close frame, or never sent its FIN after the
   * exchange (our `end()` sends ours, but TCP closes only when both sides have
   * ended). The owner cannot be relied on for this: the node's lifecycle sweep,
   * for one, stops watching a connection when it closes it for overstaying a
   * goaway, and such a socket would otherwise stay open forever.
   */
  private sweepClosing(): void {
    const deadline = this.nowMs() - this.closeTimeoutMs;
    for (const [ws, startedMs] of this.closing) {
      if (startedMs > deadline) break;
      this.closing.delete(ws);
      ws.terminate();
    }
    if (this.closing.size === 0) this.stopCloseSweep();
  }

  private stopCloseSweep(): void {
    if (this.closeSweep !== undefined) clearInterval(this.closeSweep);
    this.closeSweep = undefined;
  }
}

/**
 * One open server-side WebSocket connection, made by
 * {@link LeanWebSocketServer.handleUpgrade}. It is built to exist 100k times
 * in a process: a few fields, no listeners of its own, no timer. Methods never
 * throw on network trouble; the end of the connection is always reported once,
 * through {@link LeanWebSocketSink.onClose}.
 */
export class LeanWebSocket<TOwner = unknown> {
  /** Not used: a connection is created open. Here for code written against `ws`. */
  static readonly CONNECTING = CONNECTING;
  /** Messages flow both ways. */
  static readonly OPEN = OPEN;
  /** A close frame was sent or received, or {@link terminate} was called; no more sends. */
  static readonly CLOSING = CLOSING;
  /** The socket is closed and {@link LeanWebSocketSink.onClose} was called. */
  static readonly CLOSED = CLOSED;

  /** Whatever the server's user attaches (the node: its `DeviceConnection`). */
  owner: TOwner | undefined = undefined;

  private readonly server: LeanWebSocketServer<TOwner>;
  private readonly socket: OwnedSocket;
  private readonly parser: FrameParser<LeanWebSocket<unknown>>;
  /**
   * OPEN until our close frame goes out (sent once at most, always on leaving
   * OPEN while the parser runs) or {@link terminate} stops everything.
   */
  private state: LeanReadyState = OPEN;
  /** The code reported to onClose: from the peer's close frame, else 1006. */
  private closeCode: number = CloseCode.Abnormal;

  /** @internal Only {@link LeanWebSocketServer.handleUpgrade} creates connections. */
  constructor(server: LeanWebSocketServer<TOwner>, socket: Duplex) {
    this.server = server;
    this.socket = socket;
    this.parser = new FrameParser<LeanWebSocket<unknown>>(frameEvents, this, {
      role: 'server',
      maxMessageBytes: server.maxMessageBytes,
    });
  }

  /** 0 connecting (never seen), 1 open, 2 closing, 3 closed. */
  get readyState(): LeanReadyState {
    return this.state;
  }

  /** {@link LeanWebSocket.OPEN}, for code that compares `ws.readyState === ws.OPEN`. */
  get OPEN(): typeof OPEN {
    return OPEN;
  }

  /** Bytes accepted by {@link send} (and control frames) but not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  /**
   * Sends one text message. `cb` runs once the socket has handed the frame to
   * the kernel (with `null`), or with an error if the socket failed first or the
   * connection is not open (then asynchronously, and nothing is sent). Writes
   * never block: the caller bounds {@link bufferedAmount}.
   */
  send(text: string, cb?: (err?: Error | null) => void): void {
    if (this.state !== OPEN) {
      if (cb !== undefined) process.nextTick(cb, new WsNotOpenError(this.state));
      return;
    }
    this.socket.write(encodeFrame(Opcode.Text, text, UNMASKED), cb);
  }

  /**
   * Sends one message already encoded as a server-to-client frame by
   * {@link encodeTextFrame}. A fan-out encodes its frame once and hands the
   * same buffer to every connection: no per-connection UTF-8 encoding or copy
   * (the buffer must not be modified afterwards). Otherwise as {@link send}.
   */
  sendEncoded(frame: Buffer, cb?: (err?: Error | null) => void): void {
    if (this.state !== OPEN) {
      if (cb !== undefined) process.nextTick(cb, new WsNotOpenError(this.state));
      return;
    }
    this.socket.write(frame, cb);
  }

  /** Sends an empty ping if open; the answer is reported by {@link LeanWebSocketSink.onPong}. */
  ping(): void {
    if (this.state === OPEN) this.socket.write(PING_FRAME);
  }

  /**
   * Starts the close handshake: sends a close frame and waits for the peer's
   * close frame (then ends TCP, as the server should first, RFC 6455 §7.1.1) or
   * its FIN, bounded by the server's closeTimeoutMs. Does nothing unless open.
   * A reason over 123 bytes of UTF-8 is cut, not refused: a server must not
   * fail on advisory text. Throws `RangeError` for a code that may not be sent.
   */
  close(code = 1000, reason = ''): void {
    if (this.state !== OPEN) return;
    this.sendCloseFrame(
      encodeFrame(Opcode.Close, encodeClosePayload(code, fitCloseReason(reason)), UNMASKED),
    );
  }

  /** Destroys the socket now, without a close handshake; onClose still follows, once. */
  terminate(): void {
    if (this.state === CLOSED) return;
    this.parser.stop();
    // Not put under the close sweep: 'close' follows destroy() without the peer's help.
    this.state = CLOSING;
    this.socket.destroy();
  }

  /** @internal Bytes from the socket (or the upgrade's head); the chunk becomes the parser's. */
  receive(chunk: Buffer): void {
    this.parser.feed(chunk);
  }

  /** @internal A whole message; only the shared parser handler calls this. */
  messageReceived(data: Buffer, isBinary: boolean): void {
    this.server.sink.onMessage(this, data, isBinary);
  }

  /** @internal A pong; only the shared parser handler calls this. */
  pongReceived(): void {
    this.server.sink.onPong(this);
  }

  /** @internal A ping, answered with a pong carrying its payload (RFC 6455 §5.5.3). */
  pingReceived(payload: Buffer): void {
    // Once our close frame is out, nothing but our TCP FIN may follow it.
    if (this.state === OPEN) this.socket.write(encodeFrame(Opcode.Pong, payload, UNMASKED));
  }

  /** @internal The peer's close frame; the parser has stopped. */
  closeFrameReceived(code: number): void {
    this.closeCode = code;
    if (this.state === OPEN) {
      // Peer-initiated: echo its code (§5.5.1); 1005 means it sent none, so echo none.
      this.sendCloseFrame(
        code === CloseCode.NoStatus
          ? EMPTY_CLOSE_FRAME
          : encodeFrame(Opcode.Close, encodeClosePayload(code), UNMASKED),
      );
    }
    // Both close frames are out: the server closes TCP first (§7.1.1). end(), not
    // destroy(): destroy could drop the close frame still queued behind the others.
    this.socket.end();
  }

  /** @internal A frame broke the protocol or our limits: fail the connection (§7.1.7). */
  protocolError(err: WsProtocolError): void {
    this.server.sink.onError(this, err);
    if (this.state === OPEN) {
      this.sendCloseFrame(encodeFrame(Opcode.Close, encodeClosePayload(err.closeCode), UNMASKED));
    }
    // The parser has stopped, so the peer's close frame could not be read: end now.
    if (this.state !== CLOSED) this.socket.end();
  }

  /** @internal The socket is fully closed: report it, once. */
  socketClosed(): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.socket[kWebSocket] = undefined;
    this.parser.stop();
    this.server.closed(this);
    this.server.sink.onClose(this, this.closeCode);
  }

  /** Sends our close frame and leaves OPEN; only ever called while OPEN. */
  private sendCloseFrame(frame: Buffer): void {
    this.socket.write(frame);
    this.state = CLOSING;
    this.server.closingStarted(this);
  }
}

/** The connection a socket belongs to, or undefined before the upgrade and after the close. */
function connectionOf(socket: Duplex): LeanWebSocket<unknown> | undefined {
  return (socket as OwnedSocket)[kWebSocket];
}

function onSocketData(this: Duplex, chunk: Buffer): void {
  connectionOf(this)?.receive(chunk);
}

function onSocketError(this: Duplex): void {
  // Nothing to do: a stream destroys itself on error and 'close' follows, where
  // the connection reports 1006. Without a listener the error would crash the node.
}

function onSocketClose(this: Duplex): void {
  connectionOf(this)?.socketClosed();
}

function destroySocket(this: Duplex): void {
  this.destroy();
}

/** The one parser handler every connection shares. */
const frameEvents: FrameHandler<LeanWebSocket<unknown>> = {
  onTextBytes: (ws, data) => ws.messageReceived(data, false),
  onBinary: (ws, data) => ws.messageReceived(data, true),
  onPing: (ws, payload) => ws.pingReceived(payload),
  onPong: (ws) => ws.pongReceived(),
  onClose: (ws, code) => ws.closeFrameReceived(code),
  onError: (ws, err) => ws.protocolError(err),
};

/** Why an upgrade request is refused. */
interface HandshakeProblem {
  ok: false;
  detail: string;
  /** Extra response header lines, each ending in CRLF. */
  headers: string;
}

/** The verdict on an upgrade request: its key when acceptable. */
type UpgradeCheck = { ok: true; key: string } | HandshakeProblem;

function problem(detail: string, headers = ''): HandshakeProblem {
  return { ok: false, detail, headers };
}

/**
 * Checks an upgrade request for RFC 6455 version 13. Extensions and
 * subprotocols the client offers are ignored, never refused: not answering
 * them is how a server declines them (§4.2.2).
 */
function checkUpgrade(req: UpgradeRequest): UpgradeCheck {
  if (req.method !== 'GET') return problem(`the upgrade must be a GET, got ${req.method}`);
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
    return problem('missing or invalid Upgrade header');
  }
  const connection = req.headers.connection?.toLowerCase() ?? '';
  if (!connection.split(',').some((token) => token.trim() === 'upgrade')) {
    return problem('the Connection header does not contain "upgrade"');
  }
  if (req.headers['sec-websocket-version'] !== '13') {
    // §4.4: name the versions we speak so the client can retry with one of them.
    return problem(
      'missing or unsupported Sec-WebSocket-Version; this server speaks 13',
      'Sec-WebSocket-Version: 13\r\n',
    );
  }
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !HANDSHAKE_KEY.test(key)) {
    return problem('missing or invalid Sec-WebSocket-Key');
  }
  return { ok: true, key };
}

/** Answers 400 and closes the socket once the answer is written. */
function refuseHandshake(socket: Duplex, problem: HandshakeProblem): void {
  const body = JSON.stringify({ error: 'bad_handshake', detail: problem.detail });
  // Destroyed once written: an HTTP server's sockets allow half-open connections,
  // so end() alone would wait for the client's FIN.
  socket.once('finish', destroySocket);
  socket.end(
    'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n' +
      `${problem.headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** `reason`, cut at a code point boundary to fit a close frame. */
function fitCloseReason(reason: string): string {
  if (reason.length <= MAX_CLOSE_REASON_BYTES / 3) return reason;
  let fitted = reason.slice(0, MAX_CLOSE_REASON_BYTES);
  while (Buffer.byteLength(fitted) > MAX_CLOSE_REASON_BYTES) {
    fitted = fitted.slice(0, -1);
    // Never leave half a surrogate pair: it would be sent as U+FFFD.
    const last = fitted.charCodeAt(fitted.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) fitted = fitted.slice(0, -1);
  }
  return fitted;
}
