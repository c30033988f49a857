/**
 * The Node floor of a node of several processes: what N processes sharing one
 * port cost per connect when nothing but raw `net` does the work, paced as a
 * `hold` brings devices (an open model at a steady rate), so that
 * bench/multi-process-cost.ts can print pushbench's node beside it in one run.
 *
 * This file's own minimal code, nothing from the project's hot path:
 * - the node: a primary that forks N workers with node:cluster (SCHED_NONE, as
 *   `pushbench serve --processes N` does), each a `net` server on the shared
 *   port that answers any request with a fixed 101 (no HTTP parser, no token,
 *   no accept key computed);
 * - with `hub`, each worker also keeps one TCP connection to the primary and, per
 *   device it accepts, writes two short lines to it in one write (a registry entry
 *   and a presence event, pushbench's two hub calls per connect); the primary answers
 *   each chunk it reads with one write. That is the least a shared registry costs:
 *   one round trip per connect, no JSON, no WebSocket framing;
 * - the clients: raw `net.connect` sockets in the caller's process writing a fixed
 *   upgrade request, opened every 5 ms as many as are due at `rate`.
 *
 * CPU is read from /proc for the whole process tree (primary and workers). With
 * `acceptors` below N only that many workers listen, the others idle (as
 * `serve --acceptors`), which separates the shared socket's wake-ups from the rest.
 *
 *   node --import tsx bench/multi-process-floor.ts [connections=15000] [rate=2000] [processes=14] [hub=1] [acceptors=processes]
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import cluster from 'node:cluster';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { descendantsOf } from '../core/process-stats.js';
import { openAtRate, processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';
import { openRawDevice, UPGRADE_ANSWER } from './floor-wire.js';

const ROLE_FLAG = '--multi-process-floor';

/** The floor node's CPU per connect, µs, and where it went. */
export interface MultiProcessFloor {
  processes: number;
  /** How many of them listen on the shared port (the others hold nothing). */
  acceptors: number;
  hub: boolean;
  opened: number;
  seconds: number;
  /** Idle CPU of the whole tree, ms per s, before any device. */
  idleMsPerS: number;
  /** Whole tree (primary + workers), µs per connect. */
  nodeUs: number;
  primaryUs: number;
  clientUs: number;
}

function treeCpuSeconds(pid: number): number {
  let sum = 0;
  for (const p of [pid, ...descendantsOf(pid)]) sum += processCpuSeconds(p);
  return sum;
}

/**
 * Starts the floor node (N processes, with or without the hub floor), opens
 * `total` raw devices at `rate` per second and reads the node's CPU per connect.
 */
export async function measureMultiProcessFloor(
  total: number,
  rate: number,
  processes: number,
  hub: boolean,
  acceptors = processes,
  reusePort = false,
): Promise<MultiProcessFloor> {
  const child = fork(
    fileURLToPath(import.meta.url),
    [
      ROLE_FLAG,
      'primary',
      String(processes),
      hub ? '1' : '0',
      String(acceptors),
      reusePort ? '1' : '0',
    ],
    {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const port = await new Promise<number>((resolve) =>
    child.once('message', (m: { port: number }) => resolve(m.port)),
  );
  const pid = child.pid!;
  await sleep(2000);
  const idle0 = treeCpuSeconds(pid);
  await sleep(5000);
  const idleMsPerS = ((treeCpuSeconds(pid) - idle0) / 5) * 1000;

  let open = 0;
  const sockets: net.Socket[] = [];
  const onData = () => {
    open++;
  };
  const tree0 = treeCpuSeconds(pid);
  const primary0 = processCpuSeconds(pid);
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  await openAtRate(
    total,
    rate,
    (i) => sockets.push(openRawDevice(port, i, onData, true)),
    () => open >= total,
  );
  const seconds = (performance.now() - t0) / 1000;
  const per = (s: number) => (s * 1e6) / Math.max(1, open);
  const result: MultiProcessFloor = {
    processes,
    acceptors,
    hub,
    opened: open,
    seconds,
    idleMsPerS,
    nodeUs: per(treeCpuSeconds(pid) - tree0),
    primaryUs: per(processCpuSeconds(pid) - primary0),
    clientUs: per(selfCpuSeconds() - self0),
  };
  for (const s of sockets) s.destroy();
  child.kill('SIGKILL');
  for (const p of descendantsOf(pid)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {}
  }
  return result;
}

// --- the floor node -------------------------------------------------------------------

/** Opens a SO_REUSEPORT listener on 127.0.0.1:port as fd 3+ and execs the rest (Node has no such option before 22.12). */
const REUSEPORT_PERL = `use Socket qw(:all); use Fcntl;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_REUSEPORT, 1) or die "reuseport: $!";
bind($s, pack_sockaddr_in(shift @ARGV, inet_aton("127.0.0.1"))) or die "bind: $!";
listen($s, 65535) or die "listen: $!";
fcntl($s, F_SETFD, 0);
$ENV{FLOOR_LISTEN_FD} = fileno($s);
exec {$ARGV[0]} @ARGV or die "exec: $!";`;

function floorPrimary(
  processes: number,
  hub: boolean,
  acceptors: number,
  reusePort: boolean,
): void {
  // The hub floor: answers each chunk a worker writes with one short write.
  const hubServer = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    s.on('data', (chunk: Buffer) => {
      let lines = 0;
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
      s.write(`ok ${lines}\n`);
    });
  });
  hubServer.listen(0, '127.0.0.1', () => {
    const hubPort = (hubServer.address() as net.AddressInfo).port;
    let ready = 0;
    let port = 0;
    if (reusePort) {
      // Each worker its own listening socket on one port: the kernel hashes each
      // connection to one of them, so a connect wakes one process, not all.
      const start = (i: number) => {
        const w: ChildProcess = spawn(
          'perl',
          [
            '-e',
            REUSEPORT_PERL,
            String(port),
            process.execPath,
            ...process.execArgv,
            fileURLToPath(import.meta.url),
            ROLE_FLAG,
            'worker',
            String(hub ? hubPort : 0),
            '1',
          ],
          { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
        );
        w.once('message', (m: { port: number }) => {
          port = m.port;
          if (++ready === processes) process.send?.({ port });
          else if (i === 0) for (let j = 1; j < processes; j++) start(j);
        });
      };
      start(0);
      return;
    }
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    for (let i = 0; i < processes; i++) {
      cluster.setupPrimary({
        exec: fileURLToPath(import.meta.url),
        args: [ROLE_FLAG, 'worker', String(hub ? hubPort : 0), i < acceptors ? '1' : '0'],
        execArgv: process.execArgv,
      });
      const w = cluster.fork();
      w.on('message', (m: { port: number }) => {
        if (m.port > 0) port = m.port;
        if (++ready === processes) process.send?.({ port });
      });
    }
  });
}

function floorWorker(hubPort: number, accepting: boolean): void {
  const hubSocket =
    hubPort > 0 ? net.connect({ host: '127.0.0.1', port: hubPort, noDelay: true }) : undefined;
  hubSocket?.on('error', () => {});
  hubSocket?.on('data', () => {});
  let seq = 0;
  const id = process.pid;
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(UPGRADE_ANSWER);
      seq++;
      hubSocket?.write(`R dev-${id}-${seq} n.p${id}.${seq} acct-1\nP dev-${id}-${seq} online\n`);
    });
  });
  // Port 0 under cluster: the primary picks one port and every worker shares it.
  const fd = process.env.FLOOR_LISTEN_FD;
  if (fd !== undefined) {
    server.listen({ fd: Number(fd), backlog: 65_535 }, () => {
      process.send?.({ port: (server.address() as net.AddressInfo).port });
    });
  } else if (accepting) {
    server.listen(0, '127.0.0.1', () => {
      process.send?.({ port: (server.address() as net.AddressInfo).port });
    });
  } else process.send?.({ port: 0 });
}

const role = process.argv.indexOf(ROLE_FLAG);
if (role >= 0) {
  const kind = process.argv[role + 1];
  const [a, b, c, d] = process.argv.slice(role + 2);
  if (kind === 'primary') floorPrimary(Number(a), b === '1', Number(c), d === '1');
  else floorWorker(Number(a), b === '1');
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const total = Number(process.argv[2] ?? 15_000);
  const rate = Number(process.argv[3] ?? 2000);
  const processes = Number(process.argv[4] ?? 14);
  const hub = (process.argv[5] ?? '1') === '1';
  const acceptors = Number(process.argv[6] ?? processes);
  const reusePort = process.argv[7] === 'reuseport';
  const f = await measureMultiProcessFloor(total, rate, processes, hub, acceptors, reusePort);
  console.log(
    `floor node of ${f.processes} process(es), ${reusePort ? 'each its own SO_REUSEPORT socket' : `${f.acceptors} accepting`}${f.hub ? ', with the hub floor' : ''}: idle ${f.idleMsPerS.toFixed(0)} ms CPU/s; ` +
      `${f.opened} connects at ${rate}/s in ${f.seconds.toFixed(1)} s: node ${f.nodeUs.toFixed(0)} us per connect (primary ${f.primaryUs.toFixed(0)}), client ${f.clientUs.toFixed(0)} us`,
  );
}
