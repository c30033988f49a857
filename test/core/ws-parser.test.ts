import { describe, expect, it } from 'vitest';
import { applyMask, encodeClosePayload, encodeFrame, Opcode } from '../../core/ws/frame.js';
import { type FrameHandler, FrameParser, type WsProtocolError } from '../../core/ws/parser.js';

// The client role is covered with the lean client in test/loadgen/ws-client.test.ts;
// these cover what the server role adds: masked frames required, unmasked in place.

type Parsed =
  | ['text', string]
  | ['binary', string]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number];

/** A server-role parser recording events; text arrives as bytes, as the server takes it. */
function serverParser(maxMessageBytes?: number): { parser: FrameParser<Parsed[]>; out: Parsed[] } {
  const out: Parsed[] = [];
  const handler: FrameHandler<Parsed[]> = {
    onTextBytes: (o, data) => o.push(['text', data.toString('utf8')]),
    onBinary: (o, data) => o.push(['binary', data.toString('hex')]),
    onPing: (o, payload) => o.push(['ping', payload.toString()]),
    onPong: (o, payload) => o.push(['pong', payload.toString()]),
    onClose: (o, code, reason) => o.push(['close', code, reason]),
    onError: (o, err: WsProtocolError) => o.push(['error', err.code, err.closeCode]),
  };
  return { parser: new FrameParser(handler, out, { role: 'server', maxMessageBytes }), out };
}

/** A client frame: masked with a fresh random key, as a client must send it. */
function clientFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin });
}

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('FrameParser in the server role', () => {
  const euro = Buffer.from('€');
  const stream = Buffer.concat([
    clientFrame(Opcode.Text, 'hi'),
    clientFrame(Opcode.Text, ''),
    clientFrame(Opcode.Binary, pattern(300)),
    clientFrame(Opcode.Text, Buffer.concat([Buffer.from('a'), euro.subarray(0, 2)]), false),
    clientFrame(Opcode.Ping, 'mid'),
    clientFrame(Opcode.Continuation, euro.subarray(2), false),
    clientFrame(Opcode.Continuation, 'z'),
    clientFrame(Opcode.Binary, pattern(70_000, 7)),
    clientFrame(Opcode.Pong, ''),
    clientFrame(Opcode.Close, encodeClosePayload(1000, 'bye')),
    clientFrame(Opcode.Text, 'after close'),
  ]);
  const expected: Parsed[] = [
    ['text', 'hi'],
    ['text', ''],
    ['binary', pattern(300).toString('hex')],
    ['ping', 'mid'],
    ['text', 'a€z'],
    ['binary', pattern(70_000, 7).toString('hex')],
    ['pong', ''],
    ['close', 1000, 'bye'],
  ];

  it('unmasks a stream of masked client frames fed whole', () => {
    const { parser, out } = serverParser();
    parser.feed(Buffer.from(stream));
    expect(out).toEqual(expected);
    expect(parser.stopped).toBe(true);
  });

  it('unmasks the same stream fed one byte at a time (mask key and payload split)', () => {
    const { parser, out } = serverParser();
    const copy = Buffer.from(stream);
    for (let i = 0; i < copy.length; i++) parser.feed(copy.subarray(i, i + 1));
    expect(out).toEqual(expected);
  });

  it('unmasks the same stream fed in odd-sized chunks', () => {
    const { parser, out } = serverParser();
    const copy = Buffer.from(stream);
    for (let i = 0; i < copy.length; i += 1001) parser.feed(copy.subarray(i, i + 1001));
    expect(out).toEqual(expected);
  });

  it('unmasks a whole-in-chunk payload in place, without a copy', () => {
    let seen: Buffer | undefined;
    const handler: FrameHandler<null> = {
      onTextBytes: () => {},
      onBinary: (_o, data) => {
        seen = data;
      },
      onPing: () => {},
      onPong: () => {},
      onClose: () => {},
      onError: () => {},
    };
    const chunk = clientFrame(Opcode.Binary, pattern(64));
    new FrameParser(handler, null, { role: 'server' }).feed(chunk);
    expect(seen?.equals(pattern(64))).toBe(true);
    expect(seen?.buffer).toBe(chunk.buffer);
    expect(chunk.subarray(chunk.length - 64).equals(pattern(64))).toBe(true);
  });

  it('fails an unmasked client frame with WS_ERR_EXPECTED_MASK and 1002', () => {
    const { parser, out } = serverParser();
    parser.feed(encodeFrame(Opcode.Text, 'hi', { maskKey: null }));
    expect(out).toEqual([['error', 'WS_ERR_EXPECTED_MASK', 1002]]);
    expect(parser.stopped).toBe(true);
  });

  it('fails text that is not UTF-8 with 1007, even split across fragments', () => {
    const { parser, out } = serverParser();
    parser.feed(
      Buffer.concat([
        clientFrame(Opcode.Text, Buffer.from([0x61, 0xe2]), false),
        clientFrame(Opcode.Continuation, Buffer.from([0x28, 0xa1])),
      ]),
    );
    expect(out).toEqual([['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  });

  it('fails a message over maxMessageBytes with 1009 before its payload arrives', () => {
    const { parser, out } = serverParser(1024);
    const frame = clientFrame(Opcode.Binary, pattern(1025));
    parser.feed(frame.subarray(0, 8)); // header and mask key only
    expect(out).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  });

  it('counts all fragments against maxMessageBytes', () => {
    const { parser, out } = serverParser(1024);
    parser.feed(clientFrame(Opcode.Binary, pattern(600), false));
    parser.feed(clientFrame(Opcode.Continuation, pattern(600)));
    expect(out).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  });

  it('accepts masked frames whose key has the top bit set', () => {
    const { parser, out } = serverParser();
    parser.feed(encodeFrame(Opcode.Text, 'top bit', { maskKey: Buffer.from([0xff, 1, 2, 0x80]) }));
    expect(out).toEqual([['text', 'top bit']]);
  });

  it('rejects an unknown role with TypeError', () => {
    const { parser } = serverParser();
    expect(parser.stopped).toBe(false);
    expect(
      () =>
        new FrameParser(
          {
            onText: () => {},
            onBinary: () => {},
            onPing: () => {},
            onPong: () => {},
            onClose: () => {},
            onError: () => {},
          },
          null,
          { role: 'peer' as 'server' },
        ),
    ).toThrow(TypeError);
  });
});

describe('applyMask', () => {
  it('masks and unmasks with a key given as signed or unsigned 32 bits', () => {
    const data = pattern(37);
    const masked = Buffer.from(data);
    applyMask(masked, 0, masked.length, 0xdeadbeef);
    expect(masked.equals(data)).toBe(false);
    applyMask(masked, 0, masked.length, 0xdeadbeef | 0);
    expect(masked.equals(data)).toBe(true);
  });
});
