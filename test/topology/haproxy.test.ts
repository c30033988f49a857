/**
 * A real HAProxy on a kernel fabric: where round-robin and leastconn put
 * connections on a 5 -> 10 scale-up done through the runtime API, a drain, and
 * the per-server sessions read from `show stat`. Needs root (namespaces) and
 * Debian's haproxy, which the test installs when missing; CI here is root and
 * runs it. Elsewhere it skips, saying why.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KernelBackend } from '../../topology/kernel/balancer.js';
import { KernelFabric } from '../../topology/kernel/fabric.js';
import { Haproxy, haproxyBalance } from '../../topology/kernel/haproxy.js';
import { ensureCommand } from '../setup/debian.js';

const isRoot = process.getuid?.() === 0;
const PORT = 7000;

/**
 * A backend: answers HAProxy's `GET /healthz` with 200, and anyone else with
 * its name and the address the connection came from, then holds the connection.
 */
function backendScript(name: string): string {
  return (
    `require('net').createServer((s) => { s.on('error', () => {}); s.once('data', (d) => {` +
    `  if (String(d).startsWith('GET /healthz')) s.end('HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n');` +
    `  else s.write('${name} ' + s.remoteAddress);` +
    `}); }).listen(${PORT}, '0.0.0.0', () => console.log('ready'));`
  );
}

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('HAProxy algorithms', () => {
  it('maps the scenario algorithms to balance lines, and refuses others in one line', () => {
    expect(haproxyBalance('round-robin')).toBe('roundrobin');
    expect(haproxyBalance('least-connections')).toBe('leastconn');
    expect(haproxyBalance('random')).toBe('random(1)');
    expect(haproxyBalance('power-of-two')).toBe('random(2)');
    expect(() => haproxyBalance('hash')).toThrow(/HAProxy has no algorithm for "hash"/);
  });
});

describe.skipIf(!isRoot)('HAProxy on a kernel fabric (root)', () => {
  let fabric: KernelFabric;
  const servers: ChildProcess[] = [];
  const backends: KernelBackend[] = [];
  const held: Socket[] = [];

  beforeAll(async () => {
    await ensureCommand('nft', 'nftables');
    await ensureCommand('haproxy', 'haproxy');
    fabric = await KernelFabric.create();
    for (let i = 1; i <= 10; i++) {
      const host = await fabric.addHost(`n${i}`);
      const [cmd, args] = fabric.commandOn(host, process.execPath, ['-e', backendScript(`n${i}`)]);
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      await once(child.stdout!, 'data');
      servers.push(child);
      backends.push({ nodeId: `n${i}`, address: host.address, port: PORT });
    }
  }, 600_000);

  afterAll(async () => {
    for (const s of held) s.destroy();
    for (const s of servers) s.kill('SIGKILL');
    await fabric?.destroy();
  });

  /** Where HAProxy connected each connection `open` made from, in order. */
  const sourcesSeen: string[] = [];

  /** Opens `n` held connections through `lb`, one after another; returns who answered each. */
  async function open(lb: Haproxy, n: number): Promise<string[]> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const s = connect(PORT, lb.options.bindAddress);
      held.push(s);
      s.on('error', () => {});
      await once(s, 'connect');
      s.write('hi');
      const [d] = (await once(s, 'data')) as [Buffer];
      const [name, from] = d.toString().split(' ');
      names.push(name as string);
      sourcesSeen.push(from as string);
    }
    return names;
  }

  function sessions(lb: Haproxy): Promise<Record<string, number>> {
    return lb
      .servers()
      .then((all) => Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.sessions])));
  }

  async function scaleUp(lb: Haproxy): Promise<void> {
    for (const b of backends.slice(5)) await lb.addServer(b);
    await until(
      () => lb.servers(),
      (all) => Object.values(all).filter((s) => s.status.startsWith('UP')).length === 10,
    );
  }

  for (const [algorithm, newcomers] of [
    ['round-robin', 5],
    ['least-connections', 10],
  ] as const) {
    it(`${algorithm}: 50 connections on 5, runtime scale-up to 10, 50 more: the new ones get ${newcomers} each`, async () => {
      const region = algorithm === 'round-robin' ? 'rr' : 'lc';
      const host = await fabric.addHost(`lb-${region}`);
      const lb = await Haproxy.start({
        name: region,
        host,
        bindAddress: host.address,
        port: PORT,
        algorithm,
        health: { intervalMs: 200, timeoutMs: 500, fall: 2, rise: 1 },
        slowStartMs: 0,
        backends: backends.slice(0, 5),
      });
      try {
        await until(
          () => lb.servers(),
          (all) => Object.values(all).filter((s) => s.status.startsWith('UP')).length === 5,
        );
        await open(lb, 50);
        expect(await sessions(lb)).toEqual({ n1: 10, n2: 10, n3: 10, n4: 10, n5: 10 });
        await scaleUp(lb);
        await open(lb, 50);
        const after = await sessions(lb);
        for (const b of backends.slice(5)) expect(after[b.nodeId], b.nodeId).toBe(newcomers);
        // Round-robin keeps giving the old, full ones their share: the cascade's cause.
        for (const b of backends.slice(0, 5))
          expect(after[b.nodeId], b.nodeId).toBe(20 - newcomers);
      } finally {
        await lb.stop();
        for (const s of held.splice(0)) s.destroy();
      }
    }, 60_000);
  }

  it('several processes on one port (SO_REUSEPORT): the kernel spreads connections over them, each from its own source address; commands reach all, sessions add up', async () => {
    const host = await fabric.addHost('lb-mp');
    const sourceAddresses = await fabric.addHostAddresses(host, 3, 198);
    const lb = await Haproxy.start({
      name: 'mp',
      host,
      bindAddress: host.address,
      port: PORT,
      algorithm: 'least-connections',
      health: { intervalMs: 200, timeoutMs: 500, fall: 2, rise: 1 },
      slowStartMs: 0,
      backends: backends.slice(0, 5),
      processes: 3,
      maxconn: 100,
      sourceAddresses,
    });
    try {
      expect(new Set(lb.pids).size).toBe(3);
      await until(
        () => lb.servers(),
        (all) => Object.values(all).filter((s) => s.status.startsWith('UP')).length === 5,
      );
      sourcesSeen.length = 0;
      await open(lb, 60);
      // Each process took a share of the 60 (the kernel hashes each new connection's ports).
      const perProcess = await Promise.all(
        [0, 1, 2].map(async (i) =>
          Number(/^CurrConns: (\d+)$/m.exec(await lb.commandTo(i, 'show info'))?.[1] ?? -1),
        ),
      );
      expect(perProcess.reduce((a, b) => a + b, 0)).toBe(60);
      expect(perProcess.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
      // Each process connected from its own address, never from the host's.
      const bySource = new Map<string, number>();
      for (const from of sourcesSeen) bySource.set(from, (bySource.get(from) ?? 0) + 1);
      expect([...bySource.keys()].every((a) => sourceAddresses.includes(a))).toBe(true);
      expect(
        sourceAddresses.map((a) => bySource.get(a) ?? 0).sort(),
        `connections per source address, processes held ${perProcess}`,
      ).toEqual([...perProcess].sort());
      // leastconn is exact within a process: per server, at most one apart in each.
      const total = Object.values(await sessions(lb));
      expect(total.reduce((a, b) => a + b, 0)).toBe(60);
      expect(Math.max(...total) - Math.min(...total)).toBeLessThanOrEqual(3);
      // A runtime scale-up and a drain reach every process.
      await lb.addServer(backends[5]!);
      await lb.drain('n1');
      for (const i of [0, 1, 2]) {
        const stat = await lb.commandTo(i, 'show stat');
        expect(stat, `process ${i}`).toMatch(/^be_mp,n6,/m);
        expect(stat, `process ${i}`).toMatch(/^be_mp,n1,.*DRAIN/m);
      }
      await until(
        () => lb.servers(),
        (all) => all.n6?.status.startsWith('UP') === true,
      );
      expect(await open(lb, 30)).not.toContain('n1');
    } finally {
      await lb.stop();
      for (const s of held.splice(0)) s.destroy();
    }
  }, 60_000);

  for (const redispatch of [false, true]) {
    it(`a dead node its checks have not caught yet, leastconn: ${redispatch ? 'with option redispatch every connection lands on a live node, and show stat counts the redispatches' : 'without redispatch HAProxy closes each connection it gave the dead node, after 3 retries'}`, async () => {
      // A node killed after its first check passed: its host's kernel answers each connect
      // with a reset, and its checks are 10 s apart, so it stays UP through the test;
      // leastconn prefers it (0 sessions), as it prefers a node killed a moment ago.
      // HAProxy starts each server UP before any check, one failure from DOWN, so the kill
      // waits for every server's first check to pass (CI once killed it before its first).
      const dead = await fabric.addHost(`dead-${redispatch}`);
      const [cmd, args] = fabric.commandOn(dead, process.execPath, ['-e', backendScript('dead')]);
      const victim = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      await once(victim.stdout!, 'data');
      const host = await fabric.addHost(`lb-rd-${redispatch}`);
      const lb = await Haproxy.start({
        name: `rd${redispatch ? 1 : 0}`,
        host,
        bindAddress: host.address,
        port: PORT,
        algorithm: 'least-connections',
        health: { intervalMs: 10_000, timeoutMs: 500, fall: 3, rise: 1 },
        slowStartMs: 0,
        redispatch,
        backends: [{ nodeId: 'dead', address: dead.address, port: PORT }, ...backends.slice(0, 2)],
      });
      try {
        await until(
          () => lb.servers(),
          (all) =>
            Object.values(all).filter((x) => x.status.startsWith('UP') && /L7OK/.test(x.check))
              .length === 3,
          25_000,
        );
        victim.kill('SIGKILL');
        await once(victim, 'exit');
        const answers: string[] = [];
        for (let i = 0; i < 6; i++) {
          const s = connect(PORT, host.address);
          held.push(s);
          s.on('error', () => {});
          s.once('connect', () => s.write('hi'));
          answers.push(
            await new Promise<string>((resolve) => {
              s.once('data', (d) => resolve(String(d).split(' ')[0] ?? ''));
              s.once('close', () => resolve('closed'));
            }),
          );
        }
        const servers = await lb.servers();
        expect(servers.dead?.status).toMatch(/^UP/);
        // leastconn breaks ties in turn, so about half the connections pick the dead node.
        const closed = answers.filter((a) => a === 'closed').length;
        expect(servers.dead?.sessions).toBe(0);
        if (redispatch) {
          expect(closed).toBe(0);
          expect(answers.every((a) => a === 'n1' || a === 'n2')).toBe(true);
          expect(servers.dead?.redispatches).toBeGreaterThanOrEqual(3);
        } else {
          // Each was tried on the dead node 1 + 3 times, then its connection closed.
          expect(closed).toBeGreaterThanOrEqual(3);
          expect(servers.dead?.retries).toBe(3 * closed);
          expect(servers.dead?.redispatches).toBe(0);
        }
      } finally {
        victim.kill('SIGKILL');
        await lb.stop();
        for (const s of held.splice(0)) s.destroy();
      }
    }, 60_000);
  }

  it('drain: a drained server gets no new connection and keeps those it holds', async () => {
    const host = await fabric.addHost('lb-dr');
    const lb = await Haproxy.start({
      name: 'dr',
      host,
      bindAddress: host.address,
      port: PORT,
      algorithm: 'round-robin',
      health: { intervalMs: 200, timeoutMs: 500, fall: 2, rise: 1 },
      slowStartMs: 0,
      backends: backends.slice(0, 3),
    });
    try {
      await until(
        () => lb.servers(),
        (all) => Object.values(all).filter((s) => s.status.startsWith('UP')).length === 3,
      );
      await open(lb, 6);
      await lb.drain('n1');
      const names = await open(lb, 6);
      expect(names).not.toContain('n1');
      expect(await sessions(lb)).toEqual({ n1: 2, n2: 5, n3: 5 });
      expect((await lb.servers()).n1?.status).toMatch(/DRAIN/);
    } finally {
      await lb.stop();
      for (const s of held.splice(0)) s.destroy();
    }
  }, 60_000);
});
