import { describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import { scanned, scanPush, scanRoom } from '../../loadgen/frame-scan.js';
import { encodePushFrame, encodeRoomFrame } from '../../server/protocol.js';

/** The payload as pushbench's publisher writes it (loadgen/publisher.ts). */
function payload(seq: number, tUs: number, pad?: string): string {
  return JSON.stringify(pad === undefined ? { seq, t: tUs } : { seq, t: tUs, pad });
}

/** A room message as the node stores it (server/push-api.ts) inside the node's room frame. */
function roomFrame(k: number, offset: number, epoch: string, seq: number, tUs: number, pad = 'x') {
  const message = JSON.stringify({ id: `room${seq}`, payload: JSON.parse(payload(seq, tUs, pad)) });
  return encodeRoomFrame(`r${k}`, offset, epoch, message);
}

/** What the full parser reads from a push frame, or undefined when it is not one the fleet counts. */
function parsedPush(text: string): { seq: number; t: number } | undefined {
  try {
    const f = JSON.parse(text);
    const p = f?.payload;
    if (f?.type !== 'push' || typeof p?.seq !== 'number' || typeof p?.t !== 'number') return;
    if (!Number.isInteger(p.seq) || p.seq < 0) return;
    return { seq: p.seq, t: p.t };
  } catch {
    return undefined;
  }
}

const bytes = (text: string) => Buffer.from(text, 'utf8');

describe('frame scan (the fleet fast lane)', () => {
  it('reads the push frames the node makes of the publisher payloads', () => {
    const cases: Array<[number, number, string | undefined]> = [
      [0, 0, undefined],
      [7, 1234567.5, 'xxxx'],
      [123456, 98765432101.25, ''],
      [999_999_999_999_999, 1.0000001, 'y'.repeat(1000)],
    ];
    for (const [seq, t, pad] of cases) {
      const frame = encodePushFrame(`m${seq}`, payload(seq, t, pad));
      expect(scanPush(bytes(frame))).toBe(true);
      expect(scanned.seq).toBe(seq);
      expect(scanned.t).toBeCloseTo(t, 6);
    }
  });

  it('reads room frames: room index, offset, epoch bytes, seq and time', () => {
    const frame = bytes(roomFrame(17, 4242, 'e-9Zq', 31, 55555.125));
    expect(scanRoom(frame)).toBe(true);
    expect(scanned).toMatchObject({ room: 17, offset: 4242, seq: 31, t: 55555.125 });
    expect(frame.toString('latin1', scanned.epochStart, scanned.epochEnd)).toBe('e-9Zq');
    // A push scan of a room frame, and the reverse, say no.
    expect(scanPush(frame)).toBe(false);
    expect(scanRoom(bytes(encodePushFrame('m1', payload(1, 2))))).toBe(false);
  });

  it('leaves every frame outside its grammar to the full parser', () => {
    const refused = [
      '',
      '{}',
      '[]',
      'null',
      '{"type":"push"}',
      '{"type":"push","id":"m1","payload":{"seq":1}}',
      '{"type":"push","id":"m1","payload":{"t":1,"seq":1}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2}} ',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2}}}',
      '{"type":"push","id":"m1","payload":{"seq":01,"t":2}}',
      '{"type":"push","id":"m1","payload":{"seq":-1,"t":2}}',
      '{"type":"push","id":"m1","payload":{"seq":1.5,"t":2}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2e3}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2.}}',
      '{"type":"push","id":"m1","payload":{"seq":1234567890123456,"t":2}}',
      '{"type":"push","id":"m\\"1","payload":{"seq":1,"t":2}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2,"pad":"a\\nb"}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2,"pad":"a\u0001b"}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2,"pad":"é"}}',
      '{"type":"push","id":"m1","payload":{"seq":1,"t":2,"other":3}}',
      '{"type":"push", "id":"m1","payload":{"seq":1,"t":2}}',
      '{"type":"room","room":"r01","offset":1,"epoch":"e","message":{"id":"a","payload":{"seq":1,"t":2}}}',
      '{"type":"room","room":"r1","offset":1,"epoch":"e","message":{"payload":{"seq":1,"t":2}}}',
      '{"type":"room","room":"r1","offset":1,"epoch":"e","message":{"id":"a","payload":{"seq":1,"t":2}}',
    ];
    for (const text of refused) {
      expect(scanPush(bytes(text)) || scanRoom(bytes(text)), text).toBe(false);
    }
  });

  it('never reads a mutated frame differently from JSON.parse (10,000 random byte edits)', () => {
    const rng = new Rng(42);
    const seeds = [
      encodePushFrame('m12', payload(12, 123456789.75, 'pppp')),
      encodePushFrame('m3', payload(3, 77)),
    ];
    const alphabet = '0123456789.,:"{}\\ -eE+xpt\u0001';
    let accepted = 0;
    for (let i = 0; i < 10_000; i++) {
      const chars = [...seeds[i % seeds.length]!];
      const edits = 1 + Math.floor(rng.next() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rng.next() * chars.length);
        const c = alphabet[Math.floor(rng.next() * alphabet.length)]!;
        const op = rng.next();
        if (op < 0.4) chars[at] = c;
        else if (op < 0.7) chars.splice(at, 0, c);
        else chars.splice(at, 1);
      }
      const text = chars.join('');
      if (!scanPush(bytes(text))) continue;
      accepted++;
      const full = parsedPush(text);
      expect(full, text).toBeDefined();
      expect(scanned.seq, text).toBe(full!.seq);
      expect(Math.abs(scanned.t - full!.t), text).toBeLessThanOrEqual(Math.abs(full!.t) * 1e-15);
    }
    // The mutations must also leave some frames readable, or this test proves nothing.
    expect(accepted).toBeGreaterThan(100);
  });
});
