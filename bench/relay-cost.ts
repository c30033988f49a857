/**
 * What relay mode (topology/network/relays.ts: the kernel engine's builtin
 * balancer) costs per connect, beside its floor: N connects at R/s through
 * the relays to an echo node, each echoed once, and the same through the
 * least a Node relay can be (one child process that accepts, connects to the
 * node and pipes both ways: no decision point, no IPC, no counts). The clients
 * and the echo node run in this process in every mode, so the children's CPU
 * (from /proc, user and system apart) is the relays' own. The modes alternate
 * ROUNDS times in one run, so the ratio is read on one box state.
 *
 *   node --import tsx bench/relay-cost.ts RELAYS [N] [RATE] [ROUNDS]
 *
 * RELAYS 0 is the in-process userland fabric (its CPU is this process's:
 * no children). With RELAYS 0 this process holds four descriptors per
 * connection (client, both fabric sides, node), so N stays under
 * (RLIMIT_NOFILE − 200) / 4.
 */

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Network } from '../topology/network/network.js';

async function main(): Promise<void> {
  const relays = Number(process.argv[2] ?? 1);
  const N = Number(process.argv[3] ?? 4000);
  const R = Number(process.argv[4] ?? 1500);
  const rounds = Number(process.argv[5] ?? 1);
  const files = Number(
    readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/)?.[1] ?? 'Infinity',
  );
  if (4 * N + 200 > files) {
    console.error(`${N} connections need ${4 * N + 200} open files here; the limit is ${files}`);
    process.exit(2);
  }
  const node = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (c) => {
      if (c.toString().startsWith('GET /healthz'))
        s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      else s.write(c);
    });
  });
  await new Promise<void>((r) => node.listen({ port: 0, host: '127.0.0.1', backlog: 65535 }, r));
  const port = (node.address() as net.AddressInfo).port;

  const relayed = async (): Promise<Target> => {
    const network = await Network.start({
      host: '127.0.0.1',
      seed: 1,
      regions: [
        {
          name: 'eu',
          algorithm: 'least-connections',
          slowStartMs: 0,
          health: { intervalMs: 2000, timeoutMs: 1000, fall: 2, rise: 2 },
          backends: [{ nodeId: 'n1', host: '127.0.0.1', port }],
        },
      ],
      ...(relays > 0 && { relays: { count: relays, openFiles: 20000 } }),
    });
    return { port: network.addresses().regions.eu!.port, stop: () => network.stop() };
  };
  const floor = async (): Promise<Target> => {
    const child = fork(process.argv[1]!, [], {
      env: { ...process.env, PB_RELAY_FLOOR: String(port) },
    });
    const listening = await new Promise<number>((r) => child.once('message', (m) => r(Number(m))));
    return {
      port: listening,
      stop: async () => {
        child.kill();
        await new Promise((r) => child.once('exit', r));
      },
    };
  };

  const label = relays > 0 ? `relays=${relays}` : 'in-process fabric';
  for (let round = 1; round <= rounds; round++) {
    const f = relays > 0 ? await measure(await floor(), N, R) : undefined;
    const m = await measure(await relayed(), N, R);
    const line = (name: string, x: Measured) =>
      `${name.padEnd(18)} ${x.echoed}/${N} echoed; p50 ${x.p50.toFixed(1)} p99 ${x.p99.toFixed(1)} ms; all CPU ${us(x.all, N)} µs per connect (clients included); children ${us(x.childUser + x.childSys, N)} µs (user ${us(x.childUser, N)}, system ${us(x.childSys, N)})`;
    console.log(`round ${round}`);
    if (f) console.log(line('floor relay', f));
    console.log(line(label, m));
    if (f)
      console.log(
        `  relays / floor relay: ${((m.childUser + m.childSys) / (f.childUser + f.childSys)).toFixed(2)}x`,
      );
  }
  node.close();
  process.exit(0);
}

interface Target {
  port: number;
  stop: () => Promise<void>;
}

interface Measured {
  echoed: number;
  p50: number;
  p99: number;
  /** CPU seconds of this process and its children. */
  all: number;
  childUser: number;
  childSys: number;
}

const us = (seconds: number, n: number) => ((seconds / n) * 1e6).toFixed(0);

const TICK = 100; // USER_HZ

function cpuOf(pid: number): { user: number; sys: number } {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { user: Number(f[11]) / TICK, sys: Number(f[12]) / TICK };
  } catch {
    return { user: 0, sys: 0 };
  }
}

function children(): number[] {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function sample(): { self: number; user: number; sys: number } {
  const self = cpuOf(process.pid);
  let user = 0;
  let sys = 0;
  for (const pid of children()) {
    const c = cpuOf(pid);
    user += c.user;
    sys += c.sys;
  }
  return { self: self.user + self.sys, user, sys };
}

async function measure(target: Target, N: number, R: number): Promise<Measured> {
  const c0 = sample();
  const lat: number[] = [];
  const socks: net.Socket[] = [];
  const t0 = performance.now();
  for (let j = 0; j < N; j++) {
    const due = t0 + (j * 1000) / R;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const s = net.connect(target.port, '127.0.0.1');
    socks.push(s);
    s.on('error', () => {});
    s.once('connect', () => s.write('hi'));
    s.once('data', () => lat.push(performance.now() - due));
  }
  await new Promise((r) => setTimeout(r, 2000));
  const c1 = sample();
  lat.sort((a, b) => a - b);
  for (const s of socks) s.destroy();
  await target.stop();
  // Let the closes finish and TIME_WAIT settle before the next mode.
  await new Promise((r) => setTimeout(r, 2000));
  return {
    echoed: lat.length,
    p50: lat[lat.length >> 1] ?? Number.NaN,
    p99: lat[Math.floor(lat.length * 0.99)] ?? Number.NaN,
    all: c1.self + c1.user + c1.sys - (c0.self + c0.user + c0.sys),
    childUser: c1.user - c0.user,
    childSys: c1.sys - c0.sys,
  };
}

if (process.env.PB_RELAY_FLOOR) {
  // The floor relay: accept, connect to the node, pipe. Nothing else.
  const target = Number(process.env.PB_RELAY_FLOOR);
  const relay = net.createServer((device) => {
    device.on('error', () => {});
    const node = net.connect(target, '127.0.0.1');
    node.on('error', () => device.destroy());
    device.pipe(node).pipe(device);
  });
  relay.listen({ port: 0, host: '127.0.0.1', backlog: 65535 }, () =>
    process.send?.((relay.address() as net.AddressInfo).port),
  );
} else {
  await main();
}
