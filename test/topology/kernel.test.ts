/**
 * The kernel engine's hosts and faults, proved at the socket level: real
 * namespaces, veth and bridge, real nft rules, real TCP stacks. Needs root;
 * CI here is root and runs them. Elsewhere they skip, saying why.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { signToken } from '../../server/token.js';
import { ip } from '../../topology/kernel/commands.js';
import {
  fabricTag,
  KernelFabric,
  type KernelHost,
  sweepDeadFabrics,
} from '../../topology/kernel/fabric.js';
import {
  addKernelFault,
  capBandwidth,
  resetConnections,
  synRetransmitScheduleMs,
} from '../../topology/kernel/faults.js';
import { KernelNetwork } from '../../topology/kernel/network.js';
import { startNodeProcess } from '../../topology/supervisor.js';
import { ensureCommand } from '../setup/debian.js';

const isRoot = process.getuid?.() === 0;
const PORT = 7000;

/** An echo server on `port` of a host, as its own process inside the host's namespace. */
async function echoServer(fabric: KernelFabric, host: string): Promise<ChildProcess> {
  const [cmd, args] = fabric.commandOn(fabric.host(host), process.execPath, [
    '-e',
    `require('net').createServer((s) => { s.on('error', () => {}); s.pipe(s); })` +
      `.listen(${PORT}, '0.0.0.0', () => console.log('ready'));`,
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout!, 'data');
  return child;
}

/**
 * Opens a TCP connection from inside host `from` to port {@link PORT} of host
 * `to`, in a process of its own there; `"<from>-><to> connected"`, `"… timeout"`
 * (no answer in 1.5 s) or `"… <error code>"`.
 */
async function connectFrom(fabric: KernelFabric, from: string, to: string): Promise<string> {
  const [cmd, args] = fabric.commandOn(fabric.host(from), process.execPath, [
    '-e',
    `const s = require('net').connect(${PORT}, '${fabric.host(to).address}');` +
      `s.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });` +
      `s.on('connect', () => { console.log('connected'); process.exit(0); });` +
      `s.on('error', (e) => { console.log(e.code); process.exit(0); });`,
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  await once(child, 'exit');
  return `${from}->${to} ${out.trim()}`;
}

/** Each probe `[from, to, outcome]` (see {@link connectFrom}) ends as it says. */
async function reach(fabric: KernelFabric, cases: [string, string, string][]): Promise<void> {
  expect(await Promise.all(cases.map(([a, b]) => connectFrom(fabric, a, b)))).toEqual(
    cases.map(([a, b, outcome]) => `${a}->${b} ${outcome}`),
  );
}

interface Client {
  socket: Socket;
  connectedAtMs: Promise<number>;
  received: () => string;
  error: () => NodeJS.ErrnoException | undefined;
  closed: () => boolean;
}

function client(address: string): Client {
  const socket = connect(PORT, address);
  let received = '';
  let error: NodeJS.ErrnoException | undefined;
  let closed = false;
  socket.on('data', (d) => {
    received += d.toString();
  });
  socket.on('error', (e) => {
    error = e;
  });
  socket.on('close', () => {
    closed = true;
  });
  const connectedAtMs = once(socket, 'connect').then(() => performance.now());
  connectedAtMs.catch(() => {});
  return {
    socket,
    connectedAtMs,
    received: () => received,
    error: () => error,
    closed: () => closed,
  };
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

async function echoes(c: Client, text: string, ms = 2000): Promise<boolean> {
  const before = c.received().length;
  c.socket.write(text);
  return until(() => c.received().slice(before).includes(text), ms);
}

describe.skipIf(!isRoot)('kernel fabric and faults (root)', () => {
  let fabric: KernelFabric;
  const children: ChildProcess[] = [];
  const clients: Client[] = [];
  const open = (address: string) => {
    const c = client(address);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    await ensureCommand('nft', 'nftables');
    fabric = await KernelFabric.create();
    await fabric.addHost('node-a');
    await fabric.addHost('node-b');
    children.push(await echoServer(fabric, 'node-a'));
  }, 600_000);

  afterAll(async () => {
    for (const c of clients) c.socket.destroy();
    for (const child of children) child.kill('SIGKILL');
    await fabric?.destroy();
  });

  it('gives each host its own namespace and address, reachable across the bridge', async () => {
    const a = fabric.host('node-a');
    expect(a.namespace).toBe(`${fabricTag()}-node-a`);
    const c = open(a.address);
    await c.connectedAtMs;
    expect(await echoes(c, 'hello')).toBe(true);
    c.socket.destroy();
  });

  it('blackhole: the socket stays open and receives nothing; TCP delivers once it is lifted', async () => {
    const c = open(fabric.host('node-a').address);
    await c.connectedAtMs;
    expect(await echoes(c, 'before')).toBe(true);
    const fault = await addKernelFault(fabric.host('node-a'), { kind: 'blackhole' });
    expect(await echoes(c, 'during', 1500)).toBe(false);
    expect(c.closed()).toBe(false);
    await fault.remove();
    // The kernel retransmits what it holds; the echo comes through without a reconnect.
    expect(await until(() => c.received().includes('during'), 10_000)).toBe(true);
    c.socket.destroy();
  });

  it('conntrack-limit: held SYNs get no answer while established flows echo, and are admitted at a retransmission once entries free', async () => {
    const address = fabric.host('node-a').address;
    const fault = await addKernelFault(fabric.host('node-a'), {
      kind: 'conntrack-limit',
      port: PORT,
      table: 3,
    });
    const admitted = [open(address), open(address), open(address)];
    for (const c of admitted) await c.connectedAtMs;
    const startMs = performance.now();
    const held = open(address);
    let connected = false;
    held.connectedAtMs.then(() => {
      connected = true;
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(connected).toBe(false);
    expect(await echoes(admitted[0]!, 'established')).toBe(true);
    // Two connections close; their entries leave the count; the client's own SYN
    // retransmission (not an immediate retry) gets in.
    admitted[1]!.socket.end();
    admitted[2]!.socket.end();
    const closedMs = performance.now();
    const atMs = await held.connectedAtMs;
    expect(atMs).toBeGreaterThan(closedMs);
    // Admitted at one of the kernel's own SYN retransmissions (read from its sysctls).
    const afterMs = atMs - startMs;
    const schedule = synRetransmitScheduleMs();
    const nearest = Math.min(...schedule.map((s) => Math.abs(afterMs - s)));
    expect(
      nearest,
      `admitted ${afterMs.toFixed(0)} ms after the SYN; schedule ${schedule}`,
    ).toBeLessThan(250);
    expect(await echoes(held, 'late')).toBe(true);
    await fault.remove();
    for (const c of [...admitted, held]) c.socket.destroy();
  }, 30_000);

  it("a SYN that gets no answer is admitted at the client kernel's own retransmission times, read from its sysctls", async () => {
    const a = fabric.host('node-a');
    const schedule = synRetransmitScheduleMs();
    // Lifted between two retransmissions past the linear ones (where they exist):
    // the connect completes at the next one, not at the lift.
    const liftMs = (schedule[4] ?? schedule[schedule.length - 1] ?? 5000) + 500;
    const next = schedule.find((t) => t > liftMs);
    const fault = await addKernelFault(a, { kind: 'blackhole' });
    const startMs = performance.now();
    const c = open(a.address);
    setTimeout(() => void fault.remove(), liftMs);
    const atMs = (await c.connectedAtMs) - startMs;
    expect(next, `schedule ${schedule}`).toBeDefined();
    expect(
      Math.abs(atMs - (next ?? 0)),
      `connected at ${atMs.toFixed(0)} ms; schedule ${schedule}`,
    ).toBeLessThan(250);
    c.socket.destroy();
  }, 30_000);

  it('bandwidth: what a node sends and receives is measured within 20 % of the cap', async () => {
    const b = fabric.host('node-b');
    // A sink and source on node-b: sends 1.5 MB to whoever connects, and counts what it is sent.
    const [cmd, args] = fabric.commandOn(b, process.execPath, [
      '-e',
      `require('net').createServer((s) => { s.on('error', () => {});` +
        ` s.once('data', (d) => { if (String(d) === 'down') s.end(Buffer.alloc(1500000));` +
        ` else { let n = d.length; s.on('data', (x) => { n += x.length; if (n >= 1000000) s.end('ok'); }); } }); })` +
        `.listen(${PORT + 1}, '0.0.0.0', () => console.log('ready'));`,
    ]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    await once(child.stdout!, 'data');
    const capBits = 8_000_000;
    const cap = await capBandwidth(b, capBits);
    try {
      // Down: node -> device.
      const down = connect(PORT + 1, b.address);
      let got = 0;
      let firstMs = 0;
      down.on('data', (d) => {
        if (got === 0) firstMs = performance.now();
        got += d.length;
      });
      down.write('down');
      await once(down, 'end');
      const downBits = ((got - 65_536) * 8) / ((performance.now() - firstMs) / 1000);
      // Up: device -> node, 1 MB.
      const up = connect(PORT + 1, b.address);
      await once(up, 'connect');
      const startMs = performance.now();
      up.write('u');
      up.write(Buffer.alloc(1_000_000));
      await once(up, 'data');
      const upBits = (1_000_000 * 8) / ((performance.now() - startMs) / 1000);
      up.destroy();
      expect(
        Math.abs(downBits / capBits - 1),
        `down ${(downBits / 1e6).toFixed(2)} Mbit/s`,
      ).toBeLessThan(0.2);
      expect(Math.abs(upBits / capBits - 1), `up ${(upBits / 1e6).toFixed(2)} Mbit/s`).toBeLessThan(
        0.2,
      );
    } finally {
      await cap.remove();
    }
    // Lifted: the same transfer is far faster than the cap.
    const again = connect(PORT + 1, b.address);
    let n = 0;
    again.on('data', (d) => {
      n += d.length;
    });
    const t0 = performance.now();
    again.write('down');
    await once(again, 'end');
    expect((n * 8) / ((performance.now() - t0) / 1000)).toBeGreaterThan(capBits * 3);
  }, 30_000);

  it('admission-rate: new connections over the rate are refused by the kernel', async () => {
    const address = fabric.host('node-a').address;
    const fault = await addKernelFault(fabric.host('node-a'), {
      kind: 'admission-rate',
      port: PORT,
      ratePerSec: 1,
      burst: 2,
    });
    const burst = Array.from({ length: 8 }, () => open(address));
    await until(
      () => burst.every((c) => c.error() !== undefined || c.socket.readyState === 'open'),
      5000,
    );
    const refused = burst.filter((c) => c.error()?.code === 'ECONNREFUSED').length;
    const ok = burst.filter((c) => c.socket.readyState === 'open').length;
    expect(refused).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(0);
    expect(ok + refused).toBe(8);
    await fault.remove();
    for (const c of burst) c.socket.destroy();
  });

  it('reset: the kernel aborts the node side and the device gets ECONNRESET', async () => {
    const a = fabric.host('node-a');
    const pair = [open(a.address), open(a.address)];
    for (const c of pair) await c.connectedAtMs;
    expect(await resetConnections(a, PORT)).toBeGreaterThanOrEqual(2);
    expect(await until(() => pair.every((c) => c.error()?.code === 'ECONNRESET'), 3000)).toBe(true);
  });

  it('partition: cuts only what it names', async () => {
    const a = fabric.host('node-a');
    const b = fabric.host('node-b');
    const fromB = async () => (await connectFrom(fabric, 'node-b', 'node-a')).split(' ')[1];
    expect(await fromB()).toBe('connected');
    const fault = await addKernelFault(a, { kind: 'partition', peers: [b.address] });
    expect(await fromB()).toBe('timeout');
    // The coordinator's side is not named: it still gets through.
    const c = open(a.address);
    await c.connectedAtMs;
    expect(await echoes(c, 'still')).toBe(true);
    await fault.remove();
    expect(await fromB()).toBe('connected');
    c.socket.destroy();
  });
  it('partition across regions and from peers: cuts each side from the other, and the datastore from the side that does not hold it, nothing else', async () => {
    for (const name of ['eu-1', 'eu-2', 'us-1', 'hub']) {
      await fabric.addHost(name);
      children.push(await echoServer(fabric, name));
    }
    const region = (id: string) => id.slice(0, id.lastIndexOf('-'));
    const net = await KernelNetwork.start(
      fabric,
      [],
      (id) =>
        id === 'hub' ? undefined : { host: fabric.host(id), region: region(id), port: PORT },
      () => undefined,
      (scope) =>
        'nodeId' in scope
          ? [scope.nodeId]
          : ['eu-1', 'eu-2', 'us-1'].filter((id) => region(id) === scope.region),
      () => [],
      { addresses: [fabric.host('hub').address], region: 'eu' },
    );
    try {
      const whole = await net.applyFault({
        kind: 'partition',
        scope: { region: 'us' },
        from: { kind: 'region', region: 'eu' },
      });
      await reach(fabric, [
        ['us-1', 'eu-1', 'timeout'],
        ['eu-2', 'us-1', 'timeout'],
        ['us-1', 'hub', 'timeout'],
        ['eu-1', 'hub', 'connected'],
        ['eu-1', 'eu-2', 'connected'],
      ]);
      // The devices' side (here, the coordinator) is not named: it still reaches every node.
      const c = open(fabric.host('us-1').address);
      await c.connectedAtMs;
      expect(await echoes(c, 'across')).toBe(true);
      c.socket.destroy();
      await net.clearFault(whole);
      await reach(fabric, [
        ['us-1', 'eu-1', 'connected'],
        ['us-1', 'hub', 'connected'],
      ]);
      // One node of the region that holds the datastore: only that node and the other
      // region part; the datastore stays in reach of both.
      const one = await net.applyFault({
        kind: 'partition',
        scope: { nodeId: 'eu-2' },
        from: { kind: 'region', region: 'us' },
      });
      await reach(fabric, [
        ['eu-2', 'us-1', 'timeout'],
        ['us-1', 'eu-1', 'connected'],
        ['us-1', 'hub', 'connected'],
        ['eu-2', 'hub', 'connected'],
      ]);
      await net.clearFault(one);
      await reach(fabric, [['eu-2', 'us-1', 'connected']]);
      // From its peers: only the other nodes of its own region.
      const peers = await net.applyFault({
        kind: 'partition',
        scope: { nodeId: 'eu-1' },
        from: { kind: 'peers' },
      });
      await reach(fabric, [
        ['eu-1', 'eu-2', 'timeout'],
        ['eu-2', 'eu-1', 'timeout'],
        ['eu-1', 'hub', 'connected'],
        ['eu-1', 'us-1', 'connected'],
      ]);
      await net.clearFault(peers);
      // A node with no other node in its region has no peers to be cut from.
      await expect(
        net.applyFault({ kind: 'partition', scope: { nodeId: 'us-1' }, from: { kind: 'peers' } }),
      ).rejects.toThrow(/no node in scope has another node of its region running/);
    } finally {
      await net.stop();
    }
  });

  it('faults standing on a region reach the nodes that join it later, and the other side of a cut names them', async () => {
    // Hosts of its own: us-2 and eu-3 join while faults stand.
    for (const name of ['w-eu-1', 'w-eu-2', 'w-us-1', 'w-us-2', 'w-eu-3', 'w-hub']) {
      await fabric.addHost(name);
      children.push(await echoServer(fabric, name));
    }
    const region = (id: string) => id.slice(2, id.lastIndexOf('-'));
    const running = ['w-eu-1', 'w-eu-2', 'w-us-1'];
    const net = await KernelNetwork.start(
      fabric,
      [],
      (id) =>
        running.includes(id)
          ? { host: fabric.host(id), region: region(id), port: PORT }
          : undefined,
      () => undefined,
      (scope) =>
        'nodeId' in scope ? [scope.nodeId] : running.filter((id) => region(id) === scope.region),
      // The other nodes are spared by a blackhole; the hub is not, here.
      () => running.map((id) => fabric.host(id).address),
      { addresses: [fabric.host('w-hub').address], region: 'eu' },
    );
    const join = async (id: string) => {
      running.push(id);
      await net.nodeJoined(id);
    };
    const ruleset = (host: string) =>
      ip(['netns', 'exec', fabric.host(host).namespace, 'nft', 'list', 'ruleset']);
    try {
      const cut = await net.applyFault({
        kind: 'partition',
        scope: { region: 'us' },
        from: { kind: 'region', region: 'eu' },
      });
      const conntrack = await net.applyFault({
        kind: 'conntrack-limit',
        scope: { region: 'us' },
        table: 5,
        standing: true,
      });
      // Joins the cut region: cut from eu and from the datastore eu holds, not from us-1.
      await join('w-us-2');
      // Joins the other side: cut from both us nodes, not from the hub.
      await join('w-eu-3');
      await reach(fabric, [
        ['w-us-2', 'w-eu-1', 'timeout'],
        ['w-eu-1', 'w-us-2', 'timeout'],
        ['w-us-2', 'w-hub', 'timeout'],
        ['w-us-2', 'w-us-1', 'connected'],
        ['w-eu-3', 'w-us-1', 'timeout'],
        ['w-us-2', 'w-eu-3', 'timeout'],
        ['w-eu-3', 'w-hub', 'connected'],
        ['w-eu-3', 'w-eu-1', 'connected'],
      ]);
      // The region's conntrack table stands on the new node's host too.
      expect(await ruleset('w-us-2')).toMatch(/ct count over 5/);
      await net.clearFault(cut);
      await net.clearFault(conntrack);
      expect(await ruleset('w-us-2')).not.toMatch(/ct count|@peers/);
      await reach(fabric, [['w-us-2', 'w-eu-1', 'connected']]);

      // A blackhole on a region: a node that joins goes dark too, and the dark ones and
      // the newcomer still reach each other (peer links), while the hub reaches none.
      running.splice(running.indexOf('w-us-2'), 1);
      const dark = await net.applyFault({ kind: 'blackhole', scope: { region: 'us' } });
      await join('w-us-2');
      await reach(fabric, [
        ['w-hub', 'w-us-2', 'timeout'],
        ['w-hub', 'w-us-1', 'timeout'],
        ['w-us-1', 'w-us-2', 'connected'],
        ['w-us-2', 'w-us-1', 'connected'],
        ['w-eu-1', 'w-us-2', 'connected'],
      ]);
      await net.clearFault(dark);

      // From its peers: a node that joins the region is cut from the one in scope.
      running.splice(running.indexOf('w-eu-3'), 1);
      const peers = await net.applyFault({
        kind: 'partition',
        scope: { nodeId: 'w-eu-1' },
        from: { kind: 'peers' },
      });
      await join('w-eu-3');
      await reach(fabric, [
        ['w-eu-1', 'w-eu-3', 'timeout'],
        ['w-eu-3', 'w-eu-1', 'timeout'],
        ['w-eu-3', 'w-eu-2', 'connected'],
      ]);
      await net.clearFault(peers);
    } finally {
      await net.stop();
    }
  });
});

/** Runs `test` with one host on a new kernel fabric, destroyed after it. */
async function onKernelHost(name: string, test: (host: KernelHost) => Promise<void>) {
  await ensureCommand('nft', 'nftables');
  const fabric = await KernelFabric.create();
  try {
    await test(await fabric.addHost(name));
  } finally {
    await fabric.destroy();
  }
}

describe.skipIf(!isRoot)('a reference node as a kernel host (root)', () => {
  it('runs in its own namespace, serves devices and pushes across the bridge, and dies to a real SIGKILL', async () => {
    await onKernelHost('node-1', async (host) => {
      const secret = 'kernel-secret';
      const node = await startNodeProcess({
        nodeId: 'node-1',
        secret,
        apiKey: 'kernel-key',
        host: host.address,
        namespace: host.namespace,
        heartbeatIntervalMs: 10_000,
        heartbeatTimeoutMs: 30_000,
      });
      expect(node.host).toBe(host.address);
      // The node's process sees only its host's network: its sockets are in that namespace.
      const out = await ip(['netns', 'identify', String(node.pid)]);
      expect(out.trim()).toBe(host.namespace);

      const token = signToken(
        { deviceId: 'd1', accountId: 'a', expiresAtSec: Date.now() / 1000 + 600 },
        secret,
      );
      const ws = new WebSocket(`${node.wsUrl}?token=${token}`);
      await once(ws, 'open');
      const got = once(ws, 'message');
      const res = await fetch(`${node.httpUrl}/v1/push/d1`, {
        method: 'POST',
        headers: { authorization: 'Bearer kernel-key', 'content-type': 'application/json' },
        body: JSON.stringify({ payload: 'across' }),
      });
      expect(res.status).toBe(200);
      expect(String((await got)[0])).toContain('across');

      const closed = once(ws, 'close');
      process.kill(node.pid, 'SIGKILL');
      const exit = await node.exited;
      expect(exit.signal).toBe('SIGKILL');
      const [code] = (await closed) as [number];
      expect(code).toBe(1006);
    });
  }, 60_000);

  it('with limits, enters its cgroups and open-file limit outside its namespace (`ip netns exec` hides /sys/fs/cgroup), then runs in the namespace under them', async () => {
    await onKernelHost('node-lim', async (host) => {
      const node = await startNodeProcess({
        nodeId: 'node-lim',
        secret: 's',
        apiKey: 'k',
        host: host.address,
        namespace: host.namespace,
        heartbeatIntervalMs: 10_000,
        heartbeatTimeoutMs: 30_000,
        limits: { cpu: 0.5, memoryBytes: 512 * 2 ** 20, openFiles: 500 },
      });
      try {
        expect((await ip(['netns', 'identify', String(node.pid)])).trim()).toBe(host.namespace);
        const cpu = node.limits.find((l) => l.limit === 'cpu');
        if (cpu?.enforced) {
          expect(node.cgroupPaths.length).toBeGreaterThan(0);
          for (const dir of node.cgroupPaths)
            expect(readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n')).toContain(
              String(node.pid),
            );
        }
        const files = readFileSync(`/proc/${node.pid}/limits`, 'utf8')
          .split('\n')
          .find((l) => l.startsWith('Max open files'));
        expect(files?.split(/\s+/).slice(3, 5)).toEqual(['500', '500']);
        expect((await fetch(`${node.httpUrl}/healthz`)).status).toBe(200);
      } finally {
        await node.stop();
      }
      for (const dir of node.cgroupPaths) expect(existsSync(dir)).toBe(false);
    });
  }, 60_000);
});

describe.skipIf(!isRoot)('kernel fabric cleanup (root)', () => {
  it('removes everything on destroy, and sweeps what a SIGKILLed owner left', async () => {
    const own = await KernelFabric.create();
    await own.addHost('x');
    const tag = own.tag;
    await own.destroy();
    expect(await ip(['netns', 'list'])).not.toContain(`${tag}-`);
    expect(existsSync(`/sys/class/net/${tag}r`)).toBe(false);

    // A separate process makes a fabric and is killed before it can clean up.
    const script = fileURLToPath(new URL('../helpers/kernel-fabric-owner.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const [deadTag = '', orphanPid = ''] = line.toString().trim().split(' ');
    // Running, not a zombie: an orphan killed here may wait for an init that never reaps it.
    const alive = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
      } catch {
        return false;
      }
    };
    expect(alive(Number(orphanPid))).toBe(true);
    expect(deadTag).toBe(`pb${child.pid}`);
    expect(await ip(['netns', 'list'])).toContain(`${deadTag}-h1`);
    child.kill('SIGKILL');
    await once(child, 'exit');
    const removed = await sweepDeadFabrics();
    expect(removed).toContain(deadTag);
    // What still ran on the dead run's hosts is killed with them.
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(Number(orphanPid))).toBe(false);
    expect(await ip(['netns', 'list'])).not.toContain(`${deadTag}-`);
    expect(existsSync(`/sys/class/net/${deadTag}r`)).toBe(false);
  }, 60_000);
});

describe.skipIf(isRoot)('kernel engine without root', () => {
  it.skip('needs root: network namespaces, veth and nft rules (CI here is root and runs these)', () => {});
});
