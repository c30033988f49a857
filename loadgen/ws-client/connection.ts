/**
 * One simulated device's WebSocket connection, written over a bare `net.Socket`
 * rather than a `ws` WebSocket because a process holds tens of thousands of them
 * and `ws` costs about twice the memory per connection. It performs the HTTP/1.1
 * upgrade, answers pings and runs the close handshake; everything else is the
 * owner's business, reported through a shared {@link WsClientSink}.
 *
 * No closure or timer exists per connection: socket events go to module-level
 * functions that find the connection through a symbol on the socket, frames go
 * to one module-level parser handler, and timeouts are the owner's periodic sweep
 * calling {@link WsClientConnection.expireIfStale}.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import { CloseCode } from '../../core/ws/close-codes.js';
import {
  encodeClosePayload,
  encodeFrame,
  expectedAccept,
  makeHandshakeKey,
  Opcode,
} from '../../core/ws/frame.js';
import { type FrameHandler, FrameParser, type WsProtocolError } from '../../core/ws/parser.js';

/** What a connection reports to its owner; one sink object serves thousands of connections. */
export interface WsClientSink {
  /** The upgrade completed; the connection is open. */
  onOpen(conn: WsClientConnection): void;
  /** A whole (reassembled) text message. */
  onText(conn: WsClientConnection, text: string): void;
  /**
   * A whole text message as its bytes, already validated as UTF-8; `data` may be
   * a view into the thread's shared read buffer, valid only during the call
   * (copy it to keep it). A sink that has it gets
   * every text message here instead of in `onText`, undecoded.
   */
  onTextBytes?(conn: WsClientConnection, data: Buffer): void;
  /** A whole binary message; `data` may be a view into a socket chunk, copy it to keep it. */
  onBinary?(conn: WsClientConnection, data: Buffer): void;
  /** Called exactly once per connect() attempt that ends, whether it ever opened or not. */
  onClose(conn: WsClientConnection, info: WsCloseInfo): void;
}

/** How a connect attempt ended, as reported to {@link WsClientSink.onClose}. */
export interface WsCloseInfo {
  /** False: the attempt failed before the upgrade completed. */
  opened: boolean;
  /** Close code received (or sent on a protocol error); 1006 when the TCP connection dropped without a close frame. */
  code: number;
  /** Close reason text, or the failure reason. */
  reason: string;
  /** Set when `opened` is false. */
  failure?: ConnectFailure;
  /** When the server answered the upgrade with a non-101 status. */
  httpStatus?: number;
}

/** Stable short reasons a connect attempt failed, used as ledger keys. */
export type ConnectFailure =
  | 'refused'
  | 'timeout'
  | 'reset'
  | 'http_status'
  | 'bad_handshake'
  | 'address'
  | 'error'
  /** The server's certificate does not chain to a CA the device trusts. */
  | 'tls_untrusted'
  /** The server's certificate (or one in its chain) has expired or is not yet valid. */
  | 'tls_expired'
  /** The certificate is not for the name the device asked for (SNI). */
  | 'tls_hostname'
  /** TCP connected but the TLS handshake did not finish within the connect timeout. */
  | 'tls_timeout'
  /** Any other TLS failure (a protocol version, an alert, plain TCP on the other end). */
  | 'tls_error';

/**
 * A `wss://` connection's TLS settings. One object serves every device of a
 * fleet: the trust store lives in a `secureContext` made once, not per connect.
 */
export interface WsTlsOptions {
  /** Made once with `tls.createSecureContext({ ca })`; default: Node's bundled CAs. */
  secureContext?: tls.SecureContext;
  /** The name sent as SNI and checked against the certificate; default `host` (none for an IP). */
  servername?: string;
  /** Keep each device's session ticket and offer it on its next connect. */
  resume: boolean;
  minVersion?: tls.SecureVersion;
  maxVersion?: tls.SecureVersion;
}

/** How the TLS part of an opened `wss://` attempt went. */
export interface WsTlsTiming {
  /** connect() to TCP established, µs. */
  tcpUs: number;
  /** TCP established to the TLS handshake done, µs. */
  tlsUs: number;
  /** TLS handshake done to the upgrade answered (101 read), µs. */
  upgradeUs: number;
  /** The server took the session the device offered (no full handshake). */
  resumed: boolean;
}

/** Lifecycle of one connection object; `closed` may go back to `connecting` on reconnect. */
export type WsClientState = 'idle' | 'connecting' | 'open' | 'closing' | 'closed';

/** Where and how {@link WsClientConnection.connect} connects. */
export interface WsConnectOptions {
  /** Server host name or IP address. */
  host: string;
  /** Server TCP port. */
  port: number;
  /** Request target of the upgrade, e.g. `/ws?device=42`. */
  path: string;
  /** Local IP address to bind, to spread many devices over several source addresses. */
  localAddress?: string;
  /** Extra request headers (e.g. authorization); names and values must not contain CR or LF. */
  headers?: Record<string, string>;
  /** Largest message accepted before closing with 1009; default 16 MiB. */
  maxMessageBytes?: number;
  /** Connect over TLS (`wss://`); absent: plain TCP. */
  tls?: WsTlsOptions;
}

/** The most bytes of upgrade response head we buffer before giving up on the server. */
const MAX_HANDSHAKE_HEAD_BYTES = 16 * 1024;
const HEAD_TERMINATOR = Buffer.from('\r\n\r\n', 'latin1');
/**
 * Every socket of this thread reads into this one buffer (net's `onread`), so a
 * read allocates no Buffer and goes through no Readable stream or 'data' event.
 * One read is handled whole before the next begins, so sharing it is safe as
 * long as nothing keeps a view into it past {@link WsClientConnection.receive}:
 * the handshake copies a partial head, the frame parser a partial payload or a
 * fragment, and sinks get messages that are valid only during their call.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** The socket property through which the shared handlers find their connection. */
const kConnection = Symbol('pushbench.wsClientConnection');
type OwnedSocket = net.Socket & { [kConnection]?: WsClientConnection | undefined };

/**
 * A client WebSocket connection for one simulated device, reusable across
 * reconnects. All methods are synchronous and none throws on network trouble:
 * every attempt ends in exactly one {@link WsClientSink.onClose}.
 */
export class WsClientConnection {
  /** The owner's device index. */
  readonly id: number;
  /** Where the connection is in its lifecycle. */
  state: WsClientState = 'idle';
  /** Host monotonic µs when connect() was called / when the close started (for the owner's sweep). */
  startedUs = 0;
  /**
   * Host monotonic µs when bytes last arrived (any frame, ping included) or the
   * attempt started; the owner's sweep reads it to notice a silent server.
   */
  lastReceiveUs = 0;

  private readonly sink: WsClientSink;
  private socket: OwnedSocket | null = null;
  /** Created when the upgrade completes, so a connecting device carries no parser. */
  private parser: FrameParser<WsClientConnection> | null = null;
  private maxMessageBytes: number | undefined = undefined;
  /** The `Sec-WebSocket-Accept` the server must send; `null` once the upgrade is done. */
  private accept: string | null = null;
  /** An upgrade response head split across chunks, until its terminator arrives. */
  private head: Buffer | null = null;
  /** Whether we have sent a close frame in this attempt. */
  private closeSent = false;
  /** Close code received, or sent on a protocol error; 0 while there is none. */
  private closeCode = 0;
  private closeReason = '';
  /** Why a connecting attempt failed, from the socket's 'error' that precedes its 'close'. */
  private failure: ConnectFailure | null = null;
  private failureReason = '';
  /**
   * `wss://` only: the session ticket the server last gave this device, offered
   * on its next connect when resumption is on (kept across reconnects).
   */
  tlsSession: Buffer | undefined = undefined;
  /** `wss://` only: when TCP and the TLS handshake completed in this attempt (µs, 0: not yet). */
  private tcpUpUs = 0;
  private secureUs = 0;
  private openUs = 0;
  private tlsResume = false;

  /** Creates an idle connection reporting to `sink`; `id` is the owner's device index. */
  constructor(sink: WsClientSink, id: number) {
    this.sink = sink;
    this.id = id;
  }

  /**
   * `wss://` only, once open: TCP and TLS handshake times of this attempt and
   * whether the session was resumed; undefined for plain `ws://`.
   */
  get tlsTiming(): WsTlsTiming | undefined {
    const socket = this.socket;
    if (this.secureUs === 0 || !(socket instanceof tls.TLSSocket)) return undefined;
    return {
      tcpUs: this.tcpUpUs - this.startedUs,
      tlsUs: this.secureUs - this.tcpUpUs,
      upgradeUs: this.openUs - this.secureUs,
      resumed: socket.isSessionReused(),
    };
  }

  /** Bytes queued in the socket's write buffer (socket.writableLength). */
  get bufferedBytes(): number {
    return this.socket?.writableLength ?? 0;
  }

  /**
   * Starts an attempt: TCP connect, then the upgrade request. Allowed when idle
   * or closed (a reconnect reuses the object). Throws only for caller bugs (a
   * wrong state, a header containing CR/LF, a bad port), leaving the state as it was.
   */
  connect(opts: WsConnectOptions): void {
    if (this.state !== 'idle' && this.state !== 'closed') {
      throw new PushbenchError(
        'PB_INTERNAL',
        `WsClientConnection ${this.id}: connect() called in state '${this.state}'; call it only when idle or after onClose`,
      );
    }
    const key = makeHandshakeKey();
    const request = upgradeRequest(opts, key);
    // net calls it as a method of the socket (`this`), as it has since onread came in (v12).
    const onread = {
      buffer: READ_BUFFER,
      callback: onSocketRead as (n: number, b: Uint8Array) => boolean,
    };
    const t = opts.tls;
    // Before any state changes: connect throws synchronously for a bad port or
    // local address, and the object must then still be reusable.
    const socket: OwnedSocket =
      t === undefined
        ? net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, onread })
        : tls.connect({
            // Any socket.connect() option passes through (node:tls docs), `onread` and
            // `localAddress` included; the types omit them.
            ...({ localAddress: opts.localAddress, onread } as tls.ConnectionOptions),
            host: opts.host,
            port: opts.port,
            ...(t.secureContext !== undefined && { secureContext: t.secureContext }),
            // Default: node:tls sends `host` as SNI unless it is an address, and checks the
            // certificate against `host` either way.
            ...(t.servername !== undefined && { servername: t.servername }),
            ...(t.resume && this.tlsSession !== undefined && { session: this.tlsSession }),
            ...(t.minVersion !== undefined && { minVersion: t.minVersion }),
            ...(t.maxVersion !== undefined && { maxVersion: t.maxVersion }),
          });
    this.tcpUpUs = 0;
    this.secureUs = 0;
    this.tlsResume = t?.resume === true;
    if (t !== undefined) {
      (socket as tls.TLSSocket).getPeerCertificate =
        leafCertificate as tls.TLSSocket['getPeerCertificate'];
      socket.once('connect', onTcpConnect);
      socket.once('secureConnect', onSecureConnect);
      if (t.resume) socket.on('session', onTlsSession);
    }

    this.state = 'connecting';
    this.startedUs = monoNowUs();
    this.lastReceiveUs = this.startedUs;
    this.accept = expectedAccept(key);
    this.maxMessageBytes = opts.maxMessageBytes;
    this.head = null;
    this.closeSent = false;
    this.closeCode = 0;
    this.closeReason = '';
    this.failure = null;
    this.failureReason = '';

    socket[kConnection] = this;
    this.socket = socket;
    // Pushes and acks are small; Nagle would hold them back for the previous ACK
    // and add up to 40 ms of latency the benchmark would wrongly blame on the server.
    socket.setNoDelay(true);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    // Written now, net queues it until connected: saves a 'connect' listener per socket.
    socket.write(request);
  }

  /** Sends one text message; false (and nothing sent) unless the connection is open. */
  sendText(text: string): boolean {
    if (this.state !== 'open' || this.socket === null) return false;
    this.socket.write(encodeFrame(Opcode.Text, text));
    return true;
  }

  /** Sends one binary message; false (and nothing sent) unless the connection is open. */
  sendBinary(data: Buffer): boolean {
    if (this.state !== 'open' || this.socket === null) return false;
    this.socket.write(encodeFrame(Opcode.Binary, data));
    return true;
  }

  /**
   * Starts the close handshake: sends a close frame and waits for the server's
   * close frame or the end of TCP (bounded by the owner's sweep). While
   * connecting it abandons the attempt instead. Does nothing when already
   * closing or closed. Throws `RangeError` for a code that may not be sent.
   */
  close(code = 1000, reason = ''): void {
    if (this.state === 'connecting') {
      this.failConnect('error', 'closed by the owner before the upgrade completed');
      return;
    }
    if (this.state !== 'open' || this.socket === null) return;
    const payload = encodeClosePayload(code, reason);
    this.closeSent = true;
    this.state = 'closing';
    this.startedUs = monoNowUs();
    this.socket.write(encodeFrame(Opcode.Close, payload));
  }

  /** Drops the connection at once without a close handshake; still reports onClose once. */
  destroy(): void {
    this.abort('destroyed by the owner');
  }

  /**
   * The owner calls this from one periodic sweep: if connecting longer than
   * connectTimeoutUs → fail with 'timeout'; if closing longer than closeTimeoutUs
   * → destroy. Returns true if it acted.
   */
  expireIfStale(nowUs: number, connectTimeoutUs: number, closeTimeoutUs: number): boolean {
    if (this.state === 'connecting' && nowUs - this.startedUs >= connectTimeoutUs) {
      const ms = Math.round(connectTimeoutUs / 1000);
      // TCP up but no TLS yet: the handshake is what stalled.
      if (this.tcpUpUs !== 0 && this.secureUs === 0) {
        this.failConnect('tls_timeout', `TLS handshake not done within ${ms} ms`);
      } else {
        this.failConnect('timeout', `no upgrade within ${ms} ms`);
      }
      return true;
    }
    if (this.state === 'closing' && nowUs - this.startedUs >= closeTimeoutUs) {
      this.abort(`close handshake not finished within ${Math.round(closeTimeoutUs / 1000)} ms`);
      return true;
    }
    return false;
  }

  /**
   * @internal `length` bytes read into `chunk` (the thread's shared read
   * buffer); only the shared socket handler calls this. Nothing may keep a view
   * into `chunk` after it returns.
   */
  receive(chunk: Buffer, length: number): void {
    this.lastReceiveUs = monoNowUs();
    if (this.state === 'connecting') this.receiveHandshake(chunk.subarray(0, length));
    else this.parser?.feed(chunk, length);
  }

  /** @internal The socket failed; only the shared socket handler calls this. A 'close' follows. */
  socketFailed(err: NodeJS.ErrnoException): void {
    if (this.state === 'connecting') {
      this.failure = connectFailureOf(err);
      this.failureReason = err.message;
    } else if (this.closeCode === 0) {
      this.closeReason = err.message;
    }
  }

  /** @internal The socket is fully closed; only the shared socket handler calls this. */
  socketClosed(): void {
    if (this.state === 'connecting') {
      this.finish({
        opened: false,
        code: CloseCode.Abnormal,
        reason: this.failureReason || 'server closed the connection before the upgrade completed',
        failure: this.failure ?? 'reset',
      });
    } else if (this.state === 'open' || this.state === 'closing') {
      this.finishOpened(this.closeReason || 'connection closed without a close frame');
    }
  }

  /** @internal `wss://`: TCP is established; only the shared socket handler calls this. */
  tcpConnected(): void {
    this.tcpUpUs = monoNowUs();
  }

  /** @internal `wss://`: the TLS handshake is done; only the shared socket handler calls this. */
  secureConnected(): void {
    this.secureUs = monoNowUs();
  }

  /** @internal `wss://`: the server sent a session ticket; kept for the next connect. */
  sessionReceived(session: Buffer): void {
    if (this.tlsResume) this.tlsSession = session;
  }

  /** @internal A ping arrived; answered with a pong carrying the same payload (RFC 6455 §5.5.3). */
  pingReceived(payload: Buffer): void {
    // After our close frame only the server's close is expected, not our pongs.
    if (this.state === 'open') this.socket?.write(encodeFrame(Opcode.Pong, payload));
  }

  /** @internal A close frame arrived; the parser has stopped. */
  closeFrameReceived(code: number, reason: string): void {
    this.closeCode = code;
    this.closeReason = reason;
    const socket = this.socket;
    if (socket === null) return;
    if (!this.closeSent) {
      // Server-initiated: echo its code (§5.5.1). 1005 means it sent none, so echo none.
      this.closeSent = true;
      const payload = code === CloseCode.NoStatus ? Buffer.alloc(0) : encodeClosePayload(code);
      socket.write(encodeFrame(Opcode.Close, payload));
    }
    if (this.state === 'open') {
      this.state = 'closing';
      this.startedUs = monoNowUs();
    }
    // Both close frames are out: end our side and report when TCP is fully closed.
    // end(), not destroy(): destroy could discard the queued close frame. The server
    // is the one expected to close TCP first (§7.1.1); our sweep bounds the wait.
    socket.end();
  }

  /** @internal A frame broke the protocol or our limits: fail the connection (§7.1.7). */
  protocolError(err: WsProtocolError): void {
    this.closeCode = err.closeCode;
    this.closeReason = err.message;
    const socket = this.socket;
    if (socket === null) return;
    if (!this.closeSent) {
      this.closeSent = true;
      socket.write(encodeFrame(Opcode.Close, encodeClosePayload(err.closeCode)));
    }
    if (this.state === 'open') {
      this.state = 'closing';
      this.startedUs = monoNowUs();
    }
    socket.end();
  }

  /** @internal Hands a whole text message to the sink; only the shared parser handler calls this. */
  deliverText(data: Buffer): void {
    if (this.sink.onTextBytes !== undefined) this.sink.onTextBytes(this, data);
    else this.sink.onText(this, data.toString('utf8'));
  }

  /** @internal Hands a whole binary message to the sink, if it takes them. */
  deliverBinary(data: Buffer): void {
    this.sink.onBinary?.(this, data);
  }

  /** Accumulates the upgrade response head, then opens or fails the attempt. */
  private receiveHandshake(chunk: Buffer): void {
    let buffered = chunk;
    let searchFrom = 0;
    if (this.head !== null) {
      // Resume the search 3 bytes back: the terminator may straddle the two chunks.
      searchFrom = Math.max(0, this.head.length - 3);
      buffered = Buffer.concat([this.head, chunk]);
    }
    const headEnd = buffered.indexOf(HEAD_TERMINATOR, searchFrom);
    if (headEnd === -1 || headEnd > MAX_HANDSHAKE_HEAD_BYTES) {
      if (buffered.length > MAX_HANDSHAKE_HEAD_BYTES) {
        this.failConnect(
          'bad_handshake',
          `upgrade response head exceeds ${MAX_HANDSHAKE_HEAD_BYTES} bytes`,
        );
      } else {
        // A copy: `buffered` may be the shared read buffer itself.
        this.head = buffered === chunk ? Buffer.from(chunk) : buffered;
      }
      return;
    }
    this.head = null;

    const verdict = checkUpgradeResponse(buffered.toString('latin1', 0, headEnd), this.accept);
    if (verdict !== null) {
      this.failConnect(verdict.failure, verdict.reason, verdict.httpStatus);
      return;
    }

    this.accept = null;
    this.state = 'open';
    if (this.secureUs !== 0) this.openUs = monoNowUs();
    const parser = new FrameParser(frameEvents, this, { maxMessageBytes: this.maxMessageBytes });
    this.parser = parser;
    this.sink.onOpen(this);
    // Frames the server sent right behind its 101 arrive in the same chunk.
    const rest = buffered.subarray(headEnd + HEAD_TERMINATOR.length);
    if (rest.length > 0 && this.parser === parser) parser.feed(rest);
  }

  /** Ends a connecting attempt as failed, now. */
  private failConnect(failure: ConnectFailure, reason: string, httpStatus?: number): void {
    this.socket?.destroy();
    const info: WsCloseInfo = { opened: false, code: CloseCode.Abnormal, reason, failure };
    if (httpStatus !== undefined) info.httpStatus = httpStatus;
    this.finish(info);
  }

  /** Drops the socket now and reports the end of the attempt, whatever its state. */
  private abort(reason: string): void {
    if (this.state === 'connecting') this.failConnect('error', reason);
    else if (this.state === 'open' || this.state === 'closing') {
      this.socket?.destroy();
      this.finishOpened(reason);
    }
  }

  /** Reports the end of an opened attempt with the close code we have, or 1006. */
  private finishOpened(fallbackReason: string): void {
    if (this.closeCode !== 0) {
      this.finish({ opened: true, code: this.closeCode, reason: this.closeReason });
    } else {
      this.finish({ opened: true, code: CloseCode.Abnormal, reason: fallbackReason });
    }
  }

  /**
   * Detaches the socket, marks the attempt closed and tells the sink. The state
   * changes first so that the sink may reconnect from inside onClose, and the old
   * socket's late events find no owner and are ignored.
   */
  private finish(info: WsCloseInfo): void {
    if (this.socket !== null) this.socket[kConnection] = undefined;
    this.socket = null;
    this.parser?.stop();
    this.parser = null;
    this.head = null;
    this.accept = null;
    this.state = 'closed';
    this.sink.onClose(this, info);
  }
}

/** The connection a socket belongs to, or undefined once the attempt has ended. */
function ownerOf(socket: net.Socket): WsClientConnection | undefined {
  return (socket as OwnedSocket)[kConnection];
}

function onSocketRead(this: net.Socket, length: number, buffer: Uint8Array): boolean {
  ownerOf(this)?.receive(buffer as Buffer, length);
  return true;
}

function onSocketError(this: net.Socket, err: NodeJS.ErrnoException): void {
  // Listening is what keeps a socket error from crashing the process, so this
  // stays attached even after the socket's attempt has been reported.
  ownerOf(this)?.socketFailed(err);
}

function onSocketClose(this: net.Socket): void {
  ownerOf(this)?.socketClosed();
}

function onTcpConnect(this: net.Socket): void {
  ownerOf(this)?.tcpConnected();
}

function onSecureConnect(this: net.Socket): void {
  ownerOf(this)?.secureConnected();
}

/**
 * node:tls checks the server's name on every full handshake against
 * `getPeerCertificate(true)`: the whole chain, issuers included, turned into JS
 * objects (~300 µs on this box), of which `tls.checkServerIdentity` reads only
 * the leaf's `subject` and `subjectaltname`. A device's socket answers that
 * call with the leaf alone (~25 µs): the same check by the same function, the
 * same errors. Nothing else asks a device's socket for its peer certificate.
 */
function leafCertificate(this: tls.TLSSocket): tls.PeerCertificate {
  return tls.TLSSocket.prototype.getPeerCertificate.call(this, false);
}

function onTlsSession(this: net.Socket, session: Buffer): void {
  ownerOf(this)?.sessionReceived(session);
}

/** The one parser handler every connection shares. */
const frameEvents: FrameHandler<WsClientConnection> = {
  onTextBytes: (conn, data) => conn.deliverText(data),
  onBinary: (conn, data) => conn.deliverBinary(data),
  onPing: (conn, payload) => conn.pingReceived(payload),
  onPong: () => {},
  onClose: (conn, code, reason) => conn.closeFrameReceived(code, reason),
  onError: (conn, err) => conn.protocolError(err),
};

/** Maps a socket error to the ledger key of a failed connect attempt. */
function connectFailureOf(err: NodeJS.ErrnoException): ConnectFailure {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'EADDRNOTAVAIL':
    case 'EADDRINUSE':
      return 'address';
    case 'ETIMEDOUT':
      // The kernel gave up on the SYN: the same outcome as our own connect timeout.
      return 'timeout';
    // OpenSSL's verify results, as node:tls names them.
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'tls_expired';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_UNTRUSTED':
    case 'CERT_SIGNATURE_FAILURE':
      return 'tls_untrusted';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'tls_hostname';
    // OpenSSL failed the TLS exchange itself (e.g. plain TCP on the other end).
    case 'EPROTO':
      return 'tls_error';
    default:
      return err.code?.startsWith('ERR_SSL_') || err.code?.startsWith('ERR_TLS_')
        ? 'tls_error'
        : 'error';
  }
}

/** The upgrade request head (RFC 6455 §4.1). Throws `TypeError` for a header with CR/LF. */
function upgradeRequest(opts: WsConnectOptions, key: string): string {
  if (/\s/.test(opts.path)) {
    throw new TypeError(`upgrade path ${JSON.stringify(opts.path)} contains whitespace`);
  }
  const host = net.isIPv6(opts.host) ? `[${opts.host}]` : opts.host;
  let request =
    `GET ${opts.path} HTTP/1.1\r\n` +
    `Host: ${host}:${opts.port}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\n` +
    'Sec-WebSocket-Version: 13\r\n';
  if (opts.headers !== undefined) {
    for (const [name, value] of Object.entries(opts.headers)) {
      // A CR or LF would let a scenario value inject its own headers or body.
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
        throw new TypeError(`upgrade header ${JSON.stringify(name)} contains CR or LF`);
      }
      request += `${name}: ${value}\r\n`;
    }
  }
  return `${request}\r\n`;
}

/** Why an upgrade response is unacceptable. */
interface UpgradeRejection {
  failure: ConnectFailure;
  reason: string;
  httpStatus?: number;
}

/**
 * Checks an upgrade response head (without its final CRLFCRLF): status 101,
 * `Upgrade: websocket`, `Connection: upgrade` and the right accept value, and no
 * extension or subprotocol, since we offered none. Returns null when acceptable.
 */
function checkUpgradeResponse(head: string, accept: string | null): UpgradeRejection | null {
  const lines = head.split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (status === null) {
    return {
      failure: 'bad_handshake',
      reason: `malformed status line ${JSON.stringify(statusLine.slice(0, 80))}`,
    };
  }
  const httpStatus = Number(status[1]);
  if (httpStatus !== 101) {
    const text = status[2] === undefined ? '' : ` ${status[2]}`;
    return { failure: 'http_status', reason: `HTTP ${httpStatus}${text}`, httpStatus };
  }

  let upgrade = false;
  let connection = false;
  let acceptOk = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      return {
        failure: 'bad_handshake',
        reason: `malformed header line ${JSON.stringify(line.slice(0, 80))}`,
      };
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    switch (name) {
      case 'upgrade':
        upgrade = value.toLowerCase() === 'websocket';
        break;
      case 'connection':
        connection = value
          .toLowerCase()
          .split(',')
          .some((token) => token.trim() === 'upgrade');
        break;
      case 'sec-websocket-accept':
        acceptOk = value === accept;
        break;
      case 'sec-websocket-extensions':
      case 'sec-websocket-protocol':
        return { failure: 'bad_handshake', reason: `server sent ${name} though none was offered` };
    }
  }
  if (!upgrade) return { failure: 'bad_handshake', reason: 'missing "Upgrade: websocket"' };
  if (!connection) return { failure: 'bad_handshake', reason: 'missing "Connection: Upgrade"' };
  if (!acceptOk)
    return { failure: 'bad_handshake', reason: 'wrong or missing Sec-WebSocket-Accept' };
  return null;
}
