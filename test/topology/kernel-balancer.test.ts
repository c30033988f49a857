/**
 * The kernel balancer (nft DNAT with numgen) on a real fabric: its spread over
 * real backends, a backend change, and what it refuses. Needs root; CI here is
 * root and runs it. Elsewhere it skips, saying why.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelBalancer, kernelAlgorithm } from '../../topology/kernel/balancer.js';
import { KernelFabric } from '../../topology/kernel/fabric.js';
import { establishedByBackend, KernelNetwork } from '../../topology/kernel/network.js';
import { ensureCommand } from '../setup/debian.js';

const isRoot = process.getuid?.() === 0;
const PORT = 7000;

/** Connects through the balancer and reads which backend answered, and whom it saw. */
async function ask(address: string): Promise<{ name: string; saw: string }> {
  const s = connect(PORT, address);
  let text = '';
  s.on('data', (d) => {
    text += d;
  });
  await once(s, 'end');
  s.destroy();
  const [name = '', saw = ''] = text.split(' ');
  return { name, saw };
}

describe("the kernel balancer's sessions per backend", () => {
  it('counts established entries by the reply source, and nothing else', () => {
    const line = (state: string, backend: string, sport: number) =>
      `ipv4     2 tcp      6 431999 ${state} src=10.100.1.2 dst=10.100.0.8 sport=${sport} dport=7000 src=${backend} dst=10.100.0.8 sport=7001 dport=${sport} [ASSURED] mark=0 zone=0 use=2`;
    const text = [
      line('ESTABLISHED', '10.100.0.4', 40001),
      line('ESTABLISHED', '10.100.0.4', 40002),
      line('ESTABLISHED', '10.100.0.5', 40003),
      line('TIME_WAIT', '10.100.0.5', 40004),
      'ipv4     2 tcp      6 117 SYN_SENT src=10.100.1.2 dst=10.100.0.8 sport=40005 dport=7000 [UNREPLIED] src=10.100.0.6 dst=10.100.0.8 sport=7001 dport=40005 mark=0 zone=0 use=2',
      '',
    ].join('\n');
    expect([...establishedByBackend(text)]).toEqual([
      ['10.100.0.4', 2],
      ['10.100.0.5', 1],
    ]);
    expect(establishedByBackend('').size).toBe(0);
  });
});

describe('kernel balancer algorithms', () => {
  it('refuses least-connections and power-of-two in one line', () => {
    expect(kernelAlgorithm('round-robin')).toBe('round-robin');
    expect(() => kernelAlgorithm('least-connections')).toThrow(
      /cannot do least-connections: the kernel does not count connections per backend/,
    );
    expect(() => kernelAlgorithm('power-of-two')).toThrow(/cannot do power-of-two/);
  });
});

describe.skipIf(!isRoot)('kernel balancer spread (root)', () => {
  let fabric: KernelFabric;
  const servers: ChildProcess[] = [];
  const backends: { nodeId: string; address: string; port: number }[] = [];

  beforeAll(async () => {
    await ensureCommand('nft', 'nftables');
    fabric = await KernelFabric.create();
    for (const name of ['n1', 'n2', 'n3']) {
      const host = await fabric.addHost(name);
      const [cmd, args] = fabric.commandOn(host, process.execPath, [
        '-e',
        `require('net').createServer((s) => { s.on('error', () => {}); s.end('${name} ' + s.remoteAddress); })` +
          `.listen(${PORT}, '0.0.0.0', () => console.log('ready'));`,
      ]);
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      await once(child.stdout!, 'data');
      servers.push(child);
      backends.push({ nodeId: name, address: host.address, port: PORT });
    }
  }, 600_000);

  afterAll(async () => {
    for (const s of servers) s.kill('SIGKILL');
    await fabric?.destroy();
  });

  it('round-robin: exactly in turn; the backends see the balancer; a new set applies to new connections', async () => {
    const lb = await KernelBalancer.start(fabric, 'rr', {
      algorithm: 'round-robin',
      port: PORT,
      backends,
    });
    const counts = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const { name, saw } = await ask(lb.address);
      counts.set(name, (counts.get(name) ?? 0) + 1);
      expect(saw).toBe(lb.address);
    }
    expect(Object.fromEntries(counts)).toEqual({ n1: 20, n2: 20, n3: 20 });

    await lb.setBackends(backends.filter((b) => b.nodeId !== 'n2'));
    const after = new Set<string>();
    for (let i = 0; i < 10; i++) after.add((await ask(lb.address)).name);
    expect([...after].sort()).toEqual(['n1', 'n3']);

    await lb.setBackends([]);
    const refused = connect(PORT, lb.address);
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('its health checker: with every backend failing, an empty set resets new connections; failing open keeps them all', async () => {
    // These backends speak no HTTP: every /healthz check fails.
    for (const failOpen of [false, true]) {
      const name = failOpen ? 'fo' : 'fc';
      const net = await KernelNetwork.start(
        fabric,
        [
          {
            name,
            engine: 'kernel',
            algorithm: 'round-robin',
            slowStartMs: 0,
            health: { intervalMs: 50, timeoutMs: 100, fall: 1, rise: 1 },
            failOpen,
            backends: backends.map((b) => ({ nodeId: b.nodeId, host: b.address, port: b.port })),
            devices: 10,
          },
        ],
        () => undefined,
        () => undefined,
        () => [],
        () => [],
        { addresses: [], region: name },
      );
      try {
        const at = (await net.addresses()).regions[name]!;
        await new Promise((r) => setTimeout(r, 800));
        const sample = await net.sample();
        expect(sample.backends.filter((b) => b.region === name).every((b) => !b.healthy)).toBe(
          true,
        );
        if (failOpen) {
          const seen = new Set<string>();
          for (let i = 0; i < 6; i++) seen.add((await ask(at.host)).name);
          expect([...seen].sort()).toEqual(['n1', 'n2', 'n3']);
        } else {
          const refused = connect(at.port, at.host);
          const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
          expect(err.code).toBe('ECONNREFUSED');
        }
      } finally {
        await net.stop();
      }
    }
  });

  it('random: every backend gets a share near a third', async () => {
    const lb = await KernelBalancer.start(fabric, 'rnd', {
      algorithm: 'random',
      port: PORT,
      backends,
    });
    const counts = new Map<string, number>();
    const n = 300;
    for (let i = 0; i < n; i++) {
      const { name } = await ask(lb.address);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    // Binomial(300, 1/3): mean 100, sd 8.2; 60-140 is beyond 4.8 sd.
    for (const b of backends) {
      expect(counts.get(b.nodeId) ?? 0).toBeGreaterThan(60);
      expect(counts.get(b.nodeId) ?? 0).toBeLessThan(140);
    }
  });
});
