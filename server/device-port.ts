/**
 * The front door of a node's port, which serves both the devices' WebSocket
 * upgrades and the HTTP API. node:http's request machinery (a parser bound to
 * the socket, an IncomingMessage stream, a dozen listeners and closures per
 * socket, torn down again at the upgrade) is what an API request needs; for a
 * device's upgrade it was most of the connect's CPU on the node. So the front
 * reads each new socket's first bytes itself:
 *
 * - a `GET /ws` request whose head is complete and plainly well formed (request
 *   line, `name: value` lines, CRLFs) and asks to upgrade goes to `onUpgrade`
 *   as a small {@link UpgradeRequest}, with the bytes behind the head;
 * - anything else (another method or path, a head the front will not read, a
 *   plain GET of /ws) goes to the http.Server exactly as it arrived, bytes and
 *   all, as if node:http had accepted the socket itself (the documented way:
 *   emitting `'connection'`). Correctness never rests on the front: what it
 *   does not take, node:http handles as before.
 *
 * Limits. A head larger than node:http's own limit (16 KiB) goes to node:http,
 * which answers 431 as before. A socket that has not completed its head within
 * `headTimeoutMs` of its accept (a silent socket, or one sending its head a
 * line at a time) is answered 408 and closed. One timer serves the whole port,
 * running only while some socket is waiting; the http.Server's headersTimeout is
 * set to the same bound for what it takes over.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { UpgradeRequest } from './ws-server.js';

/** node:http's default `maxHeaderSize`: a longer head goes to node:http, which answers 431. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Called with a device upgrade the front parsed: the socket is the caller's from here on. */
export type DeviceUpgradeHandler = (req: UpgradeRequest, socket: Socket, head: Buffer) => void;

/** Settings of a {@link DevicePort}. */
export interface DevicePortOptions {
  /** How long a new socket has to send a complete request head. */
  headTimeoutMs: number;
  /** Called for each socket answered 408 (the node counts them). */
  onHeadTimeout?: () => void;
  /**
   * Most sockets that may be sending their head at once; past it the oldest
   * (if waiting at least 1 s) is answered 503 `pending_shed` and closed, so a
   * crowd of slow sockets cannot hold the file limit even within the deadline.
   * Default: no cap.
   */
  maxWaiting?: number;
  /** Called for each socket shed over {@link maxWaiting} (the node counts them). */
  onShed?: () => void;
  /** Monotonic milliseconds; injectable for tests. Default `performance.now`. */
  nowMs?: () => number;
  /**
   * TLS: a socket whose first byte opens a TLS handshake record (0x16) is
   * wrapped in a server TLSSocket with this context and comes back to the
   * front once decrypted; the head deadline, counted from the plain socket's
   * accept, covers the handshake, and a handshake in progress counts against
   * {@link maxWaiting}. Any other first byte is plain HTTP, unless `tlsOnly`.
   */
  tlsContext?: SecureContext;
  /** With `tlsContext`: a socket that does not open with a TLS handshake is closed. */
  tlsOnly?: boolean;
}

const CRLF_CRLF = Buffer.from('\r\n\r\n');
/** The first byte of a TLS record carrying a handshake message (a ClientHello here). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** The one route the front takes: `GET /ws` followed by a space or a query. */
const DEVICE_PREFIX = Buffer.from('GET /ws');
const SPACE = 0x20;
const QUESTION = 0x3f;
const TIMEOUT_ANSWER =
  'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n' +
  'Content-Length: 26\r\n\r\n{"error":"head_too_slow"}\n';
/** A socket sending its head for less than this is never shed over the cap. */
const SHED_MIN_AGE_MS = 1000;
const SHED_ANSWER =
  'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n' +
  'Content-Length: 25\r\n\r\n{"error":"pending_shed"}\n';

/** A socket still sending its head: where its bytes so far are kept. */
interface Waiting {
  port: DevicePort;
  buffered: Buffer | undefined;
}
const kWaiting = Symbol('pushbench.devicePortWaiting');
/** Set on a TLS socket the front made once its handshake is done. */
const kSecure = Symbol('pushbench.devicePortSecure');
type FrontSocket = Socket & { [kWaiting]?: Waiting | undefined; [kSecure]?: boolean };

function onSecure(this: FrontSocket): void {
  this[kSecure] = true;
}

/** What the front decides about the bytes a socket has sent so far. */
enum Verdict {
  /** Not complete yet: keep reading. */
  Wait,
  /** Not a device upgrade the front reads: node:http's. */
  Http,
  /** A complete device upgrade head. */
  Device,
}

/**
 * Sits between a listening http.Server and its sockets: installed once, it
 * takes over the server's `'connection'` listeners and calls them itself for
 * every socket that is not a device upgrade.
 */
export class DevicePort {
  /** The http.Server's own connection listeners, which the front calls for the sockets it hands over. */
  private readonly httpListeners: ((socket: Socket) => void)[];
  /** Sockets still sending their head, with their accept time, oldest first. */
  private readonly waiting = new Map<FrontSocket, number>();
  private sweep: NodeJS.Timeout | undefined;
  private readonly nowMs: () => number;

  constructor(
    private readonly http: Server,
    private readonly onDevice: DeviceUpgradeHandler,
    private readonly options: DevicePortOptions,
  ) {
    if (!(options.headTimeoutMs > 0)) {
      throw new TypeError(`headTimeoutMs must be positive, got ${options.headTimeoutMs}`);
    }
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.httpListeners = http.listeners('connection') as ((socket: Socket) => void)[];
    http.removeAllListeners('connection');
    http.on('connection', (socket: Socket) => this.accept(socket));
    http.headersTimeout = options.headTimeoutMs;
  }

  /** Sockets that have not completed their head yet. */
  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Destroys every socket still sending its head (the node is stopping). */
  close(): void {
    for (const socket of this.waiting.keys()) socket.destroy();
    this.waiting.clear();
    this.stopSweep();
  }

  private accept(socket: FrontSocket, acceptedMs = this.nowMs()): void {
    socket[kWaiting] = { port: this, buffered: undefined };
    // Listening is what keeps a socket error from crashing the process.
    socket.on('error', onWaitingError);
    socket.on('data', onWaitingData);
    this.waiting.set(socket, acceptedMs);
    const max = this.options.maxWaiting;
    if (max !== undefined && this.waiting.size > max) this.shedOldest();
    if (this.sweep === undefined) {
      this.sweep = setInterval(
        () => this.sweepWaiting(),
        Math.min(1000, this.options.headTimeoutMs),
      );
      this.sweep.unref();
    }
  }

  /** @internal The bytes a waiting socket has sent so far: hand it on, or keep waiting. */
  received(socket: FrontSocket, waiting: Waiting, chunk: Buffer): void {
    const context = this.options.tlsContext;
    if (context !== undefined && waiting.buffered === undefined && !(socket instanceof TLSSocket)) {
      if (chunk[0] === TLS_HANDSHAKE_RECORD) {
        this.startTls(socket, chunk, context);
        return;
      }
      if (this.options.tlsOnly) {
        // Plain bytes on a TLS port: nothing to answer in a language it speaks.
        this.release(socket);
        socket.destroy();
        return;
      }
    }
    const bytes = waiting.buffered === undefined ? chunk : Buffer.concat([waiting.buffered, chunk]);
    const headEnd = bytes.indexOf(CRLF_CRLF, Math.max(0, bytes.length - chunk.length - 3));
    const verdict = judge(bytes, headEnd);
    if (verdict === Verdict.Wait) {
      waiting.buffered = bytes;
      return;
    }
    if (verdict === Verdict.Device) {
      const req = parseHead(bytes.toString('latin1', 0, headEnd));
      if (req !== undefined) {
        this.release(socket);
        this.onDevice(req, socket, bytes.subarray(headEnd + 4));
        return;
      }
    }
    this.handToHttp(socket, bytes);
  }

  /**
   * The socket's first bytes open a TLS handshake: put them back and let a
   * server TLSSocket take the connection over (it reads what was put back
   * first). The TLSSocket then waits at the front for its head, from the plain
   * socket's accept: a handshake that stalls is closed by the sweep as a slow
   * head is (its 408 goes nowhere on a socket that never became secure; the
   * close does).
   */
  private startTls(socket: FrontSocket, chunk: Buffer, context: SecureContext): void {
    const acceptedMs = this.waiting.get(socket) ?? this.nowMs();
    this.release(socket);
    socket.pause();
    socket.unshift(chunk);
    const secure: FrontSocket = new TLSSocket(socket, { isServer: true, secureContext: context });
    secure.once('secure', onSecure);
    this.accept(secure, acceptedMs);
  }

  /** Gives the socket, with every byte read from it so far, to node:http. */
  private handToHttp(socket: FrontSocket, bytes: Buffer): void {
    this.release(socket);
    // Paused first, so the bytes put back are not emitted before node:http listens.
    socket.pause();
    socket.unshift(bytes);
    for (const listener of this.httpListeners) listener.call(this.http, socket);
    socket.resume();
  }

  /** The socket leaves the front: no listener, no entry of ours stays on it. */
  private release(socket: FrontSocket): void {
    socket.removeListener('data', onWaitingData);
    socket.removeListener('error', onWaitingError);
    socket[kWaiting] = undefined;
    this.waiting.delete(socket);
    if (this.waiting.size === 0) this.stopSweep();
  }

  /**
   * Over the cap: the oldest socket still sending its head is answered 503 and
   * closed, if it has been waiting at least {@link SHED_MIN_AGE_MS}. A herd's
   * sockets accepted in one go, whose heads are merely not read yet, are never
   * shed: the cap bites only on sockets that are slow.
   */
  private shedOldest(): void {
    const youngest = this.nowMs() - Math.min(SHED_MIN_AGE_MS, this.options.headTimeoutMs / 2);
    for (const [socket, acceptedMs] of this.waiting) {
      // One already closed frees its place by itself.
      if (socket.destroyed) {
        this.release(socket);
        continue;
      }
      if (acceptedMs > youngest) return;
      this.release(socket);
      this.options.onShed?.();
      this.answerAndClose(socket, SHED_ANSWER);
      return;
    }
  }

  /** Writes a last answer and closes the socket once it is out. */
  private answerAndClose(socket: FrontSocket, answer: string): void {
    socket.on('error', onWaitingError);
    // A handshake never finished: nothing can be written to it, only closed.
    if (socket instanceof TLSSocket && (socket as FrontSocket)[kSecure] !== true) {
      socket.destroy();
      return;
    }
    // The port's sockets allow half-open connections: end() alone would wait for the peer's FIN.
    socket.once('finish', destroySocket);
    socket.end(answer);
  }

  /** Answers 408 to sockets past the head deadline; forgets closed ones. */
  private sweepWaiting(): void {
    const deadline = this.nowMs() - this.options.headTimeoutMs;
    for (const [socket, acceptedMs] of this.waiting) {
      if (socket.destroyed) {
        this.release(socket);
        continue;
      }
      // Not `break`: a TLS socket re-enters the map with its plain socket's older accept time.
      if (acceptedMs > deadline) continue;
      this.release(socket);
      this.options.onHeadTimeout?.();
      this.answerAndClose(socket, TIMEOUT_ANSWER);
    }
    // Closed sockets behind a young one wait for their turn; the map stays bounded by the deadline.
    if (this.waiting.size === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweep !== undefined) clearInterval(this.sweep);
    this.sweep = undefined;
  }
}

function onWaitingData(this: FrontSocket, chunk: Buffer): void {
  const waiting = this[kWaiting];
  if (waiting !== undefined) waiting.port.received(this, waiting, chunk);
}

function destroySocket(this: Socket): void {
  this.destroy();
}

function onWaitingError(this: Socket): void {
  // A stream destroys itself on error; the sweep forgets it.
}

/** Wait, node:http's, or a device upgrade, from the bytes so far and where the head ends (-1: not yet). */
function judge(bytes: Buffer, headEnd: number): Verdict {
  const known = Math.min(bytes.length, DEVICE_PREFIX.length);
  for (let i = 0; i < known; i++) {
    if (bytes[i] !== DEVICE_PREFIX[i]) return Verdict.Http;
  }
  if (bytes.length > DEVICE_PREFIX.length) {
    const next = bytes[DEVICE_PREFIX.length];
    if (next !== SPACE && next !== QUESTION) return Verdict.Http;
  }
  if (headEnd >= 0) return Verdict.Device;
  // Too long without an end: node:http answers 431, as for any head over its limit.
  return bytes.length > MAX_HEAD_BYTES ? Verdict.Http : Verdict.Wait;
}

/** The headers the upgrade needs; others are checked for form and dropped. */
const WANTED = new Set(['upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version']);
/** An HTTP token (RFC 9110 §5.6.2), as header names are. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request target's characters: visible ASCII, no space. */
const TARGET = /^\/ws(?:\?[\x21-\x7e]*)?$/;
/** Optional whitespace around a field value: spaces and tabs only. */
const OWS_EDGES = /^[\t ]+|[\t ]+$/g;
/** A field value's characters: visible, space, tab and obs-text; never CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The request as {@link UpgradeRequest}, or undefined for a head the front does
 * not read (node:http gets it and says what is wrong): an HTTP version other
 * than 1.1, a bare LF, a folded line, a name that is not a token, a control
 * character, or no `Upgrade` header at all (a plain GET of /ws is the API's).
 */
export function parseHead(head: string): UpgradeRequest | undefined {
  const lines = head.split('\r\n');
  const requestLine = lines[0] ?? '';
  const firstSpace = requestLine.indexOf(' ');
  const lastSpace = requestLine.lastIndexOf(' ');
  if (firstSpace !== 3 || lastSpace === firstSpace) return undefined;
  if (requestLine.slice(lastSpace + 1) !== 'HTTP/1.1') return undefined;
  const url = requestLine.slice(firstSpace + 1, lastSpace);
  if (!TARGET.test(url)) return undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).replace(OWS_EDGES, '');
    if (!FIELD_VALUE.test(value)) return undefined;
    const lower = name.toLowerCase();
    if (!WANTED.has(lower)) continue;
    // Repeated, a header's values join with ", ", as node:http joins them.
    const before = headers[lower];
    headers[lower] = before === undefined ? value : `${before}, ${value}`;
  }
  if (headers.upgrade === undefined) return undefined;
  return { method: 'GET', url, headers };
}
