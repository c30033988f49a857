import { describe, expect, it } from 'vitest';
import { Bitset, reconcileLedger } from '../../../core/measure/ledger.js';

function bits(...members: number[]): Bitset {
  const b = new Bitset();
  for (const m of members) b.add(m);
  return b;
}

describe('Bitset', () => {
  it('reports whether a member was new and grows past its initial size', () => {
    const b = new Bitset(new Uint8Array(1));
    expect(b.add(3)).toBe(true);
    expect(b.add(3)).toBe(false);
    expect(b.add(100_000)).toBe(true);
    expect(b.has(100_000)).toBe(true);
    expect(b.has(99_999)).toBe(false);
    expect(b.count()).toBe(2);
  });

  it('unions and intersects across differently sized sets', () => {
    const a = bits(1, 2, 3, 50_000);
    const b = bits(2, 3, 4);
    expect(a.countAnd(b)).toBe(2);
    a.addAll(b);
    expect(a.count()).toBe(5);
    const copy = new Bitset(a.toBytes().slice());
    expect(copy.has(50_000)).toBe(true);
  });
});

describe('reconcileLedger', () => {
  it('counts delivered only for accepted messages, so delivered + lost == accepted', () => {
    // sent 0..9; 0..7 accepted; 8 got 503, 9 got no answer.
    const accepted = bits(0, 1, 2, 3, 4, 5, 6, 7);
    // devices saw 0..5 in time, 6 after the deadline, and 9 (never confirmed to the publisher).
    const delivered = bits(0, 1, 2, 3, 4, 5, 9);
    const late = bits(6);
    const ledger = reconcileLedger(
      { sent: 10, accepted, rejectedByStatus: { '503': 1, no_answer: 1 } },
      { delivered, late, duplicates: 2 },
    );
    expect(ledger).toMatchObject({
      sent: 10,
      accepted: 8,
      delivered: 6,
      lost: 2,
      late: 1,
      rejected: 2,
      duplicates: 2,
      unconfirmed: 1,
    });
    expect(ledger.delivered + ledger.lost).toBe(ledger.accepted);
    expect(ledger.accepted + ledger.rejected).toBe(ledger.sent);
    expect(ledger.rate).toBeCloseTo(6 / 8);
  });

  it('gives a rate of 1 when nothing was accepted', () => {
    const ledger = reconcileLedger(
      { sent: 0, accepted: new Bitset(), rejectedByStatus: {} },
      { delivered: new Bitset(), late: new Bitset(), duplicates: 0 },
    );
    expect(ledger.rate).toBe(1);
    expect(ledger.lost).toBe(0);
  });
});
