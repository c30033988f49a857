import { describe, expect, it } from 'vitest';
import { Bitset, reconcileFanOut } from '../../core/measure/ledger.js';
import type { PublisherFinal } from '../../loadgen/messages.js';
import { createDeviceTraffic, type TrafficFinal } from '../../loadgen/traffic/index.js';
import { mergeTraffic } from '../../loadgen/traffic/ledgers.js';
import { roomMembers, roomOf } from '../../loadgen/traffic/rooms.js';

function bits(...members: number[]): Bitset {
  const b = new Bitset();
  for (const m of members) b.add(m);
  return b;
}

describe('room membership', () => {
  it('counts the same members the devices join, and gives each device distinct rooms', () => {
    for (const [devices, count, perDevice] of [
      [10, 3, 2],
      [7, 5, 5],
      [100, 7, 3],
      [3, 10, 4],
    ] as const) {
      const seen = new Array<number>(count).fill(0);
      for (let i = 0; i < devices; i++) {
        const rooms = new Set<number>();
        for (let j = 0; j < perDevice; j++) rooms.add(roomOf(i, j, count, perDevice));
        expect(rooms.size).toBe(perDevice);
        for (const k of rooms) seen[k] = (seen[k] ?? 0) + 1;
      }
      for (let k = 0; k < count; k++)
        expect(roomMembers(k, devices, count, perDevice)).toBe(seen[k]);
    }
  });
});

describe('ledger additions', () => {
  it('intersects bitsets and walks members in order', () => {
    const a = bits(1, 5, 9, 300);
    const b = bits(5, 300, 7);
    const out: number[] = [];
    a.and(b).forEach((i) => {
      out.push(i);
    });
    expect(out).toEqual([5, 300]);
  });

  it('reconciles a fan-out ledger in deliveries with both invariants', () => {
    // Messages 0..3; 0 and 2 owe 3 deliveries, 1 and 3 owe 2; message 3 was rejected.
    const ledger = reconcileFanOut(
      {
        sent: bits(0, 1, 2, 3),
        accepted: bits(0, 1, 2),
        rejectedByStatus: { '503': 1 },
        fanOut: (r) => (r % 2 === 0 ? 3 : 2),
      },
      {
        delivered: Uint32Array.from([3, 1, 2, 2]),
        late: Uint32Array.from([0, 1, 0, 0]),
        duplicates: 4,
      },
    );
    expect(ledger.sent).toBe(10);
    expect(ledger.accepted).toBe(8);
    expect(ledger.rejected).toBe(2);
    expect(ledger.rejectedByStatus).toEqual({ '503': 2 });
    expect(ledger.delivered).toBe(6);
    expect(ledger.lost).toBe(2);
    expect(ledger.late).toBe(1);
    expect(ledger.unconfirmed).toBe(2);
    expect(ledger.duplicates).toBe(4);
    expect(ledger.delivered + ledger.lost).toBe(ledger.accepted);
    expect(ledger.accepted + ledger.rejected).toBe(ledger.sent);
  });
});

describe('mergeTraffic', () => {
  it('counts d2d messages sent but never answered as no_status and sums a combined figure', () => {
    const worker0: TrafficFinal = {
      kind: 'pushbench-traffic',
      workerIndex: 0,
      errors: {},
      d2d: {
        sent: bits(0, 2, 4).toBytes(),
        accepted: bits(0, 2).toBytes(),
        statuses: { delivered: 2 },
        notSent: 3,
        delivered: bits(1).toBytes(),
        late: new Bitset().toBytes(),
        duplicates: 0,
        badFrames: 0,
      },
    };
    const worker1: TrafficFinal = {
      kind: 'pushbench-traffic',
      workerIndex: 1,
      errors: {},
      d2d: {
        sent: bits(1, 3).toBytes(),
        accepted: bits(1).toBytes(),
        statuses: { delivered: 1, rate_limited: 1 },
        notSent: 0,
        delivered: bits(0, 2).toBytes(),
        late: new Bitset().toBytes(),
        duplicates: 1,
        badFrames: 0,
      },
    };
    const kind = (sent: number[], accepted: number[], rejected: Record<string, number>) => ({
      sent: sent.length,
      seqs: bits(...sent).toBytes(),
      accepted: bits(...accepted).toBytes(),
      rejectedByStatus: rejected,
    });
    const pub: PublisherFinal = {
      type: 'publisher-final',
      notFoundAtUs: [],
      sent: 4,
      accepted: bits(0, 1, 2).toBytes(),
      rejectedByStatus: { refused: 1 },
      kinds: {
        direct: kind([0, 2], [0, 2], {}),
        indirect: kind([1, 3], [1], { refused: 1 }),
        room: kind([], [], {}),
      },
      roomLayout: { count: 0, perDevice: 0, devices: 0 },
      skipped: 0,
      noTarget: 0,
      histograms: {},
      self: { elu: 0, lagP99Ms: 0, lagMaxMs: 0 },
    };
    const device = {
      delivered: bits(0, 1).toBytes(),
      late: bits(2).toBytes(),
      duplicates: 2,
      traffic: worker0,
    };
    const result = mergeTraffic([device, worker1], pub);
    expect(result.d2d.sent).toBe(5);
    expect(result.d2d.accepted).toBe(3);
    expect(result.d2d.rejectedByStatus).toEqual({ rate_limited: 1, no_status: 1 });
    expect(result.d2d.delivered).toBe(3);
    expect(result.d2d.notSent).toBe(3);
    expect(result.d2d.duplicates).toBe(1);
    expect(result.direct).toMatchObject({ sent: 2, accepted: 2, delivered: 1, lost: 1, late: 1 });
    expect(result.indirect).toMatchObject({
      sent: 2,
      accepted: 1,
      delivered: 1,
      lost: 0,
      rejected: 1,
    });
    // Only the queue retries, so push duplicates are put under indirect.
    expect(result.indirect.duplicates).toBe(2);
    expect(result.combined).toEqual({ accepted: 6, delivered: 5, lost: 1, rate: 5 / 6 });
  });

  it('costs nothing when rooms and d2d are off', () => {
    const traffic = createDeviceTraffic(
      {
        devices: 10,
        accounts: 2,
        workerStride: 1,
        durationMs: 1000,
        seed: 1,
        rooms: { count: 0, perDevice: 0, rateHz: 0, payloadBytes: 0 },
        d2d: { rateHz: 0, payloadBytes: 0 },
      },
      { workerIndex: 0, firstDevice: 0, deviceCount: 10, accounts: 2, seed: 1 },
    );
    expect(traffic.onFrame(0, { type: 'room' }, 0)).toBe(false);
    expect(traffic.takeHistograms()).toEqual({});
    expect(traffic.takeCounters()).toEqual({});
    expect(traffic.final()).toEqual({ kind: 'pushbench-traffic', workerIndex: 0, errors: {} });
  });

  it('refuses a traffic config it cannot read', () => {
    expect(() =>
      createDeviceTraffic(
        { devices: 1 },
        { workerIndex: 0, firstDevice: 0, deviceCount: 1, accounts: 1, seed: 1 },
      ),
    ).toThrow(/deviceTrafficConfig/);
  });
});

describe('room subscriptions before publishing', () => {
  it('subscribes devices that opened before start once the channel arrives, skipping closed ones', () => {
    const traffic = createDeviceTraffic(
      {
        devices: 3,
        accounts: 1,
        workerStride: 1,
        durationMs: 1000,
        seed: 1,
        rooms: { count: 1, perDevice: 1, rateHz: 1, payloadBytes: 0 },
        d2d: { rateHz: 0, payloadBytes: 0 },
      },
      { workerIndex: 0, firstDevice: 0, deviceCount: 3, accounts: 1, seed: 1 },
    );
    traffic.onOpen(0);
    traffic.onOpen(1);
    traffic.onOpen(0);
    const sent: Array<[number, string]> = [];
    traffic.start(0, {
      send: (local, text) => sent.push([local, text]) > 0,
      isOpen: (local) => local !== 1,
    });
    expect(sent).toEqual([[0, '{"type":"subscribe","room":"r0","dump":true}']]);
  });
});
