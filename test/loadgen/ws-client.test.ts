import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import {
  encodeClosePayload,
  encodeFrame,
  expectedAccept,
  makeHandshakeKey,
  Opcode,
} from '../../core/ws/frame.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsCloseInfo,
  type WsConnectOptions,
} from '../../loadgen/ws-client/connection.js';
import { EventLog } from '../helpers/event-log.js';
import { type DecodedFrame, decodeFrames, pattern, serverFrame } from '../helpers/ws-frames.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type SinkEvent =
  | { kind: 'open' }
  | { kind: 'text'; text: string }
  | { kind: 'binary'; data: Buffer }
  | { kind: 'close'; info: WsCloseInfo };

/** A sink that records every callback and lets a test await the next one of a kind. */
class RecordingSink extends EventLog<SinkEvent> implements WsClientSink {
  /** Runs inside onClose, like an owner that reconnects from its callback. */
  onCloseHook: ((conn: WsClientConnection) => void) | null = null;

  onOpen(): void {
    this.push({ kind: 'open' });
  }
  onText(_conn: WsClientConnection, text: string): void {
    this.push({ kind: 'text', text });
  }
  onBinary(_conn: WsClientConnection, data: Buffer): void {
    this.push({ kind: 'binary', data: Buffer.from(data) });
  }
  onClose(conn: WsClientConnection, info: WsCloseInfo): void {
    this.push({ kind: 'close', info });
    this.onCloseHook?.(conn);
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startWsServer(
  options: Partial<ConstructorParameters<typeof WebSocketServer>[0]> = {},
): Promise<{ wss: WebSocketServer; port: number }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    ...options,
  });
  await once(wss, 'listening');
  cleanups.push(async () => {
    for (const client of wss.clients) client.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
  return { wss, port: address.port };
}

async function startNetServer(
  onConnection: (socket: net.Socket) => void,
): Promise<{ server: net.Server; port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
  return { server, port: address.port };
}

/** A connection plus the server-side `ws` socket it is talking to, both open. */
async function openPair(
  port: number,
  wss: WebSocketServer,
  extra: Partial<WsConnectOptions> = {},
): Promise<{ conn: WsClientConnection; sink: RecordingSink; peer: WebSocket }> {
  const sink = new RecordingSink();
  const conn = new WsClientConnection(sink, 7);
  cleanups.push(() => conn.destroy());
  const serverSide = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
  conn.connect({ host: '127.0.0.1', port, path: '/ws', ...extra });
  const [[peer]] = await Promise.all([serverSide, sink.next('open')]);
  return { conn, sink, peer };
}

function nextMessage(peer: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return once(peer, 'message').then(([data, isBinary]) => ({
    data: data as Buffer,
    isBinary: isBinary as boolean,
  }));
}

function nextClose(peer: WebSocket): Promise<{ code: number; reason: string }> {
  return once(peer, 'close').then(([code, reason]) => ({
    code: code as number,
    reason: (reason as Buffer).toString(),
  }));
}

/**
 * A hand-written server on a raw socket: completes a valid upgrade, then calls
 * `afterUpgrade` and collects the frames the client sends back.
 */
async function startRawWsServer(afterUpgrade: (socket: net.Socket) => void): Promise<{
  port: number;
  nextClientFrame: () => Promise<DecodedFrame>;
}> {
  const queue: DecodedFrame[] = [];
  const waiters: ((frame: DecodedFrame) => void)[] = [];
  const { port } = await startNetServer((socket) => {
    let buffered = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!upgraded) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffered.toString('latin1', 0, end);
        buffered = buffered.subarray(end + 4);
        const key = /^sec-websocket-key: *(\S+)/im.exec(head)?.[1] ?? '';
        upgraded = true;
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${expectedAccept(key)}\r\n\r\n`,
        );
        afterUpgrade(socket);
      }
      const { frames, used } = decodeFrames(buffered);
      buffered = buffered.subarray(used);
      for (const frame of frames) {
        const waiter = waiters.shift();
        if (waiter !== undefined) waiter(frame);
        else queue.push(frame);
      }
    });
  });
  return {
    port,
    nextClientFrame: () => {
      const frame = queue.shift();
      if (frame !== undefined) return Promise.resolve(frame);
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** A port on which nothing listens (bound, then released). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

describe('WsClientConnection against a ws server', () => {
  it('completes the upgrade with the expected request and opens', async () => {
    const { wss, port } = await startWsServer();
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 42);
    cleanups.push(() => conn.destroy());
    const serverSide = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
    expect(conn.state).toBe('idle');
    expect(conn.sendText('too early')).toBe(false);
    conn.connect({
      host: '127.0.0.1',
      port,
      path: '/ws?device=42',
      headers: { Authorization: 'Bearer t0k3n' },
    });
    expect(conn.state).toBe('connecting');
    const [[, request]] = await Promise.all([serverSide, sink.next('open')]);
    expect(conn.state).toBe('open');
    expect(conn.id).toBe(42);
    expect(request.url).toBe('/ws?device=42');
    expect(request.headers.host).toBe(`127.0.0.1:${port}`);
    expect(request.headers.authorization).toBe('Bearer t0k3n');
    expect(request.headers['sec-websocket-version']).toBe('13');
  });

  it('round-trips multi-byte UTF-8 text in both directions', async () => {
    const { wss, port } = await startWsServer();
    const { conn, sink, peer } = await openPair(port, wss);
    const text = 'héllo 🌍 日本語 ✓';

    const atServer = nextMessage(peer);
    expect(conn.sendText(text)).toBe(true);
    const { data, isBinary } = await atServer;
    expect(isBinary).toBe(false);
    expect(data.toString('utf8')).toBe(text);

    peer.send(`${text}!`);
    expect((await sink.next('text')).text).toBe(`${text}!`);
  });

  for (const bytes of [200, 70_000, 1024 * 1024]) {
    it(`carries a ${bytes}-byte message in both directions`, async () => {
      const { wss, port } = await startWsServer();
      const { conn, sink, peer } = await openPair(port, wss);
      const payload = pattern(bytes);

      // ws closes with 1002 on an unmasked client frame, so delivery proves masking.
      const atServer = nextMessage(peer);
      conn.sendBinary(payload);
      const received = await atServer;
      expect(received.isBinary).toBe(true);
      expect(received.data.equals(payload)).toBe(true);

      const textAtServer = nextMessage(peer);
      conn.sendText('é'.repeat(bytes / 2));
      expect((await textAtServer).data.toString()).toBe('é'.repeat(bytes / 2));

      peer.send(pattern(bytes, 11));
      expect((await sink.next('binary')).data.equals(pattern(bytes, 11))).toBe(true);
      peer.send('ü'.repeat(bytes / 2));
      expect((await sink.next('text')).text).toBe('ü'.repeat(bytes / 2));
    });
  }

  it('is accepted by a server that rejects unmasked client frames', async () => {
    const { wss, port } = await startWsServer();
    // Control: the same server rejects a raw client that sends an unmasked frame.
    const raw = net.connect({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    cleanups.push(() => {
      raw.destroy();
    });
    const key = makeHandshakeKey();
    raw.write(
      `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const [peer] = (await once(wss, 'connection')) as [WebSocket];
    const rejected = once(peer, 'error') as Promise<[Error & { code?: string }]>;
    raw.write(serverFrame(Opcode.Text, 'unmasked'));
    expect((await rejected)[0].code).toBe('WS_ERR_EXPECTED_MASK');

    const pair = await openPair(port, wss);
    const atServer = nextMessage(pair.peer);
    pair.conn.sendText('masked');
    expect((await atServer).data.toString()).toBe('masked');
    expect(pair.conn.state).toBe('open');
  });

  it('reassembles a fragmented message with a ping between the fragments', async () => {
    const { wss, port } = await startWsServer();
    const { sink, peer } = await openPair(port, wss);
    const globe = Buffer.from('🌍'); // 4 bytes, split across two fragments
    const pong = once(peer, 'pong');
    peer.send(Buffer.concat([Buffer.from('one '), globe.subarray(0, 2)]), {
      binary: false,
      fin: false,
    });
    peer.ping('between');
    peer.send(Buffer.concat([globe.subarray(2), Buffer.from(' two ')]), {
      binary: false,
      fin: false,
    });
    peer.send('three', { fin: true });
    expect((await sink.next('text')).text).toBe('one 🌍 two three');
    expect(((await pong)[0] as Buffer).toString()).toBe('between');
    expect(sink.count('text')).toBe(1);
  });

  it('answers a server ping with a pong carrying the same payload', async () => {
    const { wss, port } = await startWsServer();
    const { peer } = await openPair(port, wss);
    const payload = pattern(125, 5);
    const pong = once(peer, 'pong');
    peer.ping(payload);
    expect(((await pong)[0] as Buffer).equals(payload)).toBe(true);
  });

  it('echoes a server-initiated close with the same code and reports it once', async () => {
    const { wss, port } = await startWsServer();
    const { conn, sink, peer } = await openPair(port, wss);
    const serverClosed = nextClose(peer);
    peer.close(4001, 'bye now');
    const [{ info }, atServer] = await Promise.all([sink.next('close'), serverClosed]);
    expect(info).toEqual({ opened: true, code: 4001, reason: 'bye now' });
    expect(atServer.code).toBe(4001);
    expect(conn.state).toBe('closed');
    expect(sink.count('close')).toBe(1);
  });

  it('runs a client-initiated close handshake and reports it once', async () => {
    const { wss, port } = await startWsServer();
    const { conn, sink, peer } = await openPair(port, wss);
    const serverClosed = nextClose(peer);
    conn.close(4002, 'client done');
    expect(conn.state).toBe('closing');
    expect(conn.sendText('after close')).toBe(false);
    const [{ info }, atServer] = await Promise.all([sink.next('close'), serverClosed]);
    expect(atServer).toEqual({ code: 4002, reason: 'client done' });
    expect(info.opened).toBe(true);
    expect(info.code).toBe(4002);
    conn.close(); // no-op once closed
    conn.destroy();
    expect(sink.count('close')).toBe(1);
  });

  it('reports 1006 once when destroyed while open', async () => {
    const { wss, port } = await startWsServer();
    const { conn, sink, peer } = await openPair(port, wss);
    const serverClosed = nextClose(peer);
    conn.destroy();
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1006 });
    expect((await serverClosed).code).toBe(1006);
    conn.destroy();
    expect(sink.count('close')).toBe(1);
  });

  it('reports a TCP drop without a close frame as 1006', async () => {
    const { wss, port } = await startWsServer();
    const { sink, peer } = await openPair(port, wss);
    peer.terminate();
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1006 });
  });

  it('closes with 1007 on text that is not UTF-8', async () => {
    const { wss, port } = await startWsServer();
    const { sink, peer } = await openPair(port, wss);
    const serverClosed = nextClose(peer);
    peer.send(Buffer.from([0x68, 0x69, 0xff]), { binary: false });
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1007 });
    expect((await serverClosed).code).toBe(1007);
    expect(sink.count('text')).toBe(0);
  });

  it('closes with 1009 on a message over maxMessageBytes', async () => {
    const { wss, port } = await startWsServer();
    const { sink, peer } = await openPair(port, wss, { maxMessageBytes: 1024 });
    const serverClosed = nextClose(peer);
    peer.send(pattern(1024));
    expect((await sink.next('binary')).data.length).toBe(1024);
    peer.send(pattern(1025));
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1009 });
    expect((await serverClosed).code).toBe(1009);
    expect(sink.count('binary')).toBe(1);
  });

  it('reconnects with the same object after a close', async () => {
    const { wss, port } = await startWsServer();
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    cleanups.push(() => conn.destroy());
    const opts = { host: '127.0.0.1', port, path: '/again' };

    let serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
    conn.connect(opts);
    let [[peer]] = await Promise.all([serverSide, sink.next('open')]);
    expect(() => conn.connect(opts)).toThrow(/state 'open'/);

    // The owner reconnects from inside onClose, the hardest place to do it from.
    sink.onCloseHook = (c) => {
      sink.onCloseHook = null;
      c.connect(opts);
    };
    serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
    peer.close(1001, 'restart');
    expect((await sink.next('close')).info.code).toBe(1001);
    [[peer]] = await Promise.all([serverSide, sink.next('open')]);
    expect(conn.state).toBe('open');

    peer.send('second life');
    expect((await sink.next('text')).text).toBe('second life');
    const atServer = nextMessage(peer);
    conn.sendText('still me');
    expect((await atServer).data.toString()).toBe('still me');
    // The first socket's late 'close' must not have been reported against the second attempt.
    expect(sink.count('close')).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// Failed attempts and misbehaving servers
// ---------------------------------------------------------------------------

describe('WsClientConnection failures', () => {
  it('reports an upgrade answered with HTTP 401 as http_status', async () => {
    const { port } = await startWsServer({
      verifyClient: (_info, done) => done(false, 401, 'Unauthorized'),
    });
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const { info } = await sink.next('close');
    expect(info).toMatchObject({ opened: false, failure: 'http_status', httpStatus: 401 });
    expect(info.reason).toContain('401');
    expect(sink.count('open')).toBe(0);
    expect(conn.state).toBe('closed');
  });

  it('throws for caller bugs without leaving the object unusable', async () => {
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    expect(() => conn.connect({ host: '127.0.0.1', port: 70_000, path: '/' })).toThrow(RangeError);
    expect(() =>
      conn.connect({ host: '127.0.0.1', port: 1, path: '/', headers: { 'X-A': 'b\r\nX-Evil: 1' } }),
    ).toThrow(TypeError);
    expect(conn.state).toBe('idle');
    const port = await deadPort();
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    expect((await sink.next('close')).info.failure).toBe('refused');
  });

  it('reports a refused TCP connection as refused', async () => {
    const port = await deadPort();
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const { info } = await sink.next('close');
    expect(info).toMatchObject({ opened: false, code: 1006, failure: 'refused' });
    expect(sink.count('close')).toBe(1);
  });

  it('times out, from the owner sweep, a server that accepts and never answers', async () => {
    const { server, port } = await startNetServer(() => {});
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    cleanups.push(() => conn.destroy());
    const opts = { host: '127.0.0.1', port, path: '/' };
    let accepted = once(server, 'connection') as Promise<[net.Socket]>;
    conn.connect(opts);
    const [firstServerSocket] = await accepted;

    const timeoutUs = 5_000_000;
    expect(conn.expireIfStale(conn.startedUs + timeoutUs - 1, timeoutUs, timeoutUs)).toBe(false);
    expect(sink.count('close')).toBe(0);
    // Reconnect from inside onClose, before the abandoned socket has emitted its own 'close'.
    sink.onCloseHook = (c) => {
      sink.onCloseHook = null;
      c.connect(opts);
    };
    const firstClosed = once(firstServerSocket, 'close');
    accepted = once(server, 'connection') as Promise<[net.Socket]>;
    expect(conn.expireIfStale(conn.startedUs + timeoutUs, timeoutUs, timeoutUs)).toBe(true);
    expect((await sink.next('close')).info).toMatchObject({ opened: false, failure: 'timeout' });
    expect(conn.state).toBe('connecting');
    // The abandoned socket really closes, and its late 'close' event must not end the new attempt.
    await Promise.all([firstClosed, accepted]);
    expect(sink.count('close')).toBe(1);
    expect(conn.state).toBe('connecting');
  });

  it('destroys, from the owner sweep, a close handshake the server never finishes', async () => {
    const { port, nextClientFrame } = await startRawWsServer(() => {});
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    await sink.next('open');
    conn.close(1000, 'done');
    const frame = await nextClientFrame();
    expect(frame.opcode).toBe(Opcode.Close);
    expect(conn.expireIfStale(conn.startedUs + 999, 1, 1000)).toBe(false);
    expect(conn.expireIfStale(conn.startedUs + 1000, 1, 1000)).toBe(true);
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1006 });
  });

  it('reports a wrong Sec-WebSocket-Accept as bad_handshake', async () => {
    const { port } = await startNetServer((socket) => {
      socket.once('data', () => {
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Accept: bm90IHRoZSByaWdodCB2YWx1ZQ==\r\n\r\n',
        );
      });
    });
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const { info } = await sink.next('close');
    expect(info).toMatchObject({ opened: false, failure: 'bad_handshake' });
    expect(info.reason).toContain('Sec-WebSocket-Accept');
  });

  it('gives up on an upgrade response head over 16 KiB', async () => {
    const { port } = await startNetServer((socket) => {
      socket.once('data', () => {
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nX-Filler: ${'a'.repeat(17_000)}`);
      });
    });
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const { info } = await sink.next('close');
    expect(info).toMatchObject({ opened: false, failure: 'bad_handshake' });
    expect(info.reason).toContain('16384');
  });

  it('reports a server hanging up before answering as reset', async () => {
    const { port } = await startNetServer((socket) => {
      socket.once('data', () => socket.end());
    });
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    expect((await sink.next('close')).info).toMatchObject({ opened: false, failure: 'reset' });
  });

  /**
   * A connection stuck in 'connecting' against a server that never answers, plus
   * the 101 response (and a text frame right behind it) that the server should
   * have sent. Tests feed that response through `receive()`, the entry point of
   * the socket's read callback, so they control exactly how it is chunked.
   */
  async function connectingWithResponse(): Promise<{
    conn: WsClientConnection;
    sink: RecordingSink;
    response: Buffer;
  }> {
    const { server, port } = await startNetServer(() => {});
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    cleanups.push(() => conn.destroy());
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const [serverSocket] = await accepted;
    const [request] = (await once(serverSocket, 'data')) as [Buffer];
    const key = /sec-websocket-key: *(\S+)/i.exec(request.toString('latin1'))?.[1] ?? '';
    const response = Buffer.concat([
      Buffer.from(
        'HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n' +
          `connection: keep-alive, Upgrade\r\nsec-websocket-accept: ${expectedAccept(key)}\r\n\r\n`,
      ),
      serverFrame(Opcode.Text, 'first'),
    ]);
    return { conn, sink, response };
  }

  it('opens on a 101 and parses a frame that came in the same chunk', async () => {
    const { conn, sink, response } = await connectingWithResponse();
    conn.receive(response, response.length);
    expect(conn.state).toBe('open');
    expect(sink.events).toEqual([{ kind: 'open' }, { kind: 'text', text: 'first' }]);
  });

  it('opens on a 101 that arrives one byte at a time', async () => {
    const { conn, sink, response } = await connectingWithResponse();
    for (let i = 0; i < response.length; i++) conn.receive(response.subarray(i, i + 1), 1);
    expect(conn.state).toBe('open');
    expect(sink.events).toEqual([{ kind: 'open' }, { kind: 'text', text: 'first' }]);
  });

  it('opens on a 101 split over reads into one reused buffer, as the socket reads it', async () => {
    const { conn, sink, response } = await connectingWithResponse();
    const readBuffer = Buffer.alloc(64);
    for (let i = 0; i < response.length; i += 5) {
      const n = response.copy(readBuffer, 0, i, Math.min(response.length, i + 5));
      conn.receive(readBuffer, n);
      readBuffer.fill(0x41);
    }
    expect(conn.state).toBe('open');
    expect(sink.events).toEqual([{ kind: 'open' }, { kind: 'text', text: 'first' }]);
  });

  it('ends TCP itself after echoing a server close, for servers that wait for it', async () => {
    let serverSaw: Promise<unknown> = Promise.resolve();
    const { port, nextClientFrame } = await startRawWsServer((socket) => {
      // This server never closes first; it only answers our FIN (allowHalfOpen is off).
      serverSaw = once(socket, 'end');
      socket.write(serverFrame(Opcode.Close, encodeClosePayload(4003, 'draining')));
    });
    const sink = new RecordingSink();
    const conn = new WsClientConnection(sink, 1);
    cleanups.push(() => conn.destroy());
    conn.connect({ host: '127.0.0.1', port, path: '/' });
    const echo = await nextClientFrame();
    expect(echo.opcode).toBe(Opcode.Close);
    expect(echo.payload.readUInt16BE(0)).toBe(4003);
    await serverSaw;
    expect((await sink.next('close')).info).toEqual({
      opened: true,
      code: 4003,
      reason: 'draining',
    });
  });

  const badFrames: [string, () => Buffer][] = [
    ['a masked frame', () => encodeFrame(Opcode.Text, 'masked by the server')],
    [
      'a frame with RSV1 set',
      () => {
        const frame = serverFrame(Opcode.Text, 'compressed?');
        frame[0] = frame[0]! | 0x40;
        return frame;
      },
    ],
  ];
  for (const [what, frame] of badFrames) {
    it(`closes with 1002 when the server sends ${what}`, async () => {
      const { port, nextClientFrame } = await startRawWsServer((socket) => socket.write(frame()));
      const sink = new RecordingSink();
      const conn = new WsClientConnection(sink, 1);
      cleanups.push(() => conn.destroy());
      conn.connect({ host: '127.0.0.1', port, path: '/' });
      await sink.next('open');
      const sent = await nextClientFrame();
      expect(sent.opcode).toBe(Opcode.Close);
      expect(sent.masked).toBe(true);
      expect(sent.payload.readUInt16BE(0)).toBe(1002);
      expect(sink.count('text')).toBe(0);
      // Our side ended TCP after the close frame, so the attempt ends without help.
      expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1002 });
    });
  }
});
