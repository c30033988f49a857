import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import {
  encodeClosePayload,
  encodeFrame,
  expectedAccept,
  isValidCloseCode,
  makeHandshakeKey,
  Opcode,
} from '../../core/ws/frame.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  type FrameHandler,
  FrameParser,
  type WsProtocolError,
} from '../../core/ws/parser.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsCloseInfo,
  type WsConnectOptions,
} from '../../loadgen/ws-client/connection.js';
import { EventLog } from '../helpers/event-log.js';

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

/** Bytes 0..255 repeating with an offset, so a shifted or mis-masked payload differs. */
function pattern(bytes: number, seed = 3): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

/** A frame as a server would send it: unmasked. */
function serverFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, maskKey: null });
}

interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Decodes (and unmasks) the whole frames at the start of `buf`; returns them and the bytes used. */
function decodeFrames(buf: Buffer): { frames: DecodedFrame[]; used: number } {
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

// ---------------------------------------------------------------------------
// Pure functions
// ---------------------------------------------------------------------------

describe('encodeFrame', () => {
  it('picks the 7-bit, 16-bit or 64-bit length form at the RFC boundaries', () => {
    const cases: [number, number, number][] = [
      // payload bytes, length byte, header bytes (incl. 4-byte mask key)
      [0, 0, 6],
      [125, 125, 6],
      [126, 126, 8],
      [65535, 126, 8],
      [65536, 127, 14],
    ];
    for (const [bytes, length7, headerBytes] of cases) {
      const frame = encodeFrame(Opcode.Binary, pattern(bytes));
      expect(frame[0]).toBe(0x82);
      expect(frame[1]).toBe(0x80 | length7);
      expect(frame.length).toBe(headerBytes + bytes);
      const { frames } = decodeFrames(frame);
      expect(frames[0]?.payload.equals(pattern(bytes))).toBe(true);
    }
  });

  it('masks with the given key and writes the extended length big-endian', () => {
    const key = Buffer.from([1, 2, 3, 4]);
    const frame = encodeFrame(Opcode.Text, 'hello', { maskKey: key });
    expect([...frame.subarray(0, 6)]).toEqual([0x81, 0x85, 1, 2, 3, 4]);
    expect([...frame.subarray(6)]).toEqual(
      [...Buffer.from('hello')].map((b, i) => b ^ key[i % 4]!),
    );

    const big = encodeFrame(Opcode.Binary, pattern(70_000), { maskKey: null, fin: false });
    expect(big[0]).toBe(0x02);
    expect(big[1]).toBe(127);
    expect(big.readBigUInt64BE(2)).toBe(70_000n);
    expect(big.subarray(10).equals(pattern(70_000))).toBe(true);
  });

  it('draws a different random mask key for each frame', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      keys.add(encodeFrame(Opcode.Text, 'x').subarray(2, 6).toString('hex'));
    }
    // 3000 draws cross a pool refill (2048 keys per fill); a repeated key would be a reused pool.
    expect(keys.size).toBeGreaterThan(2990);
  });

  it('encodes a string payload as UTF-8 in place', () => {
    const text = 'héllo 🌍 日本';
    const { frames } = decodeFrames(encodeFrame(Opcode.Text, text));
    expect(frames[0]?.payload.toString('utf8')).toBe(text);
    expect(frames[0]?.masked).toBe(true);
  });

  it('refuses fragmented or oversized control frames and unknown opcodes', () => {
    expect(() => encodeFrame(Opcode.Ping, pattern(126))).toThrow(RangeError);
    expect(() => encodeFrame(Opcode.Close, Buffer.alloc(2), { fin: false })).toThrow(RangeError);
    expect(() => encodeFrame(0x3, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeFrame(Opcode.Text, 'x', { maskKey: Buffer.alloc(3) })).toThrow(RangeError);
  });
});

describe('close payloads and handshake helpers', () => {
  it('encodes code and reason and refuses codes that may not be sent', () => {
    const payload = encodeClosePayload(4001, 'bye');
    expect(payload.readUInt16BE(0)).toBe(4001);
    expect(payload.subarray(2).toString()).toBe('bye');
    expect(() => encodeClosePayload(1005)).toThrow(RangeError);
    expect(() => encodeClosePayload(1000, 'x'.repeat(124))).toThrow(RangeError);
    expect(encodeClosePayload(1000, 'x'.repeat(123)).length).toBe(125);
  });

  it('knows which close codes are valid on the wire', () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1009, 1011, 1014, 3000, 4999]) {
      expect(isValidCloseCode(code)).toBe(true);
    }
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1100, 2999, 5000]) {
      expect(isValidCloseCode(code)).toBe(false);
    }
  });

  it('computes the RFC 6455 sample accept value and makes fresh 16-byte keys', () => {
    expect(expectedAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    const a = makeHandshakeKey();
    const b = makeHandshakeKey();
    expect(Buffer.from(a, 'base64').length).toBe(16);
    expect(a).not.toBe(b);
  });
});

type ParsedEvent =
  | ['text', string]
  | ['binary', string]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number];

/** A parser whose handler records events as plain tuples. */
function recordingParser(maxMessageBytes?: number): {
  parser: FrameParser<ParsedEvent[]>;
  events: ParsedEvent[];
} {
  const events: ParsedEvent[] = [];
  const handler: FrameHandler<ParsedEvent[]> = {
    onText: (out, text) => out.push(['text', text]),
    onBinary: (out, data) => out.push(['binary', data.toString('hex')]),
    onPing: (out, payload) => out.push(['ping', payload.toString()]),
    onPong: (out, payload) => out.push(['pong', payload.toString()]),
    onClose: (out, code, reason) => out.push(['close', code, reason]),
    onError: (out, err: WsProtocolError) => out.push(['error', err.code, err.closeCode]),
  };
  return { parser: new FrameParser(handler, events, { maxMessageBytes }), events };
}

describe('FrameParser', () => {
  const euro = Buffer.from('€'); // 3 bytes: split across fragments below
  const stream = Buffer.concat([
    serverFrame(Opcode.Text, 'hi'),
    serverFrame(Opcode.Text, ''),
    serverFrame(Opcode.Binary, pattern(300)),
    serverFrame(Opcode.Text, Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)]), false),
    serverFrame(Opcode.Ping, 'mid'),
    serverFrame(Opcode.Continuation, euro.subarray(1), false),
    serverFrame(Opcode.Continuation, Buffer.alloc(0), false),
    serverFrame(Opcode.Continuation, 'z', true),
    serverFrame(Opcode.Binary, pattern(70_000, 9)),
    serverFrame(Opcode.Pong, ''),
    serverFrame(Opcode.Close, encodeClosePayload(1001, 'going')),
    serverFrame(Opcode.Text, 'after close'),
  ]);
  const expected: ParsedEvent[] = [
    ['text', 'hi'],
    ['text', ''],
    ['binary', pattern(300).toString('hex')],
    ['ping', 'mid'],
    ['text', 'a€z'],
    ['binary', pattern(70_000, 9).toString('hex')],
    ['pong', ''],
    ['close', 1001, 'going'],
  ];

  it('parses a stream fed whole, and ignores what follows a close frame', () => {
    const { parser, events } = recordingParser();
    parser.feed(stream);
    expect(events).toEqual(expected);
    expect(parser.stopped).toBe(true);
  });

  it('parses the same stream fed one byte at a time', () => {
    const { parser, events } = recordingParser();
    for (let i = 0; i < stream.length; i++) parser.feed(stream.subarray(i, i + 1));
    expect(events).toEqual(expected);
  });

  it('parses the same stream fed in odd-sized chunks', () => {
    const { parser, events } = recordingParser();
    for (let i = 0; i < stream.length; i += 997) parser.feed(stream.subarray(i, i + 997));
    expect(events).toEqual(expected);
  });

  it('reports a close frame without payload as 1005', () => {
    const { parser, events } = recordingParser();
    parser.feed(serverFrame(Opcode.Close, Buffer.alloc(0)));
    expect(events).toEqual([['close', 1005, '']]);
  });

  const rsv1Text = serverFrame(Opcode.Text, 'x');
  rsv1Text[0] = rsv1Text[0]! | 0x40;
  const unknownOpcode = serverFrame(Opcode.Text, 'x');
  unknownOpcode[0] = 0x83;
  const fragmentedPing = serverFrame(Opcode.Ping, 'x');
  fragmentedPing[0] = 0x09;
  const longPing = serverFrame(Opcode.Ping, 'x');
  longPing[1] = 126;
  const violations: [string, Buffer, string, number][] = [
    ['a masked frame', encodeFrame(Opcode.Text, 'x'), 'WS_ERR_UNEXPECTED_MASK', 1002],
    ['RSV1 set', rsv1Text, 'WS_ERR_UNEXPECTED_RSV', 1002],
    ['an unknown opcode', unknownOpcode, 'WS_ERR_INVALID_OPCODE', 1002],
    ['a control frame without FIN', fragmentedPing, 'WS_ERR_EXPECTED_FIN', 1002],
    ['a control frame over 125 bytes', longPing, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 1002],
    [
      'a continuation without a start',
      serverFrame(Opcode.Continuation, 'x'),
      'WS_ERR_UNEXPECTED_CONTINUATION',
      1002,
    ],
    [
      'a new data frame inside a fragmented message',
      Buffer.concat([serverFrame(Opcode.Text, 'a', false), serverFrame(Opcode.Text, 'b')]),
      'WS_ERR_EXPECTED_CONTINUATION',
      1002,
    ],
    [
      'a close frame with a 1-byte payload',
      serverFrame(Opcode.Close, Buffer.from([3])),
      'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
      1002,
    ],
    [
      'a close frame with code 1006',
      serverFrame(Opcode.Close, Buffer.from([0x03, 0xee])),
      'WS_ERR_INVALID_CLOSE_CODE',
      1002,
    ],
    [
      'a close reason that is not UTF-8',
      serverFrame(Opcode.Close, Buffer.from([0x03, 0xe8, 0xff])),
      'WS_ERR_INVALID_UTF8',
      1007,
    ],
    [
      'text that is not UTF-8',
      serverFrame(Opcode.Text, Buffer.from([0x61, 0xc3, 0x28])),
      'WS_ERR_INVALID_UTF8',
      1007,
    ],
  ];
  for (const [what, bytes, code, closeCode] of violations) {
    it(`fails with ${closeCode} on ${what} and then ignores input`, () => {
      const { parser, events } = recordingParser();
      parser.feed(Buffer.concat([bytes, serverFrame(Opcode.Text, 'ignored')]));
      expect(events).toEqual([['error', code, closeCode]]);
      expect(parser.stopped).toBe(true);
    });
  }

  it('fails with 1009 on a message over the cap, counting all fragments', () => {
    const single = recordingParser(100);
    single.parser.feed(serverFrame(Opcode.Binary, pattern(100)));
    single.parser.feed(serverFrame(Opcode.Binary, pattern(101)));
    expect(single.events).toEqual([
      ['binary', pattern(100).toString('hex')],
      ['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009],
    ]);

    const fragmented = recordingParser(100);
    fragmented.parser.feed(serverFrame(Opcode.Text, 'x'.repeat(60), false));
    fragmented.parser.feed(serverFrame(Opcode.Continuation, 'x'.repeat(41)));
    expect(fragmented.events).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  });

  it('rejects a 64-bit length over the cap before reading the payload', () => {
    const { parser, events } = recordingParser();
    // Header alone claiming 2^62 bytes: must fail from the header, not wait for the payload.
    parser.feed(Buffer.from([0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0]));
    expect(events).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
    expect(DEFAULT_MAX_MESSAGE_BYTES).toBe(16 * 1024 * 1024);
  });
});

// ---------------------------------------------------------------------------
// Conformance against a real ws server
// ---------------------------------------------------------------------------

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
   * the socket 'data' handler, so they control exactly how it is chunked.
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
    conn.receive(response);
    expect(conn.state).toBe('open');
    expect(sink.events).toEqual([{ kind: 'open' }, { kind: 'text', text: 'first' }]);
  });

  it('opens on a 101 that arrives one byte at a time', async () => {
    const { conn, sink, response } = await connectingWithResponse();
    for (let i = 0; i < response.length; i++) conn.receive(response.subarray(i, i + 1));
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
