/**
 * The join channel of load agents on other hosts: what the coordinator admits
 * and refuses at the door (token, version, hello), how it answers clocks and
 * counts bad messages without falling over, how the agent reads a refusal,
 * how a fleet is placed over agents, and what a spawn order must be before an
 * agent runs it. Real sockets on loopback; the namespaced, multi-host runs
 * are in test/e2e/agents.test.ts.
 */

import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { makeCa, makeServerCert } from '../../core/tls-certs.js';
import { version } from '../../core/version.js';
import { runAgent } from '../../loadgen/join/agent.js';
import { AgentListener } from '../../loadgen/join/listener.js';
import { placeOverAgents, proportionalSplit } from '../../loadgen/join/placement.js';
import {
  type HostFacts,
  JOIN_PROTOCOL,
  JoinClose,
  JoinProtocolError,
  parseAgentBinary,
  parseAgentText,
  parseCoordinatorBinary,
} from '../../loadgen/join/protocol.js';
import type { DeviceRoute } from '../../loadgen/messages.js';
import { noConnectionEvents } from '../../loadgen/run-fold.js';

const TOKEN = 'join-test-token';

function facts(maxDevices = 10_000): HostFacts {
  return {
    hostname: 'h',
    cores: 2,
    cpuModel: 'x',
    memoryBytes: 2 ** 34,
    freeMemoryBytes: 2 ** 33,
    openFiles: 20_000,
    ephemeralPorts: 28_232,
    addresses: ['10.0.0.2'],
    maxDevices,
  };
}

function hello(over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    t: 'hello',
    protocol: JOIN_PROTOCOL,
    token: TOKEN,
    name: 'a1',
    pushbench: version,
    node: process.version,
    facts: facts(),
    ...over,
  });
}

let listener: AgentListener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

async function listen(expect = 1, helloDeadlineMs?: number): Promise<AgentListener> {
  listener = await AgentListener.listen({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    expect,
    ...(helloDeadlineMs !== undefined && { helloDeadlineMs }),
  });
  return listener;
}

/** Opens a raw join connection bringing `token` at the upgrade; resolves once open. */
async function dial(l: AgentListener, token = TOKEN): Promise<WebSocket> {
  const ws = new WebSocket(l.url, { headers: { authorization: `Bearer ${token}` } });
  await once(ws, 'open');
  return ws;
}

/** The close code and reason the coordinator ends `ws` with. */
async function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  return { code, reason: reason.toString('utf8') };
}

/** The next message on `ws`, whatever it is. */
async function nextMessage(ws: WebSocket): Promise<Buffer> {
  const [data] = (await once(ws, 'message')) as [Buffer];
  return data;
}

/** The next text message on `ws`, parsed. */
async function nextText(ws: WebSocket): Promise<Record<string, unknown>> {
  const [data] = (await once(ws, 'message')) as [Buffer];
  return JSON.parse(data.toString('utf8')) as Record<string, unknown>;
}

describe('the coordinator at the door', () => {
  it('refuses a wrong token and another pushbench version with their own codes and reasons, and admits the right one', async () => {
    const l = await listen(1);
    // A stranger is turned away at the upgrade, before a frame of it is read.
    const stranger = new WebSocket(l.url, { headers: { authorization: 'Bearer guess' } });
    const [, response] = (await once(stranger, 'unexpected-response')) as [
      unknown,
      { statusCode: number },
    ];
    expect(response.statusCode).toBe(401);
    stranger.on('error', () => {});
    stranger.terminate();
    const bad = await dial(l);
    bad.send(hello({ token: 'not-the-token' }));
    expect(await closed(bad)).toEqual({ code: JoinClose.BadToken, reason: 'wrong token' });

    const old = await dial(l);
    old.send(hello({ pushbench: '0.0.1' }));
    const mismatch = await closed(old);
    expect(mismatch.code).toBe(JoinClose.VersionMismatch);
    expect(mismatch.reason).toMatch(/^version mismatch: the coordinator runs pushbench/);

    const good = await dial(l);
    good.send(hello());
    expect(await nextText(good)).toEqual({ t: 'welcome', index: 0, name: 'a1' });
    expect(l.records().map((r) => r.name)).toEqual(['a1']);
    expect(l.refusals).toHaveLength(2);
    // A shard's messages are checked before the fold sees them: a string for a count, a
    // second ready, or another worker's message are refused and counted.
    const [record] = l.records();
    l.start([{ workerIndex: 0, deviceCount: 10, reserveCount: 0 } as never], [0], [[0]]);
    await nextMessage(good);
    const relay = (msg: object) => good.send(serialize({ type: 'from-shard', shard: 0, msg }));
    relay({ type: 'ready', role: 'devices' });
    relay({ type: 'ready', role: 'devices' });
    relay({ type: 'ramp-done', workerIndex: 1, established: new Int32Array(0), failed: 0 });
    relay({ type: 'ramp-done', workerIndex: 0, established: [1, 2], failed: 0 });
    good.send(JSON.stringify({ t: 'stats', processes: 1, rssBytes: 1, cpuSeconds: 0 }));
    for (let i = 0; i < 50 && record?.resources === null; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(record?.refused).toBe(3);

    // One more than the run asked for is turned away.
    const extra = await dial(l);
    extra.send(hello({ name: 'a2' }));
    expect((await closed(extra)).code).toBe(JoinClose.RunFull);
    good.close();
  });

  it('closes a connection that sends garbage, or nothing, before its hello', async () => {
    const l = await listen(1, 300);
    const garbage = await dial(l);
    garbage.send('{"t":"hello","protocol":1');
    expect(await closed(garbage)).toEqual({
      code: JoinClose.Malformed,
      reason: 'malformed hello: not JSON',
    });
    const binary = await dial(l);
    binary.send(Buffer.from([1, 2, 3]));
    expect((await closed(binary)).reason).toBe('malformed hello: a binary frame before hello');
    const silent = await dial(l);
    expect(await closed(silent)).toEqual({
      code: JoinClose.HelloTimeout,
      reason: 'no hello within 0.3 s',
    });
  });

  it('after the welcome: answers clock requests with its clock, takes offsets, and counts bad messages without closing', async () => {
    const l = await listen(1);
    const ws = await dial(l);
    ws.send(hello());
    await nextText(ws);
    ws.send(JSON.stringify({ t: 'clock', id: 7 }));
    const answer = await nextText(ws);
    expect(answer.t).toBe('clock');
    expect(answer.id).toBe(7);
    expect(typeof answer.us).toBe('number');
    for (const bad of ['nonsense', '{"t":"dance"}', '{"t":"clock","id":-1}', '{"t":"hello"}']) {
      ws.send(bad);
    }
    // Binary garbage, and a relay for a shard that is not this agent's.
    ws.send(Buffer.from('not v8'));
    ws.send(serialize({ type: 'from-shard', shard: 99, msg: { type: 'ready', role: 'devices' } }));
    ws.send(
      JSON.stringify({
        t: 'offset',
        offsetUs: -5e6,
        uncertaintyUs: 40,
        roundTripUs: 80,
        samples: 24,
      }),
    );
    await expect(l.waitForAgents(5000)).resolves.toHaveLength(1);
    const [record] = l.records();
    expect(record?.refused).toBe(6);
    expect(record?.clock).toMatchObject({ offsetUs: -5e6, uncertaintyUs: 40, estimates: 1 });
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
  });

  it('says who joined and how many are missing when agents do not all come', async () => {
    const l = await listen(3);
    const ws = await dial(l);
    ws.send(hello());
    await nextText(ws);
    await expect(l.waitForAgents(300)).rejects.toMatchObject({
      code: 'PB_AGENTS_MISSING',
      exitCode: 2,
      message: expect.stringMatching(
        /for 3 agents at ws:\/\/127\.0\.0\.1:\d+: 1 joined \(a1 from 127\.0\.0\.1\), 2 missing/,
      ),
    });
    ws.close();
  });
});

describe('the agent', () => {
  it('dials again while the coordinator is not listening yet, until its join deadline', async () => {
    const probe = await listen(1);
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const joining = runAgent({
      url: `ws://127.0.0.1:${port}`,
      token: TOKEN,
      name: 'early',
      joinTimeoutMs: 10_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    listener = await AgentListener.listen({ host: '127.0.0.1', port, token: TOKEN, expect: 1 });
    const [record] = await listener.waitForAgents(8000);
    expect(record?.name).toBe('early');
    await listener.close();
    listener = undefined;
    expect(await joining).toEqual({ code: 0, reason: 'the run ended' });
  });

  it("exits 2 with the coordinator's reason when refused, and 1 when there is no coordinator", async () => {
    const l = await listen(1);
    const refused = await runAgent({ url: l.url, token: 'wrong-token', name: 'x' });
    expect(refused).toEqual({ code: 2, reason: 'refused by the coordinator: wrong token' });
    const port = Number(new URL(l.url).port);
    await l.close();
    listener = undefined;
    const nobody = await runAgent({
      url: `ws://127.0.0.1:${port}`,
      token: TOKEN,
      name: 'x',
      joinTimeoutMs: 1500,
    });
    expect(nobody.code).toBe(1);
    expect(nobody.reason).toMatch(
      /^could not reach the coordinator at ws:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
  });
});

describe('the join channel over TLS', () => {
  it('serves wss:// with a certificate; an agent trusting its CA joins, one that does not is refused by its own TLS check', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-join-tls-'));
    try {
      const ca = await makeCa(dir);
      const server = await makeServerCert(dir, ca, { names: ['127.0.0.1'] });
      listener = await AgentListener.listen({
        host: '127.0.0.1',
        port: 0,
        token: TOKEN,
        expect: 1,
        tls: { cert: server.cert, key: server.key },
      });
      const l = listener;
      expect(l.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
      const untrusting = await runAgent({ url: l.url, token: TOKEN, name: 'x' });
      expect(untrusting.code).toBe(1);
      expect(untrusting.reason).toMatch(/unable to verify the first certificate/);
      const trusting = runAgent({ url: l.url, token: TOKEN, name: 'tls-agent', ca: ca.cert });
      const [record] = await l.waitForAgents(10_000);
      expect(record?.name).toBe('tls-agent');
      await l.close();
      listener = undefined;
      expect(await trusting).toEqual({ code: 0, reason: 'the run ended' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('messages the protocol refuses', () => {
  it("reads an agent's text strictly", () => {
    expect(() => parseAgentText('[]')).toThrow(JoinProtocolError);
    expect(() => parseAgentText(hello({ name: '../etc' }))).toThrow(/name must be/);
    expect(() => parseAgentText(hello({ facts: { ...facts(), addresses: ['x'] } }))).toThrow(
      /IPv4/,
    );
    expect(() => parseAgentText(hello({ facts: { ...facts(), maxDevices: -1 } }))).toThrow(
      /maxDevices must be a whole number/,
    );
    expect(parseAgentText(hello())).toMatchObject({ t: 'hello', name: 'a1' });
  });

  it('takes a spawn order only as device shards with their fields, never anything else', () => {
    const shard = {
      role: 'devices',
      workerIndex: 0,
      firstDevice: 0,
      deviceCount: 10,
      reserveFirst: 10,
      reserveCount: 0,
      routes: [
        {
          region: 'local',
          first: 0,
          count: 10,
          host: '10.0.0.1',
          port: 80,
          path: '/ws',
          localAddresses: [],
        },
      ],
      secret: 's',
      tokenTtlSec: 60,
      accounts: 1,
      connectRateHz: 10,
      connectTimeoutMs: 1000,
      reportIntervalMs: 1000,
      reconnect: { kind: 'none' },
      periodicReconnect: null,
      heartbeatTimeoutMs: null,
      registration: false,
      seed: 1,
      traffic: null,
    };
    expect(parseCoordinatorBinary(serialize({ t: 'spawn', groups: [[shard]] }))).toMatchObject({
      t: 'spawn',
    });
    const bad = (groups: unknown) => () =>
      parseCoordinatorBinary(serialize({ t: 'spawn', groups }));
    expect(bad([[{ ...shard, role: 'publisher' }]])).toThrow(/must be a device shard/);
    expect(bad([[{ ...shard, deviceCount: -3 }]])).toThrow(/deviceCount/);
    expect(bad([[{ ...shard, rampDelayUs: -1 }]])).toThrow(/rampDelayUs must be >= 0/);
    expect(bad([[{ ...shard, rampDelayUs: 'soon' }]])).toThrow(/rampDelayUs/);
    expect(bad([[{ ...shard, aheadBy: -5 }]])).toThrow(/aheadBy must be an integer 0-19/);
    expect(bad([[{ ...shard, aheadBy: 2.5 }]])).toThrow(/aheadBy/);
    expect(
      parseCoordinatorBinary(serialize({ t: 'spawn', groups: [[{ ...shard, aheadBy: 5 }]] })),
    ).toMatchObject({ t: 'spawn' });
    expect(
      parseCoordinatorBinary(serialize({ t: 'spawn', groups: [[{ ...shard, rampDelayUs: 5e6 }]] })),
    ).toMatchObject({ t: 'spawn' });
    expect(bad([[{ ...shard, routes: [{ ...shard.routes[0], port: 0 }] }]])).toThrow(/port/);
    expect(bad([])).toThrow(/needs groups/);
    expect(() =>
      parseCoordinatorBinary(serialize({ t: 'to-shard', shard: 0, msg: { type: 'rm -rf' } })),
    ).toThrow(/device shard message/);
    expect(() => parseCoordinatorBinary(Buffer.from('garbage'))).toThrow(/V8-serialized/);
  });

  it("refuses a shard's interval whose self-check figures are not numbers", () => {
    const interval = {
      type: 'device-interval',
      workerIndex: 0,
      open: 1,
      established: 1,
      connectsOk: 1,
      received: 0,
      ...Object.fromEntries(Object.keys(noConnectionEvents()).map((k) => [k, 0])),
      failuresByReason: {},
      atUs: 1,
      trafficCounters: {},
      histograms: {},
      self: { elu: 0.1, lagP99Ms: 1, lagMaxMs: 2, processCpu: 0.2, startLagP99Ms: 3 },
    };
    const relay = (self: unknown) =>
      serialize({ type: 'from-shard', shard: 0, msg: { ...interval, self } });
    expect(parseAgentBinary(relay(interval.self))).toMatchObject({ type: 'from-shard' });
    expect(() => parseAgentBinary(relay({ ...interval.self, startLagP99Ms: 'late' }))).toThrow(
      /startLagP99Ms must be a finite number/,
    );
    expect(() => parseAgentBinary(relay({ ...interval.self, processCpu: Number.NaN }))).toThrow(
      /processCpu must be a finite number/,
    );
  });
});

describe('placing a fleet over agents', () => {
  const routes: DeviceRoute[] = [
    {
      region: 'local',
      first: 0,
      count: 30_000,
      host: '10.0.0.1',
      port: 7000,
      path: '/ws',
      localAddresses: ['127.0.10.1'],
    },
  ];

  it('splits in proportion to what each offers, in whole devices', () => {
    expect(proportionalSplit(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(proportionalSplit(30_000, [10_000, 20_000, 0])).toEqual([10_000, 20_000, 0]);
  });

  it('gives each agent contiguous blocks of global indices, unique across the run, on its own limits', () => {
    const agents = [
      { name: 'a', facts: facts(40_000) },
      { name: 'b', facts: facts(20_000) },
      { name: 'c', facts: { ...facts(20_000), openFiles: 5_000, cores: 4 } },
    ];
    const { placement, processesOf, blocks } = placeOverAgents(
      { devices: 30_000, reserve: 800, threads: 2, routes },
      agents,
      2 ** 31,
    );
    expect(blocks).toEqual([
      { first: 0, count: 15_000, reserveFirst: 30_000, reserveCount: 400 },
      { first: 15_000, count: 7_500, reserveFirst: 30_400, reserveCount: 200 },
      { first: 22_500, count: 7_500, reserveFirst: 30_600, reserveCount: 200 },
    ]);
    // Agent c's file limit of 5,000 makes it two processes.
    expect(processesOf.map((p) => p.length)).toEqual([1, 1, 2]);
    const seen = new Uint8Array(30_800);
    for (const s of placement.shards) {
      for (let g = s.firstDevice; g < s.firstDevice + s.deviceCount; g++) seen[g]!++;
      for (let g = s.reserveFirst; g < s.reserveFirst + s.reserveCount; g++) seen[g]!++;
    }
    expect(seen.every((n) => n === 1)).toBe(true);
    expect(placement.shards.map((s) => s.index)).toEqual(placement.shards.map((_, i) => i));
    // An agent's kernel picks its own source addresses.
    expect(placement.routes[0]?.localAddresses).toEqual([]);
  });

  it('refuses a fleet larger than the agents offer, naming what each offered', () => {
    expect(() =>
      placeOverAgents(
        { devices: 30_000, reserve: 0, threads: 1, routes },
        [
          { name: 'a', facts: facts(10_000) },
          { name: 'b', facts: facts(5_000) },
        ],
        2 ** 31,
      ),
    ).toThrow(/the agents offer 15,000 devices \(a 10,000, b 5,000\) and the run needs 30,000/);
  });
});
