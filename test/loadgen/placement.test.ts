import { describe, expect, it } from 'vitest';
import { splitByReserve } from '../../loadgen/coordinator.js';
import type { DeviceRoute } from '../../loadgen/messages.js';
import {
  loopbackPool,
  PROCESS_FD_OVERHEAD,
  type ProcessLimits,
  placeFleet,
  placeOnClientHosts,
} from '../../loadgen/placement.js';
import { rampPlan } from '../../loadgen/shards.js';
import { nodeProcesses } from '../../topology/node-placement.js';

const GiB = 2 ** 30;
const limits = (
  openFiles: number | null,
  ephemeralPorts: number | null = 28_232,
): ProcessLimits => ({
  openFiles,
  heapBytes: 4 * GiB,
  ephemeralPorts,
});
const route = (count: number, localAddresses: string[] = [], first = 0): DeviceRoute => ({
  region: 'local',
  first,
  count,
  host: '127.0.0.1',
  port: 9000,
  path: '/ws',
  localAddresses,
});

/** A region's block of devices, from its client host's own address. */
const regional = (region: string, first: number, count: number): DeviceRoute => ({
  ...route(count, [`10.9.${region === 'eu' ? 100 : 101}.1`], first),
  region,
});

/** {@link placeOnClientHosts} under a 20,000-file limit. */
const onClientHosts = (devices: number, reserve: number, routes: DeviceRoute[], threads = 1) =>
  placeOnClientHosts({ devices, reserve, threads, routes }, limits(20_000));

describe('placeFleet', () => {
  it('keeps a fleet that fits one process in the coordinator, one shard per thread', () => {
    const p = placeFleet(
      { devices: 2000, reserve: 0, threads: 2, routes: [route(2000)] },
      limits(20_000),
    );
    expect(p.processes).toBe(1);
    expect(p.threadsPerProcess).toBe(2);
    expect(p.shards.map((s) => [s.process, s.firstDevice, s.deviceCount])).toEqual([
      [0, 0, 1000],
      [0, 1000, 1000],
    ]);
    expect(p.reasons).toEqual([]);
  });

  it('adds processes when the devices exceed RLIMIT_NOFILE less the overhead, and says so', () => {
    const p = placeFleet(
      { devices: 250_000, reserve: 0, threads: 2, routes: [route(250_000)] },
      limits(20_000),
    );
    // 19,800 devices per process: ceil(250,000 / 19,800) = 13.
    expect(p.devicesPerProcess).toBe(20_000 - PROCESS_FD_OVERHEAD);
    expect(p.processes).toBe(13);
    expect(p.threadsPerProcess).toBe(1);
    const perProcess = new Array(13).fill(0);
    for (const s of p.shards) perProcess[s.process] += s.deviceCount;
    expect(perProcess.reduce((a, b) => a + b, 0)).toBe(250_000);
    expect(Math.max(...perProcess)).toBeLessThanOrEqual(19_800);
    expect(p.reasons[0]).toMatch(
      /250,000 devices need 250,200 open files.*20,000 \(RLIMIT_NOFILE\).*13 processes/,
    );
  });

  it('reads the limit it is given: a raised limit needs fewer processes, an unknown one none', () => {
    const req = { devices: 250_000, reserve: 0, threads: 2, routes: [route(250_000)] };
    expect(placeFleet(req, limits(1_048_576)).processes).toBe(1);
    expect(placeFleet(req, limits(65_536)).processes).toBe(4);
    expect(placeFleet(req, limits(null)).processes).toBe(1);
  });

  it('counts the reserve as sockets and tiles both blocks over the shards', () => {
    const p = placeFleet(
      { devices: 30_000, reserve: 10_000, threads: 4, routes: [route(40_000)] },
      limits(20_000),
    );
    expect(p.processes).toBe(3);
    expect(p.threadsPerProcess).toBe(2);
    const initial = p.shards.map((s) => [s.firstDevice, s.deviceCount]);
    let next = 0;
    for (const [first, count] of initial) {
      expect(first).toBe(next);
      next += count!;
    }
    expect(next).toBe(30_000);
    let reserveNext = 30_000;
    for (const s of p.shards) {
      expect(s.reserveFirst).toBe(reserveNext);
      reserveNext += s.reserveCount;
    }
    expect(reserveNext).toBe(40_000);
  });

  it('honours a per-process cap below the file limit', () => {
    const p = placeFleet(
      { devices: 1500, reserve: 0, threads: 2, routes: [route(1500)], maxDevicesPerProcess: 500 },
      limits(20_000),
    );
    expect(p.processes).toBe(3);
    expect(p.shards.map((s) => s.process)).toEqual([0, 1, 2]);
    expect(p.reasons[0]).toMatch(/at most 500 devices per process/);
  });

  it("adds threads when one thread's heap could not hold its devices", () => {
    const p = placeFleet(
      { devices: 100_000, reserve: 0, threads: 1, routes: [route(100_000)] },
      { openFiles: null, heapBytes: 64 * 2 ** 20, ephemeralPorts: null },
    );
    // 64 MiB / 2 KiB = 32,768 devices per thread.
    expect(p.processes).toBe(1);
    expect(p.threadsPerProcess).toBe(4);
  });

  it('spreads a route over source addresses when one address would run out of ports', () => {
    const p = placeFleet(
      { devices: 100_000, reserve: 0, threads: 2, routes: [route(100_000)] },
      limits(20_000),
    );
    // Past 22,585 (80% of 28,232 ports) the sockets must bind; bound, about 2,048 per address: 49.
    expect(p.routes[0]!.localAddresses).toEqual(loopbackPool(49));
    expect(p.routes[0]!.localAddresses[0]).toBe('127.1.0.1');
    expect(
      p.reasons.some((r) =>
        /spread over 49 addresses 127\.1\.0\.1\.\.127\.1\.0\.49 \(about 2,048 each\)/.test(r),
      ),
    ).toBe(true);
  });

  it('leaves small routes and routes with their own addresses alone, and takes a configured pool', () => {
    const own = ['127.0.10.1', '127.0.10.2'];
    const p = placeFleet(
      {
        devices: 60_000,
        reserve: 0,
        threads: 2,
        routes: [route(1000), route(9000, own, 1000), route(50_000, [], 10_000)],
        addressPool: Array.from({ length: 30 }, (_, i) => `127.9.9.${i + 1}`),
      },
      limits(100_000),
    );
    expect(p.routes[0]!.localAddresses).toEqual([]);
    expect(p.routes[1]!.localAddresses).toEqual(own);
    // 50,000 bound sockets at about 2,048 per address: 25 from the pool.
    expect(p.routes[2]!.localAddresses).toEqual(
      Array.from({ length: 25 }, (_, i) => `127.9.9.${i + 1}`),
    );
  });

  it('numbers the pool past 254 hosts into the next /24', () => {
    const pool = loopbackPool(256);
    expect(pool[253]).toBe('127.1.0.254');
    expect(pool[254]).toBe('127.1.1.1');
  });
});

describe('placeOnClientHosts', () => {
  // Numbered region by region: eu 0-749, us 750-999, then reserve eu 1000-1074, us 1075-1099.
  const routes = [
    regional('eu', 0, 750),
    regional('us', 750, 250),
    regional('eu', 1000, 75),
    regional('us', 1075, 25),
  ];

  it('gives each region processes of its own that hold its devices only, initial and reserve', () => {
    const p = onClientHosts(1000, 100, routes, 2);
    expect(p.clientHosts).toEqual(['eu', 'us']);
    expect(p.processes).toBe(2);
    // eu takes 1.5 of the 2 threads asked for, rounded: 2; us at least 1.
    expect(
      p.shards.map((s) => [
        s.index,
        s.process,
        s.firstDevice,
        s.deviceCount,
        s.reserveFirst,
        s.reserveCount,
      ]),
    ).toEqual([
      [0, 0, 0, 375, 1000, 38],
      [1, 0, 375, 375, 1038, 37],
      [2, 1, 750, 250, 1075, 25],
    ]);
    expect(p.routes).toEqual(routes);
    expect(p.reasons).toEqual([
      'region eu: 825 devices in 1 process on its client host',
      'region us: 275 devices in 1 process on its client host',
    ]);
  });

  it("splits a region past one process's open files over processes on the same host", () => {
    const p = onClientHosts(30_000, 0, [regional('eu', 0, 25_000), regional('us', 25_000, 5_000)]);
    expect(p.clientHosts).toEqual(['eu', 'eu', 'us']);
    const held = (proc: number) =>
      p.shards.filter((s) => s.process === proc).reduce((a, s) => a + s.deviceCount, 0);
    expect([held(0), held(1), held(2)]).toEqual([12_500, 12_500, 5_000]);
    expect(
      p.shards.every((s) => (s.process < 2 ? s.firstDevice < 25_000 : s.firstDevice >= 25_000)),
    ).toBe(true);
  });

  it('numbers a region with reserve only (or no reserve) from where such blocks begin', () => {
    const p = onClientHosts(100, 50, [regional('eu', 0, 100), regional('us', 100, 50)]);
    expect(
      p.shards.map((s) => [s.firstDevice, s.deviceCount, s.reserveFirst, s.reserveCount]),
    ).toEqual([
      [0, 100, 100, 0],
      [0, 0, 100, 50],
    ]);
  });

  it('refuses devices that are not numbered region by region', () => {
    expect(() =>
      onClientHosts(300, 0, [
        regional('eu', 0, 100),
        regional('us', 100, 100),
        regional('eu', 200, 100),
      ]),
    ).toThrow(/region eu's devices are not numbered region by region/);
  });
});

describe('splitByReserve', () => {
  it('splits evenly over equal reserves, the first taking one more, and by share over unequal ones', () => {
    expect(splitByReserve(10, [250, 250, 250, 250])).toEqual([3, 3, 2, 2]);
    expect(splitByReserve(100, [75, 25])).toEqual([75, 25]);
    expect(splitByReserve(40, [75, 25])).toEqual([30, 10]);
    // Never more than a shard has left, nor more than all have.
    expect(splitByReserve(500, [75, 25])).toEqual([75, 25]);
    expect(splitByReserve(3, [0, 5, 0])).toEqual([0, 3, 0]);
    expect(splitByReserve(0, [5, 5])).toEqual([0, 0]);
  });
});

describe('rampPlan', () => {
  it('ramps processes one after another at the whole rate, the threads of one process together', () => {
    // 3 processes x 2 threads, 60,000 devices at 2,000/s: 10 s per process.
    const p = placeFleet(
      { devices: 60_000, reserve: 0, threads: 6, routes: [route(60_000)] },
      limits(20_200 + PROCESS_FD_OVERHEAD),
    );
    expect([p.processes, p.threadsPerProcess]).toEqual([3, 2]);
    expect(rampPlan(p, 2000, 60_000)).toEqual([
      { rateHz: 1000, delayUs: 0 },
      { rateHz: 1000, delayUs: 0 },
      { rateHz: 1000, delayUs: 10_000_000 },
      { rateHz: 1000, delayUs: 10_000_000 },
      { rateHz: 1000, delayUs: 20_000_000 },
      { rateHz: 1000, delayUs: 20_000_000 },
    ]);
    // One process: its threads share the rate from the start, as before.
    const one = placeFleet(
      { devices: 3000, reserve: 0, threads: 3, routes: [route(3000)] },
      limits(20_000),
    );
    expect(rampPlan(one, 300, 3000)).toEqual([
      { rateHz: 100, delayUs: 0 },
      { rateHz: 100, delayUs: 0 },
      { rateHz: 100, delayUs: 0 },
    ]);
  });

  it('ramps in lanes side by side, and in groups (agents on other hosts) each at its share', () => {
    // 4 processes of 10,000 at 4,000/s: two lanes of 2,000/s, processes 0 and 1 first.
    const p = placeFleet(
      { devices: 40_000, reserve: 0, threads: 1, routes: [route(40_000)] },
      limits(10_000 + PROCESS_FD_OVERHEAD),
    );
    expect(p.processes).toBe(4);
    expect(rampPlan(p, 4000, 40_000, { lanes: 2 })).toEqual([
      { rateHz: 2000, delayUs: 0 },
      { rateHz: 2000, delayUs: 0 },
      { rateHz: 2000, delayUs: 5_000_000 },
      { rateHz: 2000, delayUs: 5_000_000 },
    ]);
    // Two agents of two processes each: each agent's first process at once, at half the rate.
    const agentOf = (proc: number) => (proc < 2 ? 'a' : 'b');
    expect(rampPlan(p, 4000, 40_000, { groupOf: agentOf })).toEqual([
      { rateHz: 2000, delayUs: 0 },
      { rateHz: 2000, delayUs: 5_000_000 },
      { rateHz: 2000, delayUs: 0 },
      { rateHz: 2000, delayUs: 5_000_000 },
    ]);
    // As many lanes as processes: the old way, all at once at their shares.
    expect(
      rampPlan(p, 4000, 40_000, { lanes: 8 }).every((r) => r.rateHz === 1000 && r.delayUs === 0),
    ).toBe(true);
  });

  it('on client hosts each region ramps at its share of the rate, its processes one after another', () => {
    const p = onClientHosts(40_000, 0, [regional('eu', 0, 30_000), regional('us', 30_000, 10_000)]);
    expect(p.clientHosts).toEqual(['eu', 'eu', 'us']);
    // eu: 3,000/s of 4,000, 15,000 per process: the second starts after 5 s; us: 1,000/s from 0.
    expect(rampPlan(p, 4000, 40_000)).toEqual([
      { rateHz: 3000, delayUs: 0 },
      { rateHz: 3000, delayUs: 5_000_000 },
      { rateHz: 1000, delayUs: 0 },
    ]);
  });
});

describe('nodeProcesses', () => {
  const none = { processes: null, openFiles: null };
  it('gives a node enough processes for its connections at 90% of the file limit', () => {
    expect(nodeProcesses(none, 2000, 20_000)).toBe(1);
    // (20,000 - 200) * 0.9 = 17,820 per process.
    expect(nodeProcesses(none, 17_820, 20_000)).toBe(1);
    expect(nodeProcesses(none, 17_821, 20_000)).toBe(2);
    expect(nodeProcesses(none, 250_000, 20_000)).toBe(15);
  });
  it("takes the profile's processes, and keeps one process when the profile sets openFiles", () => {
    expect(nodeProcesses({ processes: 4, openFiles: null }, 10, 20_000)).toBe(4);
    expect(nodeProcesses({ processes: null, openFiles: 500 }, 250_000, 20_000)).toBe(1);
    expect(nodeProcesses(none, 250_000, null)).toBe(1);
  });
});
