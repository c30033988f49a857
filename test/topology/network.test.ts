import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { makeCa, makeServerCert } from '../../core/tls-certs.js';
import { startNetworkProcess } from '../../topology/network/handle.js';
import { probeHealthz } from '../../topology/network/health.js';
import { Link } from '../../topology/network/link.js';
import { Network } from '../../topology/network/network.js';
import type {
  BackendSpec,
  HealthCheckSpec,
  NetworkSample,
  NetworkSpec,
  RegionSpec,
} from '../../topology/network/types.js';

const HOST = '127.0.0.1';
/** The global entry's checks in tests about its failover: a region is out after 100-250 ms. */
const FAST_HEALTH: HealthCheckSpec = { intervalMs: 50, timeoutMs: 150, fall: 2, rise: 1 };
/** Checks slow enough not to matter, for tests that are not about health. */
const QUIET_HEALTH: HealthCheckSpec = { intervalMs: 5000, timeoutMs: 1000, fall: 2, rise: 2 };

/**
 * A stand-in for a reference node: answers `GET /healthz` with its current
 * status, echoes every other connection, and remembers when bytes arrived.
 */
interface FakeNode {
  nodeId: string;
  port: number;
  status: number;
  /** Echo connections currently open on the node. */
  sockets: Set<Socket>;
  /** Host time (ms) at which each echoed chunk arrived. */
  arrivalsMs: number[];
  bytesIn: number;
  spec(): BackendSpec;
  close(): Promise<void>;
}

const servers: Server[] = [];
const networks: Network[] = [];
const clients: Socket[] = [];

function nowMs(): number {
  return monoNowUs() / 1000;
}

async function fakeNode(nodeId: string): Promise<FakeNode> {
  const node: FakeNode = {
    nodeId,
    port: 0,
    status: 200,
    sockets: new Set(),
    arrivalsMs: [],
    bytesIn: 0,
    spec: () => ({ nodeId, host: HOST, port: node.port }),
    close: async () => {
      for (const s of all) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const all = new Set<Socket>();
  const server = createServer((socket) => {
    all.add(socket);
    socket.on('close', () => all.delete(socket));
    socket.on('error', () => {});
    let first = true;
    socket.on('data', (chunk: Buffer) => {
      if (first && chunk.toString('latin1').startsWith('GET /healthz')) {
        socket.end(`HTTP/1.1 ${node.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        return;
      }
      if (first) node.sockets.add(socket);
      first = false;
      node.arrivalsMs.push(nowMs());
      node.bytesIn += chunk.length;
      socket.write(chunk);
    });
    socket.on('close', () => node.sockets.delete(socket));
  });
  servers.push(server);
  server.listen(0, HOST);
  await once(server, 'listening');
  const address = server.address();
  node.port = typeof address === 'object' && address ? address.port : 0;
  return node;
}

function region(name: string, backends: FakeNode[], over: Partial<RegionSpec> = {}): RegionSpec {
  return {
    name,
    algorithm: 'round-robin',
    slowStartMs: 0,
    health: QUIET_HEALTH,
    backends: backends.map((b) => b.spec()),
    ...over,
  };
}

async function startNetwork(spec: Omit<NetworkSpec, 'host' | 'seed'>): Promise<Network> {
  const network = await Network.start({ host: HOST, seed: 7, ...spec });
  networks.push(network);
  return network;
}

/** One fake node `n1` in region eu behind a network in relay mode, and the region's port. */
async function oneNodeRelays(relays: NonNullable<NetworkSpec['relays']>) {
  const n1 = await fakeNode('n1');
  const network = await startNetwork({ regions: [region('eu', [n1])], relays });
  return { n1, network, port: network.addresses().regions.eu!.port };
}

/** Connects to a listener (optionally from a given source address); resolves once connected. */
async function dial(port: number, localAddress?: string): Promise<Socket> {
  const socket = connect({ host: HOST, port, ...(localAddress ? { localAddress } : {}) });
  clients.push(socket);
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Everything a socket receives, and whether it ended or closed. */
function watch(socket: Socket): { data: string; ended: boolean; closed: boolean; error?: string } {
  const seen: { data: string; ended: boolean; closed: boolean; error?: string } = {
    data: '',
    ended: false,
    closed: false,
  };
  socket.on('data', (c: Buffer) => {
    seen.data += c.toString();
  });
  socket.on('end', () => {
    seen.ended = true;
  });
  socket.on('close', () => {
    seen.closed = true;
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    seen.error = err.code ?? err.message;
  });
  return seen;
}

/** Sends `text` and resolves with the host time (ms) its echo completed. */
async function echo(socket: Socket, text: string): Promise<number> {
  let got = '';
  const done = new Promise<number>((resolve, reject) => {
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.includes(text)) {
        socket.off('data', onData);
        resolve(nowMs());
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before echo of ${text}`)));
  });
  socket.write(text);
  return done;
}

/** Pids among `pids` holding a descriptor of the listening socket on `port` (from /proc). */
function relaysListeningOn(port: number, pids: number[]): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A') inodes.add(`socket:[${f[9]}]`);
  }
  return pids.filter((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`));
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  });
}

/** Polls `check` until it holds (these are cross-process/periodic states, not events). */
async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets `ms` pass: used only to show that something does NOT happen. */
function quiet(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function backend(sample: NetworkSample, nodeId: string) {
  const b = sample.backends.find((x) => x.nodeId === nodeId);
  if (!b) throw new Error(`no backend ${nodeId} in sample`);
  return b;
}

/**
 * Regions eu and us of one fake node each behind a global entry in `mode`
 * (homes: 127.0.0.2 in eu, 127.0.0.3 in us), optionally in relay mode.
 */
async function twoRegions(mode: 'latency' | 'health', relays?: NetworkSpec['relays']) {
  const e1 = await fakeNode('e1');
  const u1 = await fakeNode('u1');
  const network = await startNetwork({
    regions: [region('eu', [e1]), region('us', [u1])],
    global: {
      mode,
      health: FAST_HEALTH,
      homeByAddress: { '127.0.0.2': 'eu', '127.0.0.3': 'us' },
    },
    ...(relays && { relays }),
  });
  return { e1, u1, network };
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const n of networks.splice(0)) await n.stop();
  for (const s of servers.splice(0)) {
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

describe('network links', () => {
  it('delays both directions of an existing connection by the injected latency', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({ regions: [region('eu', [n1])] });
    const port = network.addresses().regions.eu!.port;
    const socket = await dial(port);
    // Baseline round trip on the same connection.
    const base: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = nowMs();
      base.push((await echo(socket, `b${i};`)) - t0);
    }
    const baseMs = Math.min(...base);
    network.applyFault({ kind: 'latency', scope: { nodeId: 'n1' }, delayMs: 100, jitterMs: 0 });
    const up: number[] = [];
    const down: number[] = [];
    const extra: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = nowMs();
      const before = n1.arrivalsMs.length;
      const t2 = await echo(socket, `d${i};`);
      const t1 = n1.arrivalsMs[before]!;
      up.push(t1 - t0);
      down.push(t2 - t1);
      extra.push(t2 - t0 - baseMs);
    }
    console.log(
      `latency 100ms/link: up ${up.map((x) => x.toFixed(1))} down ${down.map((x) => x.toFixed(1))} extra rtt ${extra.map((x) => x.toFixed(1))} (base ${baseMs.toFixed(2)})`,
    );
    // Never sooner than injected; a stall of this shared machine can only make one
    // sample later, so the upper bounds are on the median of five.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const x of [...up, ...down]) expect(x).toBeGreaterThanOrEqual(95);
    expect(median(up)).toBeLessThanOrEqual(125);
    expect(median(down)).toBeLessThanOrEqual(125);
    expect(Math.abs(median(extra) - 200)).toBeLessThanOrEqual(40);
  });

  it('keeps bytes in order under jitter', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({ regions: [region('eu', [n1])] });
    const socket = await dial(network.addresses().regions.eu!.port);
    network.applyFault({ kind: 'latency', scope: { region: 'eu' }, delayMs: 20, jitterMs: 20 });
    const seen = watch(socket);
    let sent = '';
    for (let i = 0; i < 50; i++) {
      sent += `${i},`;
      socket.write(`${i},`);
      await quiet(1);
    }
    await until(() => seen.data.length === sent.length);
    expect(seen.data).toBe(sent);
  });

  it('blackholes both directions without closing, then lets bytes and a held-back FIN through on heal', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({ regions: [region('eu', [n1])] });
    const port = network.addresses().regions.eu!.port;
    const a = await dial(port);
    const b = await dial(port);
    await echo(a, 'hello');
    await echo(b, 'hello');
    const id = network.applyFault({ kind: 'blackhole', scope: { nodeId: 'n1' } });
    const seenA = watch(a);
    const seenB = watch(b);
    const inBefore = n1.bytesIn;
    a.write('lost-up');
    for (const s of n1.sockets) s.write('lost-down');
    // The node closes b's connection: the FIN must not cross the partition.
    const [nodeSideB] = [...n1.sockets].slice(-1);
    nodeSideB!.end();
    await quiet(400);
    expect(n1.bytesIn).toBe(inBefore);
    expect(seenA).toEqual({ data: '', ended: false, closed: false });
    expect(seenB).toEqual({ data: '', ended: false, closed: false });
    expect(a.destroyed).toBe(false);
    network.clearFault(id);
    await echo(a, 'again');
    await until(() => seenB.ended);
    expect(seenA.data).toBe('again');
  });
});

describe('fault scopes', () => {
  it('applies a region fault to a backend added later, and heals it with clearScope', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const network = await startNetwork({ regions: [region('eu', [n1])] });
    network.applyFault({ kind: 'blackhole', scope: { region: 'eu' } });
    network.removeBackend('eu', 'n1');
    network.addBackend('eu', n2.spec(), { assumeHealthy: true });
    const socket = await dial(network.addresses().regions.eu!.port);
    const seen = watch(socket);
    socket.write('partitioned');
    await quiet(200);
    expect(n2.bytesIn).toBe(0);
    expect(n1.bytesIn).toBe(0);
    expect(seen).toEqual({ data: '', ended: false, closed: false });
    expect(() => network.applyFault({ kind: 'blackhole', scope: { region: 'mars' } })).toThrow(
      PushbenchError,
    );
    network.clearScope({ region: 'eu' });
    await echo(socket, 'healed');
    expect(n2.bytesIn).toBe('healed'.length);
    expect(backend(network.sample(), 'n1').inRotation).toBe(false);
  });
});

describe('conntrack limit', () => {
  it('holds a connection over the table, keeps established ones flowing, admits it at a SYN retry when room frees', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({
      regions: [region('eu', [n1])],
      synRetriesS: [0.3, 0.6],
    });
    const port = network.addresses().regions.eu!.port;
    const c1 = await dial(port);
    const c2 = await dial(port);
    await echo(c1, 'one');
    await echo(c2, 'two');
    network.applyFault({ kind: 'conntrack-limit', scope: { region: 'eu' }, table: 2 });
    const t0 = nowMs();
    const c3 = await dial(port);
    const seen3 = watch(c3);
    c3.write('three');
    await echo(c1, 'one-again');
    await echo(c2, 'two-again');
    await quiet(100);
    expect(seen3).toEqual({ data: '', ended: false, closed: false });
    expect(backend(network.sample(), 'n1').conntrackHeld).toBe(1);
    c1.end();
    await until(() => network.sample().backends[0]!.connections === 1);
    await until(() => seen3.data === 'three');
    const admittedAfterMs = nowMs() - t0;
    console.log(`conntrack: held connection answered after ${admittedAfterMs.toFixed(0)}ms`);
    expect(admittedAfterMs).toBeGreaterThanOrEqual(290);
    const s = backend(network.sample(), 'n1');
    expect(s.connections).toBe(2);
    expect(s.conntrackHeld).toBe(0);
  });

  it('drops a held connection silently after the last retry when the table stays full', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({
      regions: [region('eu', [n1])],
      synRetriesS: [0.2, 0.4],
    });
    const port = network.addresses().regions.eu!.port;
    const c1 = await dial(port);
    await echo(c1, 'one');
    network.applyFault({ kind: 'conntrack-limit', scope: { nodeId: 'n1' }, table: 1 });
    const t0 = nowMs();
    const c2 = await dial(port);
    const seen = watch(c2);
    c2.write('never');
    await once(c2, 'close');
    const droppedAfterMs = nowMs() - t0;
    expect(droppedAfterMs).toBeGreaterThanOrEqual(390);
    expect(seen.data).toBe('');
    expect(n1.bytesIn).toBe(3);
    const s = backend(network.sample(), 'n1');
    expect(s.conntrackTimedOut).toBe(1);
    expect(s.conntrackHeld).toBe(0);
    expect(s.connections).toBe(1);
  });
});

describe('balancing on a scale-up', () => {
  it('round-robin spreads new connections evenly; least-connections sends them all to the new nodes', async () => {
    const nodes: FakeNode[] = [];
    for (let i = 0; i < 10; i++) nodes.push(await fakeNode(`n${i}`));
    const regionOf = (name: string, algorithm: RegionSpec['algorithm']): RegionSpec => ({
      ...region(name, []),
      algorithm,
      backends: nodes.slice(0, 5).map((n) => ({ ...n.spec(), nodeId: `${name}-${n.nodeId}` })),
    });
    const network = await startNetwork({
      regions: [regionOf('rr', 'round-robin'), regionOf('lc', 'least-connections')],
    });
    const addresses = network.addresses();
    const counts = (name: string) =>
      network
        .sample()
        .backends.filter((b) => b.region === name)
        .map((b) => b.connections);
    const total = (name: string) => counts(name).reduce((a, b) => a + b, 0);
    for (const name of ['rr', 'lc']) {
      const port = addresses.regions[name]!.port;
      await Promise.all(Array.from({ length: 100 }, () => dial(port)));
      await until(() => total(name) === 100);
      expect(counts(name)).toEqual([20, 20, 20, 20, 20]);
      for (const n of nodes.slice(5)) {
        network.addBackend(
          name,
          { ...n.spec(), nodeId: `${name}-${n.nodeId}` },
          { assumeHealthy: true },
        );
      }
      await Promise.all(Array.from({ length: 50 }, () => dial(port)));
      await until(() => total(name) === 150);
    }
    console.log(`scale-up 5->10: rr ${counts('rr')} lc ${counts('lc')}`);
    expect(counts('rr')).toEqual([25, 25, 25, 25, 25, 5, 5, 5, 5, 5]);
    expect(counts('lc')).toEqual([20, 20, 20, 20, 20, 10, 10, 10, 10, 10]);
  });

  it('power-of-two keeps the spread tight and sends most newcomers to the new, empty nodes', async () => {
    const nodes: FakeNode[] = [];
    for (let i = 0; i < 6; i++) nodes.push(await fakeNode(`p${i}`));
    const network = await startNetwork({
      regions: [{ ...region('p2', nodes.slice(0, 3)), algorithm: 'power-of-two' }],
    });
    const port = network.addresses().regions.p2!.port;
    const counts = () => network.sample().backends.map((b) => b.connections);
    const total = () => counts().reduce((a, b) => a + b, 0);
    await Promise.all(Array.from({ length: 60 }, () => dial(port)));
    await until(() => total() === 60);
    // The lesser of two choices never lets one node run far ahead of the others.
    expect(Math.max(...counts()) - Math.min(...counts())).toBeLessThanOrEqual(4);
    for (const n of nodes.slice(3)) network.addBackend('p2', n.spec(), { assumeHealthy: true });
    await Promise.all(Array.from({ length: 30 }, () => dial(port)));
    await until(() => total() === 90);
    const after = counts();
    const newcomers = after.slice(3).reduce((a, b) => a + b, 0);
    // An old node wins only when both choices are old ones (3 of 15 pairs at first): about 24 of 30.
    expect(newcomers).toBeGreaterThanOrEqual(18);
    console.log(`power-of-two 3->6: ${after}`);
  });

  it('ramps a backend added after start from weight 0 towards 1 under slow start', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const network = await startNetwork({
      regions: [region('eu', [n1], { slowStartMs: 2000, algorithm: 'random' })],
    });
    network.addBackend('eu', n2.spec(), { assumeHealthy: true });
    const port = network.addresses().regions.eu!.port;
    await Promise.all(Array.from({ length: 40 }, () => dial(port)));
    await until(() => network.sample().regions.eu!.connections === 40);
    const s = network.sample();
    expect(backend(s, 'n1').weight).toBe(1);
    expect(backend(s, 'n2').weight).toBeLessThan(0.5);
    // At a weight under 0.5 the newcomer gets well under half (expected ~ w/(1+w)).
    expect(backend(s, 'n2').connections).toBeLessThan(backend(s, 'n1').connections / 2);
  });
});

describe('health probes over TLS', () => {
  it('asks a balancer that ends TLS over TLS (whatever certificate it shows); a plain probe of it fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-probe-tls-'));
    try {
      const ca = await makeCa(dir);
      const cert = await makeServerCert(dir, ca, { names: ['push.pushbench.test'] });
      let status = 200;
      const server = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
        res.statusCode = req.url === '/healthz' ? status : 404;
        res.end();
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as { port: number }).port;
      const link = new Link({ latency: null, blackholed: false }, new Rng(1));
      expect(await probeHealthz('127.0.0.1', port, link, 2000, { tls: true })).toBe('up');
      expect(await probeHealthz('127.0.0.1', port, link, 2000)).toBe('down');
      status = 503;
      expect(await probeHealthz('127.0.0.1', port, link, 2000, { tls: true })).toBe('down');
      server.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('health checks', () => {
  it('takes a 503 backend out after fall checks, back after rise, drops a killed one, and closes clients when none is left', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const fast: HealthCheckSpec = { intervalMs: 40, timeoutMs: 200, fall: 2, rise: 3 };
    const network = await startNetwork({ regions: [region('eu', [n1, n2], { health: fast })] });
    const port = network.addresses().regions.eu!.port;
    expect(backend(network.sample(), 'n1').inRotation).toBe(true);
    n1.status = 503;
    await until(() => !backend(network.sample(), 'n1').inRotation);
    // Every new connection now goes to n2.
    const before = backend(network.sample(), 'n2').accepted;
    await Promise.all(Array.from({ length: 4 }, () => dial(port)));
    await until(() => backend(network.sample(), 'n2').accepted === before + 4);
    expect(backend(network.sample(), 'n1').healthy).toBe(false);
    n1.status = 200;
    await until(() => backend(network.sample(), 'n1').inRotation);
    await n2.close();
    await until(() => !backend(network.sample(), 'n2').inRotation);
    n1.status = 503;
    await until(() => !backend(network.sample(), 'n1').inRotation);
    const orphan = await dial(port);
    const seen = watch(orphan);
    await until(() => seen.closed, 1000);
    expect(seen.data).toBe('');
    expect(network.sample().regions.eu!.noBackend).toBe(1);
  });

  it('fails open: with every backend failing its checks it balances over all of them, and over the healthy ones again once any passes', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const fast: HealthCheckSpec = { intervalMs: 40, timeoutMs: 200, fall: 2, rise: 1 };
    const network = await startNetwork({
      regions: [region('eu', [n1, n2], { health: fast, failOpen: true })],
    });
    const port = network.addresses().regions.eu!.port;
    n1.status = 503;
    n2.status = 503;
    await until(
      () => !backend(network.sample(), 'n1').healthy && !backend(network.sample(), 'n2').healthy,
    );
    const accepted = () =>
      backend(network.sample(), 'n1').accepted + backend(network.sample(), 'n2').accepted;
    const before = accepted();
    await Promise.all(Array.from({ length: 4 }, () => dial(port)));
    await until(() => accepted() === before + 4);
    expect(network.sample().regions.eu!.noBackend).toBe(0);
    // The sample says where new connections go: every backend, though none is healthy.
    expect(backend(network.sample(), 'n1').inRotation).toBe(true);
    // One passes again: only it takes new connections.
    n2.status = 200;
    await until(() => backend(network.sample(), 'n2').healthy);
    expect(backend(network.sample(), 'n1').inRotation).toBe(false);
    const n1Before = backend(network.sample(), 'n1').accepted;
    const n2Before = backend(network.sample(), 'n2').accepted;
    await Promise.all(Array.from({ length: 4 }, () => dial(port)));
    await until(() => backend(network.sample(), 'n2').accepted === n2Before + 4);
    expect(backend(network.sample(), 'n1').accepted).toBe(n1Before);
  });

  it('fails checks through a blackholed link and passes a restarted node at its new address', async () => {
    const n1 = await fakeNode('n1');
    const fast: HealthCheckSpec = { intervalMs: 40, timeoutMs: 150, fall: 2, rise: 1 };
    const network = await startNetwork({ regions: [region('eu', [n1], { health: fast })] });
    const id = network.applyFault({ kind: 'blackhole', scope: { nodeId: 'n1' } });
    await until(() => !backend(network.sample(), 'n1').inRotation);
    network.clearFault(id);
    await until(() => backend(network.sample(), 'n1').inRotation);
    const restarted = await fakeNode('n1');
    await n1.close();
    network.addBackend('eu', restarted.spec());
    expect(backend(network.sample(), 'n1').inRotation).toBe(false);
    await until(() => backend(network.sample(), 'n1').inRotation);
    const socket = await dial(network.addresses().regions.eu!.port);
    await echo(socket, 'hi');
    expect(restarted.bytesIn).toBe(2);
  });
});

describe('reset and admission', () => {
  it('resets every connection through a node at once', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const network = await startNetwork({ regions: [region('eu', [n1, n2])] });
    const port = network.addresses().regions.eu!.port;
    const sockets = await Promise.all(Array.from({ length: 6 }, () => dial(port)));
    await Promise.all(sockets.map((s, i) => echo(s, `s${i}`)));
    const seen = sockets.map(watch);
    network.applyFault({ kind: 'reset', scope: { nodeId: 'n1' } });
    await until(() => seen.filter((s) => s.closed).length === 3);
    await quiet(50);
    expect(seen.filter((s) => s.closed)).toHaveLength(3);
    for (const s of seen.filter((x) => x.closed)) expect(s.error).toBe('ECONNRESET');
    const sample = network.sample();
    expect(sample.regions.eu!.resets).toBe(3);
    expect(backend(sample, 'n1').connections).toBe(0);
    expect(backend(sample, 'n2').connections).toBe(3);
  });

  it('resets connections over the admission rate', async () => {
    const n1 = await fakeNode('n1');
    const network = await startNetwork({ regions: [region('eu', [n1])] });
    const port = network.addresses().regions.eu!.port;
    network.applyFault({
      kind: 'admission-rate',
      scope: { region: 'eu' },
      ratePerSec: 0.5,
      burst: 2,
    });
    const sockets = await Promise.all(Array.from({ length: 5 }, () => dial(port)));
    const seen = sockets.map(watch);
    await until(() => network.sample().regions.eu!.admissionRejected === 3);
    await until(() => seen.filter((s) => s.closed).length === 3);
    for (const s of seen.filter((x) => x.closed)) expect(s.error).toBe('ECONNRESET');
    const open = sockets.filter((_, i) => !seen[i]!.closed);
    expect(open).toHaveLength(2);
    for (const s of open) await echo(s, 'ok');
  });
});

describe('node-scoped admission', () => {
  it('limits only the connections assigned to that node', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const network = await startNetwork({ regions: [region('eu', [n1, n2])] });
    const port = network.addresses().regions.eu!.port;
    network.applyFault({
      kind: 'admission-rate',
      scope: { nodeId: 'n1' },
      ratePerSec: 0.1,
      burst: 1,
    });
    // Round-robin alternates: n1 gets 5 of 10 and admits 1; n2 admits all 5.
    let reset = 0;
    for (let i = 0; i < 10; i++) {
      try {
        const socket = await dial(port);
        const seen = watch(socket);
        await quiet(30);
        if (seen.closed) reset++;
      } catch {
        reset++;
      }
    }
    expect(reset).toBe(4);
    await until(() => network.sample().regions.eu!.admissionRejected === 4);
    const s = network.sample();
    expect(backend(s, 'n2').connections).toBe(5);
    expect(backend(s, 'n1').connections).toBe(1);
  });
});

describe('global entry', () => {
  it('in latency mode sends devices home even when home is slow', async () => {
    const { e1, network } = await twoRegions('latency');
    network.applyFault({ kind: 'latency', scope: { region: 'eu' }, delayMs: 300, jitterMs: 0 });
    const port = network.addresses().global!.port;
    const eu = await dial(port, '127.0.0.2');
    const us = await dial(port, '127.0.0.3');
    await Promise.all([echo(eu, 'e'), echo(us, 'u')]);
    expect(network.sample().global!.routed).toEqual({ eu: { eu: 1 }, us: { us: 1 } });
    expect(e1.bytesIn).toBe(1);
  });

  it('in health mode moves devices off a region whose checks time out', async () => {
    const { u1, network } = await twoRegions('health');
    const port = network.addresses().global!.port;
    const before = await dial(port, '127.0.0.2');
    await echo(before, 'x');
    network.applyFault({ kind: 'latency', scope: { region: 'eu' }, delayMs: 300, jitterMs: 0 });
    await until(() => network.sample().global!.healthy.eu === false);
    // The region's own balancer (timeout 1 s) still has its node in rotation.
    expect(backend(network.sample(), 'e1').inRotation).toBe(true);
    const after = await dial(port, '127.0.0.2');
    await echo(after, 'y');
    expect(network.sample().global!.routed).toEqual({ eu: { eu: 1, us: 1 } });
    expect(u1.bytesIn).toBe(1);
  });
});

describe('redispatch (builtin balancer)', () => {
  for (const relays of [undefined, { count: 1, openFiles: null }]) {
    const mode = relays ? 'relay mode' : 'in this process';
    it(`${mode}: a node that refuses before its checks catch it sends each connection on to a live one, counted as its redispatches; without it, each is reset`, async () => {
      for (const redispatch of [true, false]) {
        const live = await fakeNode('live');
        const dead = await fakeNode('dead');
        const network = await startNetwork({
          regions: [region('eu', [dead, live], { algorithm: 'least-connections', redispatch })],
          ...(relays && { relays }),
        });
        // Killed after its first check passed; the next is 5 s away.
        await dead.close();
        const port = network.addresses().regions.eu!.port;
        // One at a time: least-connections then sees the dead node empty and picks it first
        // whenever its last connection is gone. Each either echoes or is closed unanswered.
        const sockets = [];
        let closed = 0;
        for (let i = 0; i < 6; i++) {
          const s = await dial(port);
          sockets.push(s);
          closed += await echo(s, `m${i}`).then(
            () => 0,
            () => 1,
          );
        }
        if (redispatch) {
          expect(closed).toBe(0);
          expect(live.sockets.size).toBe(6);
          await until(() => backend(network.sample(), 'live').connections === 6);
          expect(backend(network.sample(), 'dead')).toMatchObject({
            connections: 0,
            redispatches: 6,
          });
          expect(backend(network.sample(), 'live').redispatches).toBe(0);
        } else {
          expect(closed).toBeGreaterThanOrEqual(1);
          expect(live.sockets.size).toBe(6 - closed);
          expect(backend(network.sample(), 'dead').redispatches).toBeUndefined();
        }
        for (const s of sockets) s.destroy();
      }
    });
  }

  it('resets a device once every node in rotation has refused it', async () => {
    const a = await fakeNode('a');
    const b = await fakeNode('b');
    const network = await startNetwork({
      regions: [region('eu', [a, b], { redispatch: true })],
      relays: { count: 1, openFiles: null },
    });
    await a.close();
    await b.close();
    const seen = watch(await dial(network.addresses().regions.eu!.port));
    await until(() => seen.closed);
    expect(seen.data).toBe('');
    const sample = network.sample();
    // The first refusal went on to the other node; the second had none left.
    expect(backend(sample, 'a').redispatches! + backend(sample, 'b').redispatches!).toBe(1);
    await until(() => network.sample().backends.every((x) => x.connections === 0));
  });
});

/**
 * A node that answers nothing until told: it records each connection's first
 * bytes (healthz aside, answered at once) and echoes them on `answer()`.
 */
async function slowNode(nodeId: string) {
  const unanswered: { socket: Socket; first: string }[] = [];
  const firsts: string[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      const first = chunk.toString('latin1');
      if (first.startsWith('GET /healthz')) {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      firsts.push(first);
      unanswered.push({ socket, first });
      socket.on('data', (c: Buffer) => socket.write(c));
    });
  });
  servers.push(server);
  server.listen(0, HOST);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    spec: (): BackendSpec => ({ nodeId, host: HOST, port }),
    unanswered,
    /** First bytes of every device it got, in arrival order. */
    firsts,
    /** Answers the oldest connection it has not answered. */
    answer(): void {
      const next = unanswered.shift();
      next?.socket.write(next.first);
    },
    destroyAll(): void {
      for (const u of unanswered.splice(0)) u.socket.destroy();
    },
  };
}

describe('maxConnecting (builtin balancer)', () => {
  for (const relays of [undefined, { count: 1, openFiles: null }]) {
    const mode = relays ? 'relay mode' : 'in this process';
    it(`${mode}: a node gets at most maxConnecting connects it has not answered; the rest wait at the balancer in arrival order, and one that gives up there never reaches the node`, async () => {
      const node = await slowNode('slow');
      const network = await startNetwork({
        regions: [{ ...region('eu', []), backends: [node.spec()], maxConnecting: 2 }],
        ...(relays && { relays }),
      });
      const port = network.addresses().regions.eu!.port;
      const devices: Socket[] = [];
      const seen: ReturnType<typeof watch>[] = [];
      for (let i = 0; i < 5; i++) {
        const d = await dial(port);
        seen.push(watch(d));
        d.write(`d${i}`);
        devices.push(d);
        // One at a time, so that their order of arrival is known.
        await quiet(30);
      }
      await until(() => node.firsts.length === 2);
      await quiet(200);
      expect(node.firsts).toEqual(['d0', 'd1']);
      // d2 gives up while it waits: dropped at the balancer, uncounted on its node.
      devices[2]!.end();
      await until(() => backend(network.sample(), 'slow').queueAbandoned === 1);
      await until(() => seen[2]!.closed);
      // Each answer frees a slot for the next device still waiting.
      node.answer();
      await until(() => node.firsts.length === 3);
      await quiet(100);
      expect(node.firsts).toEqual(['d0', 'd1', 'd3']);
      node.answer();
      await until(() => node.firsts.length === 4);
      node.answer();
      node.answer();
      await until(() => [0, 1, 3, 4].every((i) => seen[i]!.data === `d${i}`));
      await quiet(100);
      expect(node.firsts).toEqual(['d0', 'd1', 'd3', 'd4']);
      expect(seen[2]!.data).toBe('');
      await until(() => backend(network.sample(), 'slow').connections === 4);
      expect(backend(network.sample(), 'slow').queueAbandoned).toBe(1);
      // Answered connections relay both ways as usual.
      expect(await echo(devices[4]!, 'more')).toBeGreaterThan(0);
      node.destroyAll();
    });
  }

  for (const relays of [undefined, { count: 1, openFiles: null }]) {
    const mode = relays ? 'relay mode' : 'in this process';
    it(`${mode}: a device that waits past queueTimeoutMs for a connect slot is reset, counted as queueTimedOut, and never reaches the node`, async () => {
      const node = await slowNode('slow');
      const network = await startNetwork({
        regions: [
          { ...region('eu', []), backends: [node.spec()], maxConnecting: 1, queueTimeoutMs: 300 },
        ],
        ...(relays && { relays }),
      });
      const port = network.addresses().regions.eu!.port;
      const first = await dial(port);
      first.write('d0');
      await until(() => node.firsts.length === 1);
      const waitedAt = nowMs();
      const second = await dial(port);
      const seen = watch(second);
      second.write('d1');
      await until(() => seen.closed);
      const waitedMs = nowMs() - waitedAt;
      expect(seen.error).toBe('ECONNRESET');
      expect(seen.data).toBe('');
      // Reset at its timeout, by a sweep every 100 ms.
      expect(waitedMs).toBeGreaterThanOrEqual(290);
      expect(waitedMs).toBeLessThan(2000);
      await until(() => backend(network.sample(), 'slow').queueTimedOut === 1);
      expect(backend(network.sample(), 'slow').queueAbandoned).toBe(0);
      await until(() => backend(network.sample(), 'slow').connections === 1);
      expect(node.firsts).toEqual(['d0']);
      node.destroyAll();
    });
  }

  it('without maxConnecting every connect goes to the node at once, and the sample has no queueAbandoned', async () => {
    const node = await slowNode('slow');
    const network = await startNetwork({
      regions: [{ ...region('eu', []), backends: [node.spec()] }],
    });
    const port = network.addresses().regions.eu!.port;
    for (let i = 0; i < 5; i++) (await dial(port)).write(`d${i}`);
    await until(() => node.firsts.length === 5);
    expect(backend(network.sample(), 'slow').queueAbandoned).toBeUndefined();
    node.destroyAll();
  });
});

describe('relay mode (relays accept and carry the bytes)', () => {
  it('relays accept and carry each connection, counted on its node until the relay reports it finished; a FIN travels on its own', async () => {
    const n1 = await fakeNode('n1');
    const n2 = await fakeNode('n2');
    const network = await startNetwork({
      regions: [region('eu', [n1, n2], { algorithm: 'least-connections' })],
      relays: { count: 2, openFiles: null },
    });
    const port = network.addresses().regions.eu!.port;
    // One at a time, so least-connections alternates: n1, n2, n1, ...
    const sockets: Socket[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await dial(port);
      await echo(s, `m${i}`);
      sockets.push(s);
    }
    const counts = () => network.sample().backends.map((b) => b.connections);
    expect(counts()).toEqual([3, 3]);
    expect(n1.sockets.size + n2.sockets.size).toBe(6);
    expect(n1.bytesIn + n2.bytesIn).toBe(12);
    // Nothing is relayed in this process: each connection is carried by a relay.
    expect(network.sample().regions.eu!.connections).toBe(6);
    // Two of n1's devices leave; the relay's report brings n1 back to 1.
    const onN1 = sockets.filter((_, i) => i % 2 === 0).slice(0, 2);
    for (const s of onN1) s.end();
    await until(() => counts()[0] === 1);
    expect(counts()).toEqual([1, 3]);
    // least-connections sees it: the next two go to n1.
    const more = await Promise.all([dial(port), dial(port)]);
    await Promise.all(more.map((s, i) => echo(s, `n${i}`)));
    expect(counts()).toEqual([3, 3]);
    // A half-close travels on its own once the device is carried: the node still answers
    // after the device's FIN. (Before its node is known, a FIN means the device gave up.)
    const half = await dial(port);
    await echo(half, 'first');
    const seen = watch(half);
    half.end('last');
    await until(() => seen.data === 'last');
  });

  it('a device that gave up before its node was known (its FIN read with its request) is never carried to a node', async () => {
    const { n1, network, port } = await oneNodeRelays({ count: 1, openFiles: null });
    // Another process connects, sends its request and its FIN, and leaves, while this one
    // (the decision point) is blocked: the relay's ask waits, and the device is gone by its answer.
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `const s = require('node:net').connect(${port}, '${HOST}', () => s.end('GET /ws HTTP/1.1\\r\\n\\r\\n', () => setTimeout(() => process.exit(0), 200)));`,
      ],
      { timeout: 10_000 },
    );
    expect(child.status).toBe(0);
    await quiet(500);
    expect(n1.bytesIn).toBe(0);
    expect(n1.sockets.size).toBe(0);
    await until(() => backend(network.sample(), 'n1').connections === 0);
    // One that stays is carried as ever.
    const s = await dial(port);
    await echo(s, 'still here');
    expect(n1.sockets.size).toBe(1);
  });

  it('a device that sends more than the relay reads ahead before its node is known gets all of it relayed, in order', async () => {
    const { port } = await oneNodeRelays({ count: 1, openFiles: null });
    const s = await dial(port);
    const payload = Buffer.alloc(200 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.write(payload);
    // This process (the decision point) does not answer for 300 ms: the relay reads 64 KiB
    // of it meanwhile, then lets the kernel hold the rest.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
    await until(() => got.reduce((n, c) => n + c.length, 0) >= payload.length);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  it('routes through the global entry in health mode and fails over', async () => {
    const { e1, u1, network } = await twoRegions('health', { count: 1, openFiles: null });
    const port = network.addresses().global!.port;
    await echo(await dial(port, '127.0.0.2'), 'x');
    e1.status = 503;
    await until(() => network.sample().global!.healthy.eu === false);
    await echo(await dial(port, '127.0.0.2'), 'y');
    expect(network.sample().global!.routed).toEqual({ eu: { eu: 1, us: 1 } });
    expect([e1.bytesIn, u1.bytesIn]).toEqual([1, 1]);
  });

  it('routes to a region balanced outside the network (relay mode), checked through its balancer, and fails over from it', async () => {
    // The "outside balancer" is a stand-in node: it answers /healthz and echoes.
    const outside = await fakeNode('lb-eu');
    const u1 = await fakeNode('u1');
    const network = await startNetwork({
      regions: [region('us', [u1])],
      global: {
        mode: 'health',
        health: FAST_HEALTH,
        homeByAddress: { '127.0.0.2': 'eu' },
        external: [{ name: 'eu', host: HOST, port: outside.port }],
        order: ['eu', 'us'],
      },
      relays: { count: 1, openFiles: null },
    });
    const port = network.addresses().global!.port;
    await echo(await dial(port, '127.0.0.2'), 'x');
    expect(outside.bytesIn).toBe(1);
    outside.status = 503;
    await until(() => network.sample().global!.healthy.eu === false);
    await echo(await dial(port, '127.0.0.2'), 'y');
    expect(network.sample().global!.routed).toEqual({ eu: { eu: 1, us: 1 } });
    expect(u1.bytesIn).toBe(1);
    // An outside region needs relay mode and health routing, and a name of its own.
    await expect(
      Network.start({
        host: HOST,
        seed: 1,
        regions: [region('us', [u1])],
        global: {
          mode: 'health',
          health: QUIET_HEALTH,
          homeByAddress: {},
          external: [{ name: 'us', host: HOST, port: 1 }],
        },
      }),
    ).rejects.toThrow(
      /^bad network spec: spec\.global\.external needs mode "health" and relay mode \(spec\.relays\) \(and 1 more\)$/,
    );
  });

  it('a relay that dies takes its connections with it: they are uncounted, and the other relay goes on', async () => {
    const { network, port } = await oneNodeRelays({ count: 2, openFiles: null });
    const sockets = await Promise.all(Array.from({ length: 20 }, () => dial(port)));
    await Promise.all(sockets.map((s, i) => echo(s, `d${i}`)));
    const count = () => network.sample().backends[0]!.connections;
    expect(count()).toBe(20);
    const loads = network.relayLoads();
    expect(loads.reduce((n, r) => n + r.connections, 0)).toBe(20);
    // The kernel does not spread accepts evenly: kill the relay that holds the most.
    const busiest = loads.reduce((a, b) => (b.connections > a.connections ? b : a));
    process.kill(busiest.pid, 'SIGKILL');
    // Its share is gone at both ends and from the count.
    await until(
      () =>
        count() === 20 - busiest.connections &&
        sockets.filter((s) => !s.destroyed).length === count(),
    );
    const after = await dial(port);
    await echo(after, 'after');
    expect(count()).toBe(sockets.filter((s) => !s.destroyed).length + 1);
  });

  it('one relay accepts at a time, and the role moves to the emptiest once the accepting one runs ahead', async () => {
    // (240 - 200) / 2 = 20 connections a relay; the role moves 2 ahead of the emptiest.
    const { network, port } = await oneNodeRelays({ count: 3, openFiles: 240 });
    const holders = () =>
      relaysListeningOn(
        port,
        network.relayLoads().map((r) => r.pid),
      );
    await until(() => holders().length === 1);
    for (let i = 0; i < 12; i++) await echo(await dial(port), `m${i}`);
    const loads = network.relayLoads().map((r) => r.connections);
    expect(loads.reduce((a, b) => a + b, 0)).toBe(12);
    // Each took its turn: none ran more than the slack (and a batch in flight) ahead.
    expect(Math.min(...loads)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(3);
    // After each move the old acceptor let go: one relay polls the socket.
    await until(() => holders().length === 1);
  });

  it('opens node connections from its source addresses in turn', async () => {
    const seen = new Set<string>();
    const server = createServer((socket) => {
      seen.add(socket.remoteAddress ?? '');
      socket.on('error', () => {});
      socket.on('data', (c: Buffer) => {
        if (c.toString('latin1').startsWith('GET /healthz')) {
          socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
        } else socket.write(c);
      });
    });
    servers.push(server);
    server.listen(0, HOST);
    await once(server, 'listening');
    const port0 = (server.address() as { port: number }).port;
    const network = await startNetwork({
      regions: [{ ...region('eu', []), backends: [{ nodeId: 'n1', host: HOST, port: port0 }] }],
      relays: { count: 1, openFiles: null, sourceAddresses: ['127.0.0.2', '127.0.0.3'] },
    });
    seen.clear(); // the first health checks come from this process
    const port = network.addresses().regions.eu!.port;
    for (let i = 0; i < 4; i++) await echo(await dial(port), `s${i}`);
    expect([...seen].sort()).toEqual(['127.0.0.2', '127.0.0.3']);
  });

  it('refuses a relay count or file limit out of range in one line', async () => {
    const start = (relays: NetworkSpec['relays']) =>
      Network.start({ host: HOST, seed: 1, regions: [region('eu', [])], relays });
    await expect(start({ count: 0, openFiles: null })).rejects.toThrow(
      /^bad network spec: spec\.relays\.count must be an integer from 1 to 256 \(got 0\)$/,
    );
    await expect(start({ count: 1, openFiles: 100 })).rejects.toThrow(
      /^bad network spec: spec\.relays\.openFiles must be null or an integer over 200 \(got 100\)$/,
    );
  });

  it("resets a device past a relay's capacity, and carries again once there is room", async () => {
    // (206 - 200) / 2 = 3 connections.
    const { network, port } = await oneNodeRelays({ count: 1, openFiles: 206 });
    const three = await Promise.all(Array.from({ length: 3 }, () => dial(port)));
    await Promise.all(three.map((s, i) => echo(s, `c${i}`)));
    expect(network.sample().backends[0]!.connections).toBe(3);
    // Not `dial`: the reset may come before the 'connect' event is seen.
    const fourth = connect({ host: HOST, port });
    clients.push(fourth);
    const seen = watch(fourth);
    fourth.write('x');
    await until(() => seen.closed);
    expect(seen.error).toBe('ECONNRESET');
    expect(seen.data).toBe('');
    // One leaves: the relay takes the next device, as it never stopped accepting.
    three[0]!.end();
    await until(() => network.sample().backends[0]!.connections === 2);
    await echo(await dial(port), 'again');
    expect(network.sample().backends[0]!.connections).toBe(3);
  });

  it('plays no faults in relay mode, and a port out of range is refused by path, in one line', async () => {
    const { n1, network } = await oneNodeRelays({ count: 1, openFiles: null });
    expect(() => network.applyFault({ kind: 'blackhole', scope: { region: 'eu' } })).toThrow(
      /^blackhole: a network in relay mode plays no faults/,
    );
    await expect(
      Network.start({
        host: HOST,
        seed: 1,
        regions: [
          region('eu', [{ ...n1, spec: () => ({ nodeId: 'n1', host: HOST, port: 70_000 }) }]),
        ],
      }),
    ).rejects.toThrow(
      /^bad network spec: spec\.regions\[0\]\.backends\[0\]\.port must be a port from 1 to 65535 \(got 70000\)$/,
    );
  });
});

describe('network process', () => {
  it('starts, answers sample, applies a fault and stops', async () => {
    const n1 = await fakeNode('n1');
    const handle = await startNetworkProcess({
      host: HOST,
      seed: 1,
      regions: [region('eu', [n1])],
    });
    try {
      expect(handle.pid).toBeGreaterThan(0);
      const addresses = await handle.addresses();
      const socket = await dial(addresses.regions.eu!.port);
      await echo(socket, 'via-process');
      const sample = await handle.sample();
      expect(backend(sample, 'n1')).toMatchObject({ connections: 1, inRotation: true });
      const seen = watch(socket);
      const id = await handle.applyFault({ kind: 'reset', scope: { nodeId: 'n1' } });
      expect(typeof id).toBe('string');
      await until(() => seen.closed);
      expect(seen.error).toBe('ECONNRESET');
      expect((await handle.sample()).regions.eu!.resets).toBe(1);
      await expect(
        handle.applyFault({ kind: 'blackhole', scope: { nodeId: 'nope' } }),
      ).rejects.toThrow(/unknown node "nope"/);
    } finally {
      await handle.stop();
    }
    await expect(handle.sample()).rejects.toBeInstanceOf(PushbenchError);
  });

  it('rejects a bad spec with one line', async () => {
    const err = await startNetworkProcess({
      host: HOST,
      seed: 1,
      regions: [{ ...region('eu', []), algorithm: 'fastest' as 'random' }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PushbenchError);
    const pe = err as PushbenchError;
    expect(pe.code).toBe('PB_INTERNAL');
    expect(pe.message).not.toContain('\n');
    expect(pe.message).toMatch(/algorithm must be one of/);
  });
});
