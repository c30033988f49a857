import { describe, expect, it } from 'vitest';
import {
  encodeClosePayload,
  encodeFrame,
  expectedAccept,
  isValidCloseCode,
  makeHandshakeKey,
  Opcode,
} from '../../core/ws/frame.js';
import { decodeFrames, pattern } from '../helpers/ws-frames.js';

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
