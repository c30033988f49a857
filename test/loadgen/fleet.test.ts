/**
 * The fleet against a small real WebSocket server over loopback: losses,
 * refusals, silence, goaways and periodic reconnects, observed both from the
 * server (when each device arrived) and from the fleet's own reports.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { monoNowUs } from '../../core/clock.js';
import { decodeHistogram } from '../../core/measure/histogram.js';
import { Bitset } from '../../core/measure/ledger.js';
import { Fleet } from '../../loadgen/fleet.js';
import type {
  DeviceFinal,
  DeviceInterval,
  DeviceRoute,
  DeviceWorkerData,
  FromWorker,
} from '../../loadgen/messages.js';
import { verifyToken } from '../../server/token.js';

const SECRET = 'fleet-test-secret';

/** Everything that happens in a test ticks this, so waits re-check their condition. */
const ticks = new EventEmitter();

/** Resolves once `cond()` holds, re-checking on every server or fleet event; rejects after `timeoutMs`. */
function until(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  if (cond()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!cond()) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      ticks.off('tick', check);
    };
    ticks.on('tick', check);
  });
}

/** A push node stand-in: records every upgrade, can refuse, go silent, goaway and kill. */
class TestNode {
  /** Every upgrade request that reached us, refused or not. */
  readonly upgrades: Array<{ device: string; atUs: number }> = [];
  /** Every accepted connection. */
  readonly opens: Array<{ device: string; atUs: number; ws: WebSocket }> = [];
  readonly open = new Set<WebSocket>();
  /** Answer upgrades with this HTTP status instead of 101; null = accept. */
  refuseWith: number | null = null;
  /** Sockets we stopped pinging. */
  readonly silent = new WeakSet<WebSocket>();
  /** Called for each accepted connection. */
  onConnection: ((ws: WebSocket, device: string) => void) | null = null;
  port = 0;
  private http: Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true });
  private pinger: NodeJS.Timeout | null = null;

  async listen(port = 0): Promise<void> {
    const http = createServer();
    http.on('upgrade', (req, socket, head) => {
      const token = new URL(req.url ?? '/', 'http://x').searchParams.get('token') ?? '';
      const check = verifyToken(token, SECRET, Date.now() / 1000);
      const device = check.ok ? check.claims.deviceId : '?';
      this.upgrades.push({ device, atUs: monoNowUs() });
      if (this.refuseWith !== null) {
        socket.end(`HTTP/1.1 ${this.refuseWith} Refused\r\nContent-Length: 0\r\n\r\n`);
        ticks.emit('tick');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.open.add(ws);
        this.opens.push({ device, atUs: monoNowUs(), ws });
        ws.on('close', () => {
          this.open.delete(ws);
          ticks.emit('tick');
        });
        ws.on('error', () => {});
        this.onConnection?.(ws, device);
        ticks.emit('tick');
      });
    });
    await new Promise<void>((resolve) => http.listen(port, '127.0.0.1', resolve));
    this.http = http;
    this.port = (http.address() as AddressInfo).port;
  }

  /** Stops accepting: new connects are refused (RST); open sockets stay. */
  closeListener(): void {
    this.http?.close();
    this.http = null;
  }

  /** Drops every open socket without a close frame. */
  killAll(): void {
    for (const ws of this.open) ws.terminate();
  }

  /** Pings every non-silent socket every `ms`. */
  pingEvery(ms: number): void {
    this.pinger = setInterval(() => {
      for (const ws of this.open) if (!this.silent.has(ws)) ws.ping();
    }, ms);
  }

  opensOf(device: string): number[] {
    return this.opens.filter((o) => o.device === device).map((o) => o.atUs);
  }

  async stop(): Promise<void> {
    if (this.pinger) clearInterval(this.pinger);
    this.killAll();
    this.closeListener();
  }
}

/** A fleet run in this thread, with its reports collected. */
class Harness {
  readonly msgs: FromWorker[] = [];
  readonly fleet: Fleet;

  constructor(readonly data: DeviceWorkerData) {
    this.fleet = new Fleet(data, {
      postMessage: (msg) => {
        this.msgs.push(msg);
        ticks.emit('tick');
      },
    });
  }

  /** Resolves once the fleet itself has `n` devices open. */
  untilOpen(n: number): Promise<void> {
    return until(() => this.fleet.openDevices === n, `${n} devices open in the fleet`);
  }

  start(): this {
    const now = monoNowUs();
    this.fleet.handle({ type: 'start', atUs: now, gridUs: now });
    return this;
  }

  intervals(): DeviceInterval[] {
    return this.msgs.filter((m): m is DeviceInterval => m.type === 'device-interval');
  }

  /** Sum of an interval counter over every report so far. */
  sum(
    field: 'losses' | 'reconnects' | 'reconnectAttempts' | 'periodic' | 'connectFailures',
  ): number {
    return this.intervals().reduce((n, m) => n + m[field], 0);
  }

  async finish(): Promise<DeviceFinal> {
    this.fleet.handle({ type: 'finish' });
    await until(() => this.msgs.some((m) => m.type === 'device-final'), 'device-final');
    return this.msgs.find((m): m is DeviceFinal => m.type === 'device-final')!;
  }

  /** Values recorded in one series over every report, including the final. */
  seriesCount(series: string): number {
    let n = 0;
    for (const m of this.msgs) {
      if (m.type !== 'device-interval' && m.type !== 'device-final') continue;
      const snap = m.histograms[series];
      if (snap) n += decodeHistogram(snap).totalCount;
    }
    return n;
  }
}

function route(port: number, first: number, count: number, region = 'here'): DeviceRoute {
  return { region, first, count, host: '127.0.0.1', port, path: '/ws', localAddresses: [] };
}

function workerData(
  port: number,
  devices: number,
  over: Partial<DeviceWorkerData> = {},
): DeviceWorkerData {
  return {
    role: 'devices',
    workerIndex: 0,
    firstDevice: 0,
    deviceCount: devices,
    reserveFirst: devices,
    reserveCount: 0,
    routes: [route(port, 0, devices)],
    secret: SECRET,
    tokenTtlSec: 3600,
    accounts: 10,
    connectRateHz: 2000,
    connectTimeoutMs: 2000,
    reportIntervalMs: 200,
    reconnect: { policy: 'full-jitter', baseMs: 50, capMs: 500, maxAttempts: 0 },
    periodicReconnect: null,
    heartbeatTimeoutMs: null,
    registration: false,
    seed: 1,
    traffic: null,
    ...over,
  };
}

/** Splits `drops` into [lostAtUs, backAtUs, attempts] triples. */
function triples(drops: Float64Array): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let i = 0; i < drops.length; i += 3) out.push([drops[i]!, drops[i + 1]!, drops[i + 2]!]);
  return out;
}

const nodes: TestNode[] = [];
const harnesses: Harness[] = [];

async function startNode(port = 0): Promise<TestNode> {
  const node = new TestNode();
  await node.listen(port);
  nodes.push(node);
  return node;
}

function startFleet(data: DeviceWorkerData): Harness {
  const h = new Harness(data).start();
  harnesses.push(h);
  return h;
}

afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    if (!h.msgs.some((m) => m.type === 'device-final')) await h.finish();
  }
  for (const node of nodes.splice(0)) await node.stop();
});

describe('fleet reconnects', () => {
  it('brings every device back after the server drops all sockets', async () => {
    const node = await startNode();
    const h = startFleet(workerData(node.port, 20));
    await until(() => h.msgs.some((m) => m.type === 'ramp-done'), 'ramp-done');
    const ramp = h.msgs.find((m) => m.type === 'ramp-done');
    expect(ramp?.type === 'ramp-done' && ramp.established.length).toBe(20);

    node.killAll();
    await until(() => node.opens.length === 40 && node.open.size === 20, '20 reconnects');
    await h.untilOpen(20);
    await until(() => h.sum('reconnects') === 20, 'reconnects reported');
    const final = await h.finish();

    const drops = triples(final.drops);
    expect(drops).toHaveLength(20);
    for (const [lostAt, backAt, attempts] of drops) {
      expect(backAt).toBeGreaterThan(lostAt);
      expect(attempts).toBeGreaterThanOrEqual(1);
    }
    expect(h.seriesCount('reconnect')).toBe(20);
    expect(h.seriesCount('connect')).toBe(40);
    expect(h.sum('losses')).toBe(20);
    expect(final.lossesByCause).toEqual({ code_1006: 20 });
    expect(final.gaveUp).toBe(0);
    expect(final.established).toBe(20);
    expect(final.heldAtEnd).toBe(20);
    // Every device came back as itself.
    for (let i = 0; i < 20; i++) expect(node.opensOf(`d${i}`)).toHaveLength(2);
  });

  it('spaces attempts by the exponential policy while the listener is gone', async () => {
    const node = await startNode();
    const port = node.port;
    const h = startFleet(
      workerData(port, 5, {
        reconnect: { policy: 'exponential', baseMs: 100, capMs: 5000, maxAttempts: 0 },
      }),
    );
    await until(() => node.open.size === 5, '5 open');
    node.closeListener();
    node.killAll();
    const lostUs = monoNowUs();
    // Attempts fall at 100, 300, 700, 1500 ms after the loss: reopen in the 700..1500 gap.
    await new Promise((r) => setTimeout(r, 1000));
    const again = await startNode(port);
    await until(() => again.open.size === 5, '5 back');
    await h.untilOpen(5);
    const final = await h.finish();

    const drops = triples(final.drops);
    expect(drops).toHaveLength(5);
    for (const [lostAt, backAt, attempts] of drops) {
      expect(attempts).toBe(4);
      // Back no sooner than the 4th delay allows: 100 + 200 + 400 + 800 ms.
      expect(backAt - lostAt).toBeGreaterThanOrEqual(1_495_000);
    }
    expect(final.failuresByReason).toEqual({ refused: 15 });
    // Each failed attempt's time to fail is recorded: 15 of them, none before the loss.
    expect(h.seriesCount('connect_failed')).toBe(15);
    expect(h.seriesCount('connect')).toBe(10);
    expect(again.opens.every((o) => o.atUs - lostUs >= 1_495_000)).toBe(true);
  });

  it('retries refused first attempts by policy with doubling gaps, and reports the ramp once', async () => {
    const node = await startNode();
    node.refuseWith = 503;
    const h = startFleet(
      workerData(node.port, 3, {
        reconnect: { policy: 'exponential', baseMs: 100, capMs: 5000, maxAttempts: 0 },
      }),
    );
    // First attempt + 3 retries per device, all answered 503.
    await until(() => node.upgrades.length >= 12, '12 refused upgrades');
    const ramps = h.msgs.filter((m) => m.type === 'ramp-done');
    expect(ramps).toHaveLength(1);
    expect(ramps[0]?.type === 'ramp-done' && ramps[0].failed).toBe(3);
    node.refuseWith = null;
    await until(() => node.open.size === 3, '3 open');
    await h.untilOpen(3);
    const final = await h.finish();

    for (let i = 0; i < 3; i++) {
      const at = node.upgrades.filter((u) => u.device === `d${i}`).map((u) => u.atUs);
      const gaps = at.slice(1, 4).map((t, j) => (t - at[j]!) / 1000);
      // Delays 100, 200, 400 ms, plus each attempt's own round trip and whatever a
      // stall of this shared machine adds (a stall lengthens a gap, never shortens one).
      expect(gaps[0]).toBeGreaterThanOrEqual(99);
      expect(gaps[1]).toBeGreaterThanOrEqual(199);
      expect(gaps[2]).toBeGreaterThanOrEqual(399);
      // Growing, not fixed at the longest: the first gap is 300 ms shorter than the third.
      expect(gaps[0]).toBeLessThan(gaps[2]!);
    }
    expect(final.failuresByReason.http_503).toBeGreaterThanOrEqual(12);
    expect(final.established).toBe(3);
    // Failed first connects are not losses.
    expect(final.drops).toHaveLength(0);
  });

  it('gives up after maxAttempts', async () => {
    const node = await startNode();
    const h = startFleet(
      workerData(node.port, 4, {
        reconnect: { policy: 'fixed', baseMs: 30, capMs: 30, maxAttempts: 2 },
      }),
    );
    await until(() => node.open.size === 4, '4 open');
    node.closeListener();
    node.killAll();
    await until(() => h.sum('connectFailures') === 8, '8 failed attempts');
    const final = await h.finish();
    expect(final.gaveUp).toBe(4);
    for (const [, backAt, attempts] of triples(final.drops)) {
      expect(backAt).toBe(0);
      expect(attempts).toBe(2);
    }
  });

  it('drops a device whose server goes silent, with cause heartbeat_timeout, and reconnects it', async () => {
    const node = await startNode();
    node.pingEvery(100);
    const h = startFleet(workerData(node.port, 10, { heartbeatTimeoutMs: 500 }));
    await until(() => node.open.size === 10, '10 open');
    for (const ws of node.open) node.silent.add(ws);
    await until(() => node.opens.length === 20 && node.open.size === 10, '10 reconnects');
    await h.untilOpen(10);
    // The pinged connections live on past the timeout.
    await until(() => h.intervals().length >= 8, 'a few more intervals');
    const final = await h.finish();
    expect(final.lossesByCause).toEqual({ heartbeat_timeout: 10 });
    const drops = triples(final.drops);
    expect(drops).toHaveLength(10);
    for (const [, backAt] of drops) expect(backAt).toBeGreaterThan(0);
    expect(final.heldAtEnd).toBe(10);
  });
});

describe('goaway', () => {
  it('under server-hint leaves at once and returns after reconnectAfterMs', async () => {
    const node = await startNode();
    const goawayAt = new Map<string, number>();
    node.onConnection = (ws, device) => {
      if (goawayAt.has(device)) return;
      goawayAt.set(device, monoNowUs());
      ws.send(JSON.stringify({ type: 'goaway', reason: 'drain', reconnectAfterMs: 300 }));
      // A late server close must not matter: the device has already left.
      setTimeout(() => ws.close(1001), 2000).unref();
    };
    const h = startFleet(
      workerData(node.port, 5, {
        reconnect: { policy: 'server-hint', baseMs: 5000, capMs: 10_000, maxAttempts: 0 },
      }),
    );
    await until(() => node.opens.length === 10, '5 returns');
    await h.untilOpen(5);
    const final = await h.finish();
    for (let i = 0; i < 5; i++) {
      const [first, second] = node.opensOf(`d${i}`);
      const waitedMs = (second! - goawayAt.get(`d${i}`)!) / 1000;
      expect(first).toBeDefined();
      expect(waitedMs).toBeGreaterThanOrEqual(300);
      // Far below the policy's own base (5 s): the hint was used.
      expect(waitedMs).toBeLessThan(2000);
    }
    expect(final.lossesByCause).toEqual({ goaway: 5 });
  });

  it('under other policies waits for the server to close', async () => {
    const node = await startNode();
    const closedAt = new Map<string, number>();
    node.onConnection = (ws, device) => {
      if (closedAt.has(device)) return;
      closedAt.set(device, 0);
      ws.send(JSON.stringify({ type: 'goaway', reason: 'drain', reconnectAfterMs: 0 }));
      setTimeout(() => {
        closedAt.set(device, monoNowUs());
        ws.close(1001);
      }, 400);
    };
    const h = startFleet(
      workerData(node.port, 3, {
        reconnect: { policy: 'fixed', baseMs: 20, capMs: 20, maxAttempts: 0 },
      }),
    );
    await until(() => node.opens.length === 6, '3 returns');
    await h.untilOpen(3);
    const final = await h.finish();
    for (let i = 0; i < 3; i++) {
      const [, second] = node.opensOf(`d${i}`);
      expect(second! - closedAt.get(`d${i}`)!).toBeGreaterThanOrEqual(20_000);
    }
    expect(final.lossesByCause).toEqual({ goaway: 3 });
  });
});

describe('periodic reconnect', () => {
  it('reconnects each device every everyMs minus up to staggerMs, and it is not a loss', async () => {
    const node = await startNode();
    const h = startFleet(
      workerData(node.port, 5, { periodicReconnect: { everyMs: 1000, staggerMs: 500 } }),
    );
    await until(() => node.opens.length >= 20, '15 periodic reconnects');
    await until(() => h.sum('periodic') >= 15, '15 periodic reconnects reported');
    const final = await h.finish();
    const gapsMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const at = node.opensOf(`d${i}`);
      for (let j = 1; j < at.length; j++) gapsMs.push((at[j]! - at[j - 1]!) / 1000);
    }
    expect(gapsMs.length).toBeGreaterThanOrEqual(15);
    for (const g of gapsMs) expect(g).toBeGreaterThanOrEqual(499);
    const meanMs = gapsMs.reduce((a, b) => a + b, 0) / gapsMs.length;
    expect(meanMs).toBeGreaterThan(550);
    expect(meanMs).toBeLessThan(1000);
    expect(final.drops).toHaveLength(0);
    expect(Object.keys(final.lossesByCause)).toHaveLength(0);
    expect(h.sum('losses')).toBe(0);
    expect(h.sum('periodic')).toBeGreaterThanOrEqual(15);
    expect(h.seriesCount('reconnect')).toBe(0);
  });
});

describe('routes and reserve', () => {
  it('connects each device through its route and opens reserve devices on connect-more', async () => {
    const east = await startNode();
    const west = await startNode();
    // Worker owns initial 0..3 and reserve 10..13 (an initial fleet of 10 over several workers).
    const h = startFleet(
      workerData(east.port, 4, {
        reserveFirst: 10,
        reserveCount: 4,
        routes: [route(east.port, 0, 2, 'east'), route(west.port, 2, 12, 'west')],
      }),
    );
    await until(() => east.open.size + west.open.size === 4, '4 open');
    expect(east.opens.map((o) => o.device).sort()).toEqual(['d0', 'd1']);
    expect(west.opens.map((o) => o.device).sort()).toEqual(['d2', 'd3']);
    h.fleet.handle({ type: 'connect-more', count: 3, rateHz: 100, atUs: monoNowUs() });
    await until(() => west.open.size === 5, '3 reserve devices open');
    h.fleet.handle({ type: 'connect-more', count: 5, rateHz: 100, atUs: monoNowUs() });
    await until(() => west.open.size === 6, 'the last reserve device open');
    await h.untilOpen(8);
    const final = await h.finish();
    expect(west.opens.map((o) => o.device).sort()).toEqual([
      'd10',
      'd11',
      'd12',
      'd13',
      'd2',
      'd3',
    ]);
    expect(final.requested).toBe(8);
    expect(final.established).toBe(8);
  });

  it('starts a connect-more that arrives after its start time from its arrival, not late', async () => {
    const node = await startNode();
    const h = startFleet(
      workerData(node.port, 2, { reserveCount: 20, routes: [route(node.port, 0, 22)] }),
    );
    await until(() => node.open.size === 2, '2 open');
    // Asked for 300 ms ago (an agent on a busy host hears late): 20 devices at 1,000/s.
    h.fleet.handle({ type: 'connect-more', count: 20, rateHz: 1000, atUs: monoNowUs() - 300_000 });
    await h.untilOpen(22);
    const final = await h.finish();
    expect(final.established).toBe(22);
    // Paced from arrival: no attempt counts as started 300 ms after its slot.
    expect(final.self.startLagP99Ms ?? 0).toBeLessThan(50);
  });
});

describe('fleet ramp', () => {
  it('opens nothing before its ramp delay, then its devices at its rate from the delayed start', async () => {
    const node = await startNode();
    const t0 = monoNowUs();
    const h = startFleet(workerData(node.port, 20, { connectRateHz: 200, rampDelayUs: 400_000 }));
    await new Promise((r) => setTimeout(r, 250));
    expect(node.opens.length).toBe(0);
    await h.untilOpen(20);
    // 20 at 200/s from 400 ms: the last is due at 495 ms.
    expect(monoNowUs() - t0).toBeGreaterThanOrEqual(490_000);
    const final = await h.finish();
    expect(final.established).toBe(20);
  });

  it("reports what its ramp left open no earlier than the whole fleet's ramp end", async () => {
    const node = await startNode();
    const t0 = monoNowUs();
    const h = startFleet(workerData(node.port, 5, { connectRateHz: 500, rampEndUs: 400_000 }));
    await h.untilOpen(5);
    await until(() => h.msgs.some((m) => m.type === 'ramp-done'), 'ramp-done');
    expect(monoNowUs() - t0).toBeGreaterThanOrEqual(390_000);
    const done = h.msgs.find((m) => m.type === 'ramp-done');
    expect(done && 'established' in done ? done.established.length : -1).toBe(5);
  });
});

describe('fleet read path', () => {
  it('counts pushes read by the fast lane and by the full parser alike, and bad frames as bad', async () => {
    const node = await startNode();
    const h = startFleet(workerData(node.port, 1));
    await until(() => node.open.size === 1, '1 open');
    await h.untilOpen(1);
    const ws = node.opens[0]!.ws;
    const t = monoNowUs();
    const frames = [
      // The node's own layout: the fast lane reads it.
      `{"type":"push","id":"m1","payload":{"seq":1,"t":${t},"pad":"xx"}}`,
      // Valid JSON in another layout (spaces, key order): the full parser reads it.
      `{ "payload": { "t": ${t}, "seq": 2 }, "type": "push", "id": "m2" }`,
      // The same message again through each lane: duplicates.
      `{"type":"push","id":"m1","payload":{"seq":1,"t":${t}}}`,
      `{"payload":{"seq":2,"t":${t}},"type":"push"}`,
      // Not pushes: a broken frame, a foreign type, a push without a readable seq.
      `{"type":"push","id":"m3","payload":{"seq":3,"t":${t}}`,
      '{"type":"weather","temp":3}',
      `{"type":"push","id":"m4","payload":{"seq":-4,"t":${t}}}`,
    ];
    for (const f of frames) ws.send(f);
    await until(
      () => h.intervals().reduce((n, m) => n + m.received, 0) === 4,
      'four pushes counted as received',
    );
    const final = await h.finish();
    expect(final.duplicates).toBe(2);
    expect(final.badFrames).toBe(3);
    expect(h.seriesCount('push')).toBe(2);
    const delivered = new Set<number>();
    new Bitset(final.delivered).forEach((seq) => {
      delivered.add(seq);
    });
    expect([...delivered].sort()).toEqual([1, 2]);
  });
});
