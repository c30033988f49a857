import { EventEmitter, once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { monoNowUs } from '../../core/clock.js';
import { Bitset } from '../../core/measure/ledger.js';
import type { FromWorker, PublisherFinal, PublisherWorkerData } from '../../loadgen/messages.js';
import { Publisher } from '../../loadgen/publisher.js';
import { readPushFrame } from '../../loadgen/push-frame.js';
import { d2dPartner } from '../../loadgen/traffic/d2d.js';
import type { DeviceChannel, DeviceTraffic } from '../../loadgen/traffic/device-traffic.js';
import { createDeviceTraffic, type TrafficFinal } from '../../loadgen/traffic/index.js';
import {
  deviceTrafficConfig,
  mergeTraffic,
  publisherTraffic,
} from '../../loadgen/traffic/ledgers.js';
import { validateScenario } from '../../scenarios/schema.js';
import {
  type NodeAddress,
  type NodeBackends,
  type PushNode,
  startNode,
} from '../../server/node.js';
import { signToken } from '../../server/token.js';
import { startTestNode, TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';

const SECRET = TEST_SECRET;
const KEY = TEST_API_KEY;

let node: PushNode | undefined;
let backends: NodeBackends | undefined;
let addr: NodeAddress;
const fleets: Devices[] = [];

async function boot(): Promise<void> {
  const started = await startTestNode();
  node = started.node;
  backends = started.backends;
  addr = started.address;
}

afterEach(async () => {
  for (const f of fleets.splice(0)) await f.closeAll();
  await node?.stop();
  await backends?.registry.close();
  await backends?.broker.close();
  node = undefined;
});

/** A scenario with the given traffic, validated like a real one. */
function scenario(devices: number, accounts: number, traffic: Record<string, unknown>) {
  return validateScenario(
    { name: 't', devices: { count: devices, accounts }, duration: '1s', workers: 1, traffic },
    { cores: 1 },
  );
}

/** Real sockets driving one worker's DeviceTraffic, the way the fleet does. */
class Devices {
  readonly sockets: Array<WebSocket | undefined> = [];
  readonly pushes = new Bitset();
  pushCount = 0;
  readonly events = new EventEmitter();
  readonly frames: Record<string, number> = {};
  /** Every frame written, per device. */
  readonly written: string[][] = [];
  readonly channel: DeviceChannel = {
    send: (local, text) => {
      const ws = this.sockets[local];
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(text);
      const log = this.written[local] ?? [];
      log.push(text);
      this.written[local] = log;
      return true;
    },
    isOpen: (local) => this.sockets[local]?.readyState === WebSocket.OPEN,
  };

  constructor(
    readonly traffic: DeviceTraffic,
    readonly accounts: number,
  ) {
    fleets.push(this);
  }

  async open(local: number): Promise<void> {
    const token = signToken(
      { deviceId: `d${local}`, accountId: `a${local % this.accounts}`, expiresAtSec: 9e9 },
      SECRET,
    );
    const ws = new WebSocket(`${addr.wsUrl}?token=${token}`);
    ws.on('open', () => {
      this.sockets[local] = ws;
      this.traffic.onOpen(local);
    });
    ws.on('message', (data) => {
      const text = String(data);
      const push = readPushFrame(text);
      if (push) {
        this.pushes.add(push.seq);
        this.pushCount++;
      } else {
        const frame = JSON.parse(text) as { type: string } & Record<string, unknown>;
        this.frames[frame.type] = (this.frames[frame.type] ?? 0) + 1;
        expect(this.traffic.onFrame(local, frame, monoNowUs())).toBe(true);
      }
      this.events.emit('frame');
    });
    await once(ws, 'open');
  }

  async close(local: number): Promise<void> {
    const ws = this.sockets[local];
    if (!ws) return;
    this.sockets[local] = undefined;
    const closed = once(ws, 'close');
    ws.close();
    await closed;
    this.traffic.onClose(local);
  }

  async closeAll(): Promise<void> {
    for (let i = 0; i < this.sockets.length; i++) await this.close(i);
  }

  /** Waits (on frames, no sleeping) until `cond` holds. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await once(this.events, 'frame');
  }

  final(): TrafficFinal {
    return this.traffic.final() as TrafficFinal;
  }
}

/** Runs a Publisher in-process over a MessageChannel until its final report. */
async function publish(
  data: Omit<
    PublisherWorkerData,
    | 'role'
    | 'httpUrls'
    | 'apiKey'
    | 'maxInFlight'
    | 'requestTimeoutMs'
    | 'reportIntervalMs'
    | 'seed'
  > & {
    httpUrls?: string[];
  },
  targets: number[],
  onInterval?: (msg: FromWorker) => void,
): Promise<PublisherFinal> {
  const { port1, port2 } = new MessageChannel();
  const publisher = new Publisher(
    {
      role: 'publisher',
      httpUrls: [addr.httpUrl],
      apiKey: KEY,
      maxInFlight: 1000,
      requestTimeoutMs: 5000,
      reportIntervalMs: 100,
      seed: 7,
      ...data,
    },
    port1,
  );
  await publisher.warm(2);
  const final = new Promise<PublisherFinal>((resolve) => {
    port2.on('message', (msg: FromWorker) => {
      if (msg.type === 'publisher-final') resolve(msg);
      else onInterval?.(msg);
    });
  });
  const now = monoNowUs();
  publisher.handle({ type: 'start', atUs: now, gridUs: now, targets: Int32Array.from(targets) });
  const out = await final;
  port1.close();
  port2.close();
  return out;
}

describe('rooms', () => {
  it('delivers every room message to every member and counts it once per member', async () => {
    await boot();
    // 6 devices, 3 rooms, 2 rooms each: every room has 4 members.
    const s = scenario(6, 3, { direct: { rate: 0 }, rooms: { count: 3, perDevice: 2, rate: 40 } });
    const traffic = createDeviceTraffic(deviceTrafficConfig(s), {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 6,
      accounts: 3,
      seed: 1,
    });
    const devices = new Devices(traffic, 3);
    traffic.start(monoNowUs(), devices.channel);
    for (let i = 0; i < 6; i++) await devices.open(i);
    await devices.until(() => devices.frames.subscribed === 12);

    const pub = await publish({ ...publisherTraffic(s), durationMs: 500 }, []);
    expect(pub.kinds.room.sent).toBe(20);
    await devices.until(() => devices.frames.room === 20 * 4);
    traffic.stop();

    const result = mergeTraffic([devices.final()], pub);
    expect(result.room.messages).toEqual({ sent: 20, accepted: 20 });
    expect(result.room.expected).toBe(80);
    expect(result.room.accepted).toBe(80);
    expect(result.room.delivered).toBe(80);
    expect(result.room.lost).toBe(0);
    expect(result.room.duplicates).toBe(0);
    expect(result.room.recovered).toBe(0);
    const hist = traffic.takeHistograms();
    expect(Object.keys(hist).sort()).toEqual(['room']);
    expect(traffic.takeCounters().roomReceived).toBe(80);
  });

  it('recovers what a member missed while away when it resubscribes with since', async () => {
    await boot();
    const s = scenario(2, 1, { direct: { rate: 0 }, rooms: { count: 1, perDevice: 1, rate: 20 } });
    const traffic = createDeviceTraffic(deviceTrafficConfig(s), {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 2,
      accounts: 1,
      seed: 1,
    });
    const devices = new Devices(traffic, 1);
    traffic.start(monoNowUs(), devices.channel);
    await devices.open(0);
    await devices.open(1);
    await devices.until(() => devices.frames.subscribed === 2);

    // Device 1 leaves after 3 room frames have arrived (both devices count) and
    // comes back once device 0 has seen several more.
    let away = false;
    const published = publish({ ...publisherTraffic(s), durationMs: 1000 }, []);
    await devices.until(() => (devices.frames.room ?? 0) >= 4);
    await devices.close(1);
    away = true;
    const roomsWhenLeft = devices.frames.room ?? 0;
    await devices.until(() => (devices.frames.room ?? 0) >= roomsWhenLeft + 5);
    await devices.open(1);
    const pub = await published;
    expect(away).toBe(true);
    // The comeback resumed from the last message device 1 had seen before it left.
    const subscribes = (devices.written[1] ?? []).map(
      (t) => JSON.parse(t) as Record<string, unknown>,
    );
    expect(subscribes).toHaveLength(2);
    expect(subscribes[0]).toEqual({ type: 'subscribe', room: 'r0', dump: true });
    expect(subscribes[1]?.since).toMatchObject({
      offset: expect.any(Number),
      epoch: expect.any(String),
    });
    const since = subscribes[1]?.since as { offset: number } | undefined;
    expect(since?.offset).toBeGreaterThanOrEqual(2);
    await devices.until(() => {
      const f = devices.final().rooms;
      return f?.delivered.slice(0, 20).every((n) => n === 2) === true;
    });
    traffic.stop();

    const result = mergeTraffic([devices.final()], pub);
    expect(result.room.accepted).toBe(40);
    expect(result.room.lost).toBe(0);
    expect(result.room.delivered).toBe(40);
    expect(result.room.recovered).toBeGreaterThanOrEqual(5);
    expect(result.room.resyncs).toBe(0);
    expect(result.room.delivered + result.room.lost).toBe(result.room.accepted);
  });

  it('counts a message seen again through recovery as a duplicate, not a second delivery', async () => {
    const s = scenario(1, 1, { rooms: { count: 1, perDevice: 1, rate: 1 } });
    const traffic = createDeviceTraffic(deviceTrafficConfig(s), {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 1,
      accounts: 1,
      seed: 1,
    });
    const sent: string[] = [];
    traffic.start(0, { send: (_l, t) => sent.push(t) > 0, isOpen: () => true });
    traffic.onOpen(0);
    expect(JSON.parse(sent[0] ?? '{}')).toEqual({ type: 'subscribe', room: 'r0', dump: true });
    const msg = (seq: number) => ({ id: `room${seq}`, payload: { seq, t: 0 } });
    traffic.onFrame(
      0,
      { type: 'subscribed', room: 'r0', epoch: 'e1', offset: 0, messages: [], complete: true },
      10,
    );
    traffic.onFrame(0, { type: 'room', room: 'r0', offset: 1, epoch: 'e1', message: msg(0) }, 10);
    traffic.onFrame(0, { type: 'room', room: 'r0', offset: 3, epoch: 'e1', message: msg(2) }, 10);
    traffic.onOpen(0);
    expect(JSON.parse(sent[1] ?? '{}')).toEqual({
      type: 'subscribe',
      room: 'r0',
      since: { offset: 3, epoch: 'e1' },
    });
    // The resume hands back 1..3: message 1 is new (recovered), 0 and 2 are duplicates.
    traffic.onFrame(
      0,
      {
        type: 'subscribed',
        room: 'r0',
        epoch: 'e1',
        offset: 3,
        recovered: true,
        complete: true,
        messages: [
          { offset: 1, message: msg(0) },
          { offset: 2, message: msg(1) },
          { offset: 3, message: msg(2) },
        ],
      },
      10,
    );
    traffic.onFrame(
      0,
      { type: 'subscribed', room: 'r0', epoch: 'e2', offset: 0, recovered: false, messages: [] },
      10,
    );
    const f = (traffic.final() as TrafficFinal).rooms;
    expect(Array.from(f?.delivered.slice(0, 3) ?? [])).toEqual([1, 1, 1]);
    expect(f?.duplicates).toBe(2);
    expect(f?.recovered).toBe(1);
    expect(f?.resyncs).toBe(1);
  });
});

describe('d2d', () => {
  it('pairs every device with a partner in its own account', () => {
    for (const [devices, accounts] of [
      [10, 3],
      [7, 2],
      [100, 100],
      [5, 1],
    ] as const) {
      for (let i = 0; i < devices; i++) {
        const p = d2dPartner(i, devices, accounts);
        if (p < 0) {
          expect(devices - accounts).toBeLessThanOrEqual(i % accounts);
          continue;
        }
        expect(p).not.toBe(i);
        expect(p % accounts).toBe(i % accounts);
        expect(p).toBeLessThan(devices);
      }
    }
  });

  it('delivers same-account d2d messages, records latency and counts statuses', async () => {
    await boot();
    const s = scenario(4, 2, { d2d: { rate: 40 } });
    const config = { ...deviceTrafficConfig(s), durationMs: 500 };
    const traffic = createDeviceTraffic(config, {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 4,
      accounts: 2,
      seed: 1,
    });
    const devices = new Devices(traffic, 2);
    for (let i = 0; i < 4; i++) await devices.open(i);
    traffic.start(monoNowUs(), devices.channel);
    await devices.until(() => {
      const f = devices.final().d2d;
      return f !== undefined && Object.values(f.statuses).reduce((a, b) => a + b, 0) === 20;
    });
    await devices.until(() => (devices.frames.d2d ?? 0) >= 20);
    traffic.stop();

    const hist = traffic.takeHistograms();
    expect(hist.d2d).toBeTypeOf('string');
    const result = mergeTraffic([devices.final()], emptyPublisherFinal());
    expect(result.d2d.sent).toBe(20);
    expect(result.d2d.notSent).toBe(0);
    expect(result.d2d.statuses).toEqual({ delivered: 20 });
    expect(result.d2d.accepted).toBe(20);
    expect(result.d2d.delivered).toBe(20);
    expect(result.d2d.lost).toBe(0);
  });

  it('counts a slot whose sender is closed as not sent and an offline partner as not_connected', async () => {
    await boot();
    const s = scenario(4, 2, { d2d: { rate: 40 } });
    const config = { ...deviceTrafficConfig(s), durationMs: 500 };
    const traffic = createDeviceTraffic(config, {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 4,
      accounts: 2,
      seed: 1,
    });
    const devices = new Devices(traffic, 2);
    // Devices 0, 1, 3 open; 2 (partner of 0) never connects and does not send.
    for (const i of [0, 1, 3]) await devices.open(i);
    traffic.start(monoNowUs(), devices.channel);
    await devices.until(() => {
      const f = devices.final().d2d;
      return f !== undefined && Object.values(f.statuses).reduce((a, b) => a + b, 0) === 15;
    });
    await devices.until(() => (devices.frames.d2d ?? 0) >= 10);
    traffic.stop();
    const result = mergeTraffic([devices.final()], emptyPublisherFinal());
    expect(result.d2d.notSent).toBe(5);
    expect(result.d2d.sent).toBe(15);
    expect(result.d2d.statuses).toEqual({ delivered: 10, not_connected: 5 });
    expect(result.d2d.accepted).toBe(10);
    expect(result.d2d.rejectedByStatus).toEqual({ not_connected: 5 });
    expect(result.d2d.delivered + result.d2d.lost).toBe(result.d2d.accepted);
    expect(result.d2d.lost).toBe(0);
  });
});

describe('publisher kinds', () => {
  it('delivers direct and indirect pushes from one seq space and splits the ledger per kind', async () => {
    await boot();
    const s = scenario(3, 3, { direct: { rate: 20 }, indirect: { rate: 20 } });
    const traffic = createDeviceTraffic(deviceTrafficConfig(s), {
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 3,
      accounts: 3,
      seed: 1,
    });
    const devices = new Devices(traffic, 3);
    for (let i = 0; i < 3; i++) await devices.open(i);
    const pub = await publish({ ...publisherTraffic(s), durationMs: 500 }, [0, 1, 2]);
    expect(pub.kinds.direct.sent).toBe(10);
    expect(pub.kinds.indirect.sent).toBe(10);
    expect(pub.sent).toBe(20);
    await devices.until(() => devices.pushCount >= 20);

    const deviceFinal = {
      delivered: devices.pushes.toBytes(),
      late: new Bitset().toBytes(),
      duplicates: 0,
      traffic: devices.final(),
    };
    const result = mergeTraffic([deviceFinal], pub);
    for (const kind of [result.direct, result.indirect]) {
      expect(kind.sent).toBe(10);
      expect(kind.accepted).toBe(10);
      expect(kind.delivered).toBe(10);
      expect(kind.lost).toBe(0);
      expect(kind.unconfirmed).toBe(0);
    }
    // The seq spaces of the kinds do not overlap and cover 0..19.
    const direct = new Bitset(pub.kinds.direct.seqs);
    const indirect = new Bitset(pub.kinds.indirect.seqs);
    expect(direct.countAnd(indirect)).toBe(0);
    expect(direct.count() + indirect.count()).toBe(20);
    expect(result.combined).toEqual({ accepted: 20, delivered: 20, lost: 0, rate: 1 });
  });

  it('counts requests to a dead API target as refused, and uses the targets it is given', async () => {
    await boot();
    // A port nothing listens on: a node that just died.
    const dead = await startNode({ secret: SECRET, apiKey: KEY });
    const deadUrl = dead.address.httpUrl;
    await dead.node.stop();
    await dead.backends.registry.close();
    await dead.backends.broker.close();

    const s = scenario(1, 1, { direct: { rate: 20 } });
    const devices = new Devices(
      createDeviceTraffic(deviceTrafficConfig(s), {
        workerIndex: 0,
        firstDevice: 0,
        deviceCount: 1,
        accounts: 1,
        seed: 1,
      }),
      1,
    );
    await devices.open(0);
    const pub = await publish(
      { ...publisherTraffic(s), durationMs: 500, httpUrls: [addr.httpUrl, deadUrl] },
      [0],
    );
    expect(pub.kinds.direct.sent).toBe(10);
    expect(pub.kinds.direct.rejectedByStatus).toEqual({ refused: 5 });
    expect(new Bitset(pub.kinds.direct.accepted).count()).toBe(5);
  });

  it('replaces its API targets on api-targets', async () => {
    await boot();
    const { port1, port2 } = new MessageChannel();
    const publisher = new Publisher(
      {
        role: 'publisher',
        httpUrls: ['http://127.0.0.1:1'],
        apiKey: KEY,
        rateHz: 0,
        durationMs: 300,
        payloadBytes: 0,
        rooms: { count: 2, perDevice: 1, devices: 2, rateHz: 20, payloadBytes: 0 },
        maxInFlight: 100,
        requestTimeoutMs: 5000,
        reportIntervalMs: 100,
        seed: 1,
      },
      port1,
    );
    const final = new Promise<PublisherFinal>((resolve) =>
      port2.on('message', (msg: FromWorker) => {
        if (msg.type === 'publisher-final') resolve(msg);
      }),
    );
    publisher.handle({ type: 'api-targets', urls: [addr.httpUrl] });
    const now = monoNowUs();
    publisher.handle({ type: 'start', atUs: now, gridUs: now });
    const pub = await final;
    port1.close();
    port2.close();
    expect(pub.kinds.room.sent).toBe(6);
    expect(new Bitset(pub.kinds.room.accepted).count()).toBe(6);
    expect(pub.roomLayout).toEqual({ count: 2, perDevice: 1, devices: 2 });
    // Room messages have their own ledger; the push ledger saw nothing.
    expect(pub.sent).toBe(0);
  });
});

function emptyPublisherFinal(): PublisherFinal {
  const none = {
    sent: 0,
    seqs: new Uint8Array(0),
    accepted: new Uint8Array(0),
    rejectedByStatus: {},
  };
  return {
    type: 'publisher-final',
    notFoundAtUs: [],
    sent: 0,
    accepted: new Uint8Array(0),
    rejectedByStatus: {},
    kinds: { direct: none, indirect: none, room: none },
    roomLayout: { count: 0, perDevice: 0, devices: 0 },
    skipped: 0,
    noTarget: 0,
    histograms: {},
    self: { elu: 0, lagP99Ms: 0, lagMaxMs: 0 },
  };
}
