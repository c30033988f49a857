import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WsNotOpenError } from '../../core/errors.js';
import { encodeClosePayload, encodeFrame, expectedAccept, Opcode } from '../../core/ws/frame.js';
import { type FrameHandler, FrameParser, type WsProtocolError } from '../../core/ws/parser.js';
import {
  LeanWebSocket,
  LeanWebSocketServer,
  type LeanWebSocketServerOptions,
  type LeanWebSocketSink,
} from '../../server/ws-server.js';
import { EventLog } from '../helpers/event-log.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Owner = { name: string };
type Lean = LeanWebSocket<Owner>;

type SinkEvent =
  | { kind: 'open'; ws: Lean }
  | { kind: 'message'; ws: Lean; data: Buffer; isBinary: boolean; owner: string | undefined }
  | { kind: 'pong'; ws: Lean }
  | { kind: 'error'; ws: Lean; code: string; closeCode: number }
  | { kind: 'close'; ws: Lean; code: number };

/** Records every sink call, in order, and lets a test await the next one of a kind. */
class RecordingSink extends EventLog<SinkEvent> implements LeanWebSocketSink<Owner> {
  onMessage(ws: Lean, data: Buffer, isBinary: boolean): void {
    this.push({ kind: 'message', ws, data: Buffer.from(data), isBinary, owner: ws.owner?.name });
  }
  onPong(ws: Lean): void {
    this.push({ kind: 'pong', ws });
  }
  onError(ws: Lean, err: WsProtocolError): void {
    this.push({ kind: 'error', ws, code: err.code, closeCode: err.closeCode });
  }
  onClose(ws: Lean, code: number): void {
    this.push({ kind: 'close', ws, code });
  }
  opened(ws: Lean): void {
    this.push({ kind: 'open', ws });
  }
}

interface Harness {
  port: number;
  sink: RecordingSink;
  server: LeanWebSocketServer<Owner>;
  /** Server-side sockets of every upgrade, refused or not. */
  sockets: Duplex[];
}

const httpServers: Server[] = [];
const clients: { terminate(): void }[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  for (const s of httpServers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

/** An http.Server on port 0 handing every upgrade to a LeanWebSocketServer. */
async function start(options: LeanWebSocketServerOptions = {}): Promise<Harness> {
  const sink = new RecordingSink();
  const server = new LeanWebSocketServer<Owner>(sink, options);
  const http = createServer();
  const sockets: Duplex[] = [];
  let n = 0;
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.push(socket);
    server.handleUpgrade(req, socket, head, (ws) => {
      ws.owner = { name: `c${++n}` };
      sink.opened(ws);
    });
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  httpServers.push(http);
  const address = http.address() as net.AddressInfo;
  return { port: address.port, sink, server, sockets };
}

/** A `ws` client, opened. */
async function wsClient(port: number, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, options);
  clients.push(ws);
  await once(ws, 'open');
  return ws;
}

/** What a raw client reads from the server: the response head, then parsed frames. */
type ServerFrame =
  | ['text', string]
  | ['binary', number]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string];

/**
 * A raw TCP client that speaks the upgrade by hand and parses what the server
 * sends with the client-role parser, so a test can send frames ws never would.
 */
class RawClient {
  readonly socket: net.Socket;
  head = '';
  readonly frames: ServerFrame[] = [];
  private buffered = Buffer.alloc(0);
  private readonly parser: FrameParser<ServerFrame[]>;
  private readonly waiters: (() => void)[] = [];

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    const handler: FrameHandler<ServerFrame[]> = {
      onText: (out, text) => out.push(['text', text]),
      onBinary: (out, data) => out.push(['binary', data.length]),
      onPing: (out, payload) => out.push(['ping', payload.toString()]),
      onPong: (out, payload) => out.push(['pong', payload.toString()]),
      onClose: (out, code, reason) => out.push(['close', code, reason]),
      onError: (out, err) => out.push(['error', err.code]),
    };
    this.parser = new FrameParser(handler, this.frames, { maxMessageBytes: 64 * 1024 * 1024 });
    this.socket.on('data', (chunk: Buffer) => {
      if (this.head === '' || !this.head.endsWith('\r\n\r\n')) {
        this.buffered = Buffer.concat([this.buffered, chunk]);
        const end = this.buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        this.head = this.buffered.toString('latin1', 0, end + 4);
        chunk = this.buffered.subarray(end + 4);
      }
      this.parser.feed(chunk);
      for (const w of this.waiters.splice(0)) w();
    });
    this.socket.on('end', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Writes an upgrade request; `headers` replaces the default ones when given. */
  upgrade(headers?: string, trailing: Buffer = Buffer.alloc(0), method = 'GET'): void {
    const h =
      headers ??
      'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
    this.socket.write(
      Buffer.concat([Buffer.from(`${method} / HTTP/1.1\r\nHost: x\r\n${h}\r\n`), trailing]),
    );
  }

  /** Resolves once `cond` holds, re-checked after every chunk the server sends. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (this.socket.readableEnded) throw new Error('server ended the connection first');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async response(): Promise<string> {
    await this.until(() => this.head.endsWith('\r\n\r\n'));
    return this.head;
  }

  send(frame: Buffer): void {
    this.socket.write(frame);
  }
}

function raw(port: number): RawClient {
  const c = new RawClient(port);
  clients.push({ terminate: () => c.socket.destroy() });
  return c;
}

/** A masked client frame, as a client must send it. */
function clientFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin });
}

/** Runs the event loop until the queued I/O callbacks have had their turn. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

describe('LeanWebSocketServer handshake', () => {
  it('answers 101 with the RFC 6455 accept value and negotiates no extension or subprotocol', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade(
      'Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: chat\r\n',
    );
    const head = await c.response();
    expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    // The example of RFC 6455 §1.3.
    expect(head).toContain('\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n');
    expect(head).toMatch(/\r\nUpgrade: websocket\r\n/i);
    expect(head).not.toMatch(/Sec-WebSocket-(Extensions|Protocol)/i);
    expect((await h.sink.next('open')).ws.readyState).toBe(LeanWebSocket.OPEN);
  });

  it('opens for the ws client, which checks the accept value itself', async () => {
    const h = await start();
    const ws = await wsClient(h.port);
    expect(ws.extensions).toBe('');
    expect((await h.sink.next('open')).ws.owner?.name).toBe('c1');
  });

  it.each([
    [
      'a wrong version',
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n',
      'GET',
    ],
    [
      'no version',
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
      'GET',
    ],
    [
      'a key that is not 16 bytes of base64',
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n',
      'GET',
    ],
    ['no key', 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n', 'GET'],
    [
      'an Upgrade other than websocket',
      'Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n',
      'GET',
    ],
    [
      'a POST',
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n',
      'POST',
    ],
  ])('answers 400 and closes for %s, never opening', async (_what, headers, method) => {
    const h = await start();
    const c = raw(h.port);
    const closed = once(c.socket, 'close');
    c.upgrade(headers, undefined, method);
    const head = await c.response();
    expect(head).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    await closed;
    expect(h.sink.events).toEqual([]);
    if (/Version: 8|Key: dGhlIHNhbXBsZSBub25jZQ==\r\n$/.test(headers)) {
      expect(head).toContain('\r\nSec-WebSocket-Version: 13\r\n');
    }
  });

  it('the ws client sees a bad handshake as an unexpected 400 response', async () => {
    const h = await start();
    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/`, { protocolVersion: 8 });
    ws.on('error', () => {});
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    expect(res.statusCode).toBe(400);
    res.destroy();
  });

  it('delivers frames that arrived in the same chunk as the upgrade request, after onOpen', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade(undefined, clientFrame(Opcode.Text, 'right behind the request'));
    const m = await h.sink.next('message');
    expect(m.data.toString()).toBe('right behind the request');
    // The owner was attached in onOpen before the message was reported.
    expect(m.owner).toBe('c1');
    expect(h.sink.kinds()).toEqual(['open', 'message']);
  });
});

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

describe('LeanWebSocket messages', () => {
  it('carries text both ways, including multi-byte UTF-8', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const text = 'héllo € 𝄞 日本';
    client.send(text);
    const m = await h.sink.next('message');
    expect(m).toMatchObject({ isBinary: false, owner: 'c1' });
    expect(m.data.toString('utf8')).toBe(text);
    const got = once(client, 'message');
    ws.send(text);
    const [data, isBinary] = (await got) as [Buffer, boolean];
    expect(isBinary).toBe(false);
    expect(data.toString('utf8')).toBe(text);
  });

  it('carries 70 KB and 1 MiB messages both ways within a raised maximum', async () => {
    const h = await start({ maxMessageBytes: 2 * 1024 * 1024 });
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    for (const size of [70 * 1024, 1024 * 1024]) {
      const text = 'abcdefghij'.repeat(size / 10 + 1).slice(0, size);
      client.send(text);
      const m = await h.sink.next('message');
      expect(m.data.length).toBe(size);
      expect(m.data.toString() === text).toBe(true);
      const got = once(client, 'message');
      ws.send(text);
      const [data] = (await got) as [Buffer];
      expect(data.length).toBe(size);
      expect(data.toString() === text).toBe(true);
    }
  });

  it('reports binary messages as binary', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    client.send(Buffer.from([1, 2, 3]));
    const m = await h.sink.next('message');
    expect(m.isBinary).toBe(true);
    expect([...m.data]).toEqual([1, 2, 3]);
  });

  it('reassembles a fragmented message from the ws client', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    client.send('frag', { fin: false });
    client.send('men', { fin: false });
    client.send('ted €', { fin: true });
    const m = await h.sink.next('message');
    expect(m.data.toString()).toBe('fragmented €');
    expect(h.sink.count('message')).toBe(1);
  });

  it('reassembles raw fragments with a ping between them, answering the ping', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    const euro = Buffer.from('€');
    c.send(
      Buffer.concat([
        clientFrame(Opcode.Text, Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)]), false),
        clientFrame(Opcode.Ping, 'between'),
        clientFrame(Opcode.Continuation, euro.subarray(1)),
      ]),
    );
    expect((await h.sink.next('message')).data.toString()).toBe('a€');
    await c.until(() => c.frames.length > 0);
    expect(c.frames).toEqual([['pong', 'between']]);
  });

  it('calls the send callback once the socket took the frame, and with an error when closed', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const received = once(client, 'message');
    const err = await new Promise<Error | null | undefined>((resolve) => ws.send('cb', resolve));
    expect(err).toBeNull();
    expect(String((await received)[0])).toBe('cb');
    ws.close(1000, 'done');
    const late = await new Promise<Error | null | undefined>((resolve) => ws.send('late', resolve));
    expect(late).toBeInstanceOf(WsNotOpenError);
    expect((late as WsNotOpenError).code).toBe('WS_ERR_NOT_OPEN');
  });

  it('grows bufferedAmount while the client does not read, and drains when it does', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    const { ws } = await h.sink.next('open');
    c.socket.pause();
    const chunk = 'y'.repeat(64 * 1024);
    let last: Promise<unknown> = Promise.resolve();
    // Loopback kernel buffers take a few MB; past them the bytes stay with us.
    for (let i = 0; i < 4000 && ws.bufferedAmount < 1024 * 1024; i++) {
      last = new Promise((resolve) => ws.send(chunk, resolve));
      await turn();
    }
    expect(ws.bufferedAmount).toBeGreaterThan(1024 * 1024);
    c.socket.resume();
    expect(await last).toBeNull();
    expect(ws.bufferedAmount).toBe(0);
  });
});

// ---------------------------------------------------------------------------
// Ping, pong, close
// ---------------------------------------------------------------------------

describe('LeanWebSocket ping, pong and close', () => {
  it('answers a client ping with a pong carrying the same payload', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const pong = once(client, 'pong');
    client.ping('are you there');
    expect(String((await pong)[0])).toBe('are you there');
  });

  it('pings the client and reports its pong', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const pinged = once(client, 'ping');
    ws.ping();
    await pinged;
    expect((await h.sink.next('pong')).ws).toBe(ws);
  });

  it('closes with a code and reason on request; the client echoes and onClose reports it once', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const clientClosed = once(client, 'close');
    ws.close(4001, 'replaced by a newer connection');
    expect(ws.readyState).toBe(LeanWebSocket.CLOSING);
    const [code, reason] = (await clientClosed) as [number, Buffer];
    expect(code).toBe(4001);
    expect(reason.toString()).toBe('replaced by a newer connection');
    expect(await h.sink.next('close')).toMatchObject({ ws, code: 4001 });
    expect(ws.readyState).toBe(LeanWebSocket.CLOSED);
    ws.close(1000); // no-op once closed
    await turn();
    expect(h.sink.count('close')).toBe(1);
  });

  it('echoes a client-initiated close and reports its code', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const clientClosed = once(client, 'close');
    client.close(1000, 'bye');
    expect((await clientClosed)[0]).toBe(1000);
    expect((await h.sink.next('close')).code).toBe(1000);
  });

  it('answers a close frame without a code with an empty one and reports 1005', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    c.send(clientFrame(Opcode.Close, Buffer.alloc(0)));
    await c.until(() => c.frames.length > 0);
    expect(c.frames).toEqual([['close', 1005, '']]);
    c.socket.end();
    expect((await h.sink.next('close')).code).toBe(1005);
  });

  it('cuts a close reason longer than a control frame allows instead of throwing', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const clientClosed = once(client, 'close');
    ws.close(1008, `${'x'.repeat(120)}𝄞𝄞`);
    const [code, reason] = (await clientClosed) as [number, Buffer];
    expect(code).toBe(1008);
    expect(reason.length).toBeLessThanOrEqual(123);
    expect(reason.toString()).toBe('x'.repeat(120));
  });

  it('destroys a connection whose peer never answers its close frame, after closeTimeoutMs', async () => {
    const h = await start({ closeTimeoutMs: 30 });
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    const { ws } = await h.sink.next('open');
    const clientClosed = once(c.socket, 'close');
    ws.close(1001, 'going away');
    // The raw client neither answers nor ends: the server's close sweep must act.
    expect((await h.sink.next('close')).code).toBe(1006);
    await clientClosed;
    expect(c.frames).toEqual([['close', 1001, 'going away']]);
  });

  it('terminate() drops the socket at once and reports 1006 once', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const clientClosed = once(client, 'close');
    ws.terminate();
    ws.terminate();
    expect((await clientClosed)[0]).toBe(1006);
    expect((await h.sink.next('close')).code).toBe(1006);
    await turn();
    expect(h.sink.count('close')).toBe(1);
  });

  it('reports a client that ends TCP without a close frame as 1006 and closes its side', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    const clientClosed = once(c.socket, 'close');
    c.socket.end();
    expect((await h.sink.next('close')).code).toBe(1006);
    await clientClosed;
  });

  it('reports an abrupt client reset as onClose(1006) exactly once', async () => {
    const h = await start();
    const client = await wsClient(h.port);
    const { ws } = await h.sink.next('open');
    const serverSocket = h.sockets[0]!;
    const serverSocketClosed = once(serverSocket, 'close');
    client.terminate();
    expect((await h.sink.next('close')).code).toBe(1006);
    await serverSocketClosed;
    // Sends and pings after the end are harmless and report nothing more.
    ws.ping();
    ws.send('after the end');
    await turn();
    expect(h.sink.kinds()).toEqual(['open', 'close']);
  });

  it('reports a TCP reset (ECONNRESET) as onClose(1006) exactly once', async () => {
    const h = await start();
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    await h.sink.next('open');
    const serverSocket = h.sockets[0]!;
    const errored = once(serverSocket, 'error');
    // resetAndDestroy() closes with SO_LINGER 0: the server reads an RST, not a FIN.
    c.socket.resetAndDestroy();
    expect((await h.sink.next('close')).code).toBe(1006);
    expect(((await errored)[0] as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    await turn();
    expect(h.sink.count('close')).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// Protocol violations
// ---------------------------------------------------------------------------

describe('LeanWebSocket protocol violations', () => {
  /** Opens a raw connection, sends `frame`, and returns what the server sent and reported. */
  async function violate(
    frame: Buffer,
    options: LeanWebSocketServerOptions = {},
  ): Promise<{ frames: ServerFrame[]; sink: RecordingSink }> {
    const h = await start(options);
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    c.send(frame);
    // The server ends TCP right behind its close frame: the parser has stopped and
    // could not read the client's answer.
    await once(c.socket, 'end');
    await h.sink.next('close');
    return { frames: c.frames, sink: h.sink };
  }

  it('closes with 1002 on an unmasked client frame, reporting WS_ERR_EXPECTED_MASK first', async () => {
    const { frames, sink } = await violate(encodeFrame(Opcode.Text, 'hi', { maskKey: null }));
    expect(frames).toEqual([['close', 1002, '']]);
    expect(sink.kinds()).toEqual(['open', 'error', 'close']);
    expect(sink.events[1]).toMatchObject({ code: 'WS_ERR_EXPECTED_MASK', closeCode: 1002 });
    expect(sink.events[2]).toMatchObject({ code: 1006 });
  });

  it('closes with 1007 on text that is not UTF-8', async () => {
    const { frames, sink } = await violate(clientFrame(Opcode.Text, Buffer.from([0x68, 0xff])));
    expect(frames).toEqual([['close', 1007, '']]);
    expect(sink.events[1]).toMatchObject({ code: 'WS_ERR_INVALID_UTF8', closeCode: 1007 });
    expect(sink.count('message')).toBe(0);
  });

  it('closes with 1009 on a message over maxMessageBytes', async () => {
    const { frames, sink } = await violate(clientFrame(Opcode.Text, 'z'.repeat(1025)), {
      maxMessageBytes: 1024,
    });
    expect(frames).toEqual([['close', 1009, '']]);
    expect(sink.events[1]).toMatchObject({
      code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
      closeCode: 1009,
    });
  });

  it('closes with 1002 on a reserved bit, an unknown opcode or a bad close code', async () => {
    const rsv = clientFrame(Opcode.Text, 'x');
    rsv[0] = rsv[0]! | 0x40;
    const opcode = clientFrame(Opcode.Text, 'x');
    opcode[0] = 0x83;
    const badClose = clientFrame(Opcode.Close, Buffer.from([0x03, 0xee])); // 1006
    for (const [frame, code] of [
      [rsv, 'WS_ERR_UNEXPECTED_RSV'],
      [opcode, 'WS_ERR_INVALID_OPCODE'],
      [badClose, 'WS_ERR_INVALID_CLOSE_CODE'],
    ] as const) {
      const { frames, sink } = await violate(frame);
      expect(frames).toEqual([['close', 1002, '']]);
      expect(sink.events[1]).toMatchObject({ kind: 'error', code, closeCode: 1002 });
      expect(sink.count('close')).toBe(1);
    }
  });

  it('the ws client sees 1009 when it sends more than the maximum', async () => {
    const h = await start({ maxMessageBytes: 1024 });
    const client = await wsClient(h.port);
    const closed = once(client, 'close');
    client.send('q'.repeat(2048));
    expect((await closed)[0]).toBe(1009);
    expect((await h.sink.next('error')).code).toBe('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
    expect((await h.sink.next('close')).code).toBe(1006);
  });

  it('keeps serving other connections after one fails', async () => {
    const h = await start();
    const good = await wsClient(h.port);
    const c = raw(h.port);
    c.upgrade();
    await c.response();
    c.send(encodeFrame(Opcode.Text, 'bad', { maskKey: null }));
    await h.sink.next('error');
    good.send('still here');
    expect((await h.sink.next('message')).data.toString()).toBe('still here');
  });
});

describe('handshake helpers', () => {
  it('uses the same accept computation as the client checks', () => {
    expect(expectedAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(encodeClosePayload(1000).length).toBe(2);
  });
});
