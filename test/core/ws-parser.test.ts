import { describe, expect, it } from 'vitest';
import { applyMask, encodeClosePayload, encodeFrame, Opcode } from '../../core/ws/frame.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type FrameHandler, FrameParser } from '../../core/ws/parser.js';
import {
  clientFrame,
  type ParsedEvent,
  pattern,
  recordingParser,
  serverFrame,
} from '../helpers/ws-frames.js';

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
  const expected: ParsedEvent[] = [
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
    const { parser, events: out } = recordingParser({ role: 'server' });
    parser.feed(Buffer.from(stream));
    expect(out).toEqual(expected);
    expect(parser.stopped).toBe(true);
  });

  it('unmasks the same stream fed one byte at a time (mask key and payload split)', () => {
    const { parser, events: out } = recordingParser({ role: 'server' });
    const copy = Buffer.from(stream);
    for (let i = 0; i < copy.length; i++) parser.feed(copy.subarray(i, i + 1));
    expect(out).toEqual(expected);
  });

  it('unmasks the same stream fed in odd-sized chunks', () => {
    const { parser, events: out } = recordingParser({ role: 'server' });
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
    const { parser, events: out } = recordingParser({ role: 'server' });
    parser.feed(encodeFrame(Opcode.Text, 'hi', { maskKey: null }));
    expect(out).toEqual([['error', 'WS_ERR_EXPECTED_MASK', 1002]]);
    expect(parser.stopped).toBe(true);
  });

  it('fails text that is not UTF-8 with 1007, even split across fragments', () => {
    const { parser, events: out } = recordingParser({ role: 'server' });
    parser.feed(
      Buffer.concat([
        clientFrame(Opcode.Text, Buffer.from([0x61, 0xe2]), false),
        clientFrame(Opcode.Continuation, Buffer.from([0x28, 0xa1])),
      ]),
    );
    expect(out).toEqual([['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  });

  it('fails a message over maxMessageBytes with 1009 before its payload arrives', () => {
    const { parser, events: out } = recordingParser({ role: 'server', maxMessageBytes: 1024 });
    const frame = clientFrame(Opcode.Binary, pattern(1025));
    parser.feed(frame.subarray(0, 8)); // header and mask key only
    expect(out).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  });

  it('counts all fragments against maxMessageBytes', () => {
    const { parser, events: out } = recordingParser({ role: 'server', maxMessageBytes: 1024 });
    parser.feed(clientFrame(Opcode.Binary, pattern(600), false));
    parser.feed(clientFrame(Opcode.Continuation, pattern(600)));
    expect(out).toEqual([['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009]]);
  });

  it('accepts masked frames whose key has the top bit set', () => {
    const { parser, events: out } = recordingParser({ role: 'server' });
    parser.feed(encodeFrame(Opcode.Text, 'top bit', { maskKey: Buffer.from([0xff, 1, 2, 0x80]) }));
    expect(out).toEqual([['text', 'top bit']]);
  });

  it('rejects an unknown role with TypeError', () => {
    const { parser } = recordingParser({ role: 'server' });
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

describe('FrameParser in the client role', () => {
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

  it('keeps nothing of a chunk the caller reuses: one read buffer, overwritten after each feed', () => {
    // The client reads every socket into one shared buffer (net's onread): a split
    // payload, a fragment or a header kept as a view would be overwritten.
    for (const size of [1, 7, 997]) {
      const { parser, events } = recordingParser();
      const readBuffer = Buffer.alloc(1024);
      for (let i = 0; i < stream.length; i += size) {
        const n = stream.copy(readBuffer, 0, i, Math.min(stream.length, i + size));
        parser.feed(readBuffer, n);
        readBuffer.fill(0xee);
      }
      expect(events).toEqual(expected);
    }
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
    const single = recordingParser({ maxMessageBytes: 100 });
    single.parser.feed(serverFrame(Opcode.Binary, pattern(100)));
    single.parser.feed(serverFrame(Opcode.Binary, pattern(101)));
    expect(single.events).toEqual([
      ['binary', pattern(100).toString('hex')],
      ['error', 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009],
    ]);

    const fragmented = recordingParser({ maxMessageBytes: 100 });
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
