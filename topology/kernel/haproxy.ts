/**
 * A real HAProxy (Debian's `haproxy`, 2.6 here) as a region's balancer, on a
 * fabric host of its own (fabric.ts) or in this namespace, driven through its
 * runtime API (the admin stats socket):
 *
 * - algorithms: round-robin -> `roundrobin`, least-connections -> `leastconn`,
 *   random -> `random(1)`, power-of-two -> `random(2)`;
 * - health: `option httpchk GET /healthz` with the scenario's inter/fall/rise,
 *   and `slowstart` for a backend's ramp;
 * - scale-up: `add server` (it starts in maintenance), `enable health`, then
 *   `enable server`;
 * - drain: `set server … state drain` (no new connections, the established
 *   stay), then `state maint`;
 * - per-server current sessions: `show stat`, column `scur`.
 *
 * One HAProxy process holds two file descriptors per proxied connection and is
 * bound by the per-process open-file limit (20,000 here: ~9,900 connections).
 * A region that needs more runs several processes with one configuration,
 * all bound to the same address and port (HAProxy sets SO_REUSEPORT on Linux):
 * the kernel spreads new connections over them by a hash of the 4-tuple. Each
 * process balances only the connections it accepted and health-checks on its
 * own, so leastconn is exact per process and, across them, right to within
 * the spread of the kernel's hash; every runtime command goes to all of them
 * and `servers()` adds up their sessions.
 *
 * Source addresses. From one address, a host has one ephemeral port range per
 * node (28,232 ports here), so one address caps a region at that many
 * connections per node. Given `sourceAddresses`, each process opens its node
 * connections and health checks from its own address (the backend's `source`):
 * a process never holds more than its `maxconn`, well inside one range.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushbenchError } from '../../core/errors.js';
import type { KernelBackend } from './balancer.js';
import { fabricTag, type KernelHost } from './fabric.js';

/** The scenario's algorithms, as HAProxy's `balance` names them. */
const BALANCE: Record<string, string> = {
  'round-robin': 'roundrobin',
  'least-connections': 'leastconn',
  random: 'random(1)',
  'power-of-two': 'random(2)',
};

/** HAProxy's `balance` line for a scenario algorithm; PB_USAGE for an unknown one. */
export function haproxyBalance(algorithm: string): string {
  const balance = BALANCE[algorithm];
  if (balance === undefined) {
    throw new PushbenchError(
      'PB_USAGE',
      `HAProxy has no algorithm for ${JSON.stringify(algorithm)}`,
    );
  }
  return balance;
}

/** How an HAProxy balancer is set up. */
export interface HaproxyOptions {
  /** Its region; names the frontend and backend. */
  name: string;
  /** The fabric host it runs on; undefined: this namespace. */
  host?: KernelHost;
  /** Address and port devices connect to. */
  bindAddress: string;
  port: number;
  algorithm: string;
  health: { intervalMs: number; timeoutMs: number; fall: number; rise: number };
  /** A backend ramps its weight over this after it comes up; 0: none. */
  slowStartMs: number;
  /** Retry a connect that fails on another server (`retries 3`, `option redispatch 1`). */
  redispatch?: boolean;
  backends: KernelBackend[];
  /** HAProxy processes sharing the port; default 1 ({@link haproxyProcesses}). */
  processes?: number;
  /** Connections one process takes (`maxconn`); default from the open-file limit ({@link haproxyMaxconn}). */
  maxconn?: number;
  /**
   * Addresses of `host` the processes open node connections from, process i
   * from address i; as many as there are processes. Default: the host's own.
   */
  sourceAddresses?: string[];
  /**
   * End devices' TLS here (`bind … ssl crt`): the certificate and key in one
   * PEM file, and optionally a `tls-ticket-keys` file every process shares
   * (without it each process issues and resumes only its own tickets).
   */
  tls?: { pemFile: string; ticketKeysFile?: string };
}

/** File descriptors an HAProxy process keeps besides two per connection: listeners, checks, logs. */
const HAPROXY_FD_OVERHEAD = 200;

/** Connections one HAProxy process can carry under `openFiles` (its inherited RLIMIT_NOFILE). */
export function haproxyMaxconn(openFiles: number | null): number {
  // Without a known limit, HAProxy's own default ceiling.
  if (openFiles === null) return 9900;
  return Math.max(1, Math.floor((openFiles - HAPROXY_FD_OVERHEAD) / 2));
}

/** HAProxy processes a region of `devices` connections needs under `openFiles`. */
export function haproxyProcesses(devices: number, openFiles: number | null): number {
  return Math.max(1, Math.ceil(devices / haproxyMaxconn(openFiles)));
}

const SERVER_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** The `bind` line's TLS words, or none. */
function bindTls(tls: HaproxyOptions['tls']): string {
  if (tls === undefined) return '';
  const tickets = tls.ticketKeysFile === undefined ? '' : ` tls-ticket-keys ${tls.ticketKeysFile}`;
  return ` ssl crt ${tls.pemFile}${tickets}`;
}

/** A server's health check and ramp, as `server` lines and `add server` take them. */
function serverParams(options: HaproxyOptions): string {
  const h = options.health;
  const slow = options.slowStartMs > 0 ? ` slowstart ${options.slowStartMs}ms` : '';
  return `check inter ${h.intervalMs}ms fall ${h.fall} rise ${h.rise}${slow}`;
}

function serverName(nodeId: string): string {
  if (!SERVER_NAME.test(nodeId)) throw new RangeError(`bad node id for HAProxy: ${nodeId}`);
  return nodeId;
}

/** One server as `show stat` shows it, summed over the processes. */
export interface HaproxyServer {
  sessions: number;
  status: string;
  /** Its last health check as the first process saw it (`check_status`: `INI` before any, `L7OK`, `L4CON`, ...; `* ` while one runs). */
  check: string;
  /** Connects to it that failed and were retried (`wretr`), since start. */
  retries: number;
  /** Connects that failed on it and went to another server (`wredis`), since start. */
  redispatches: number;
}

/** A region's running HAProxy processes and their runtime API. */
export class Haproxy {
  private stopped = false;

  private constructor(
    readonly options: HaproxyOptions,
    private readonly dir: string,
    private readonly children: ReturnType<typeof spawn>[],
    /** Each process's admin socket, in the order of `children`. */
    readonly socketPaths: string[],
  ) {}

  /** The first process's pid (the HAProxy process itself: `ip netns exec` and `-db` keep it). */
  get pid(): number {
    return this.children[0]?.pid ?? 0;
  }

  /** Every process's pid. */
  get pids(): number[] {
    return this.children.map((c) => c.pid ?? 0);
  }

  /** Writes the configuration, starts the processes in the foreground and waits for their APIs. */
  static async start(options: HaproxyOptions): Promise<Haproxy> {
    const balance = haproxyBalance(options.algorithm);
    const processes = Math.max(1, options.processes ?? 1);
    const maxconn = options.maxconn ?? 9900;
    const sources = options.sourceAddresses;
    if (sources !== undefined && sources.length !== processes) {
      throw new RangeError(
        `${processes} HAProxy processes need as many source addresses, got ${sources.length}`,
      );
    }
    // Named by the run's tag, so a dead run's sweep removes it too (fabric.ts).
    const dir = mkdtempSync(join(tmpdir(), `pushbench-haproxy-${fabricTag()}-${options.name}-`));
    const socketPaths = Array.from({ length: processes }, (_, i) => join(dir, `admin-${i}.sock`));
    const config = [
      'global',
      // Each process's own socket, from its environment.
      // biome-ignore lint/suspicious/noTemplateCurlyInString: HAProxy expands "${VAR}" from its environment
      '  stats socket "${PB_HAPROXY_SOCKET}" mode 600 level admin',
      `  maxconn ${maxconn}`,
      'defaults',
      '  mode tcp',
      `  timeout connect ${options.health.timeoutMs}ms`,
      `  timeout check ${options.health.timeoutMs}ms`,
      '  timeout client 24h',
      '  timeout server 24h',
      '  timeout tunnel 24h',
      `frontend fe_${options.name}`,
      `  bind ${options.bindAddress}:${options.port}${bindTls(options.tls)}`,
      `  default_backend be_${options.name}`,
      `backend be_${options.name}`,
      `  balance ${balance}`,
      '  option httpchk GET /healthz',
      // Each of the 3 retries of a failed connect goes to another server (HAProxy's own
      // default: the same server 3 times, then the client's connection is closed).
      ...(options.redispatch ? ['  retries 3', '  option redispatch 1'] : []),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: HAProxy expands "${VAR}" from its environment
      ...(sources === undefined ? [] : ['  source "${PB_HAPROXY_SOURCE}"']),
    ];
    for (const b of options.backends) {
      config.push(
        `  server ${serverName(b.nodeId)} ${b.address}:${b.port} ${serverParams(options)}`,
      );
    }
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, `${config.join('\n')}\n`);
    const argv = ['-db', '-f', file];
    const stderr: string[] = [];
    const children = socketPaths.map((socketPath, i) => {
      const env = {
        ...process.env,
        PB_HAPROXY_SOCKET: socketPath,
        ...(sources !== undefined && { PB_HAPROXY_SOURCE: sources[i] }),
      };
      const child =
        options.host === undefined
          ? spawn('haproxy', argv, { stdio: ['ignore', 'ignore', 'pipe'], env })
          : spawn('ip', ['netns', 'exec', options.host.namespace, 'haproxy', ...argv], {
              stdio: ['ignore', 'ignore', 'pipe'],
              env,
            });
      stderr[i] = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr[i] = ((stderr[i] ?? '') + d.toString()).slice(-4000);
      });
      return child;
    });
    const haproxy = new Haproxy(options, dir, children, socketPaths);
    const deadline = Date.now() + 10_000;
    for (const [i, child] of children.entries()) {
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          await haproxy.stop();
          throw new Error(
            `haproxy exited at start: ${(stderr[i] ?? '').trim().split('\n').slice(-2).join(' | ')}`,
          );
        }
        try {
          await haproxy.commandTo(i, 'show info');
          break;
        } catch {
          if (Date.now() > deadline) {
            await haproxy.stop();
            throw new Error(
              `haproxy did not open its API within 10 s: ${(stderr[i] ?? '').trim()}`,
            );
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    return haproxy;
  }

  /** Sends one runtime API command to every process; resolves with the first one's answer. */
  async command(line: string): Promise<string> {
    const answers = await Promise.all(this.socketPaths.map((_, i) => this.commandTo(i, line)));
    return answers[0] ?? '';
  }

  /** Sends one runtime API command to process `i` and resolves with its answer. */
  async commandTo(i: number, line: string): Promise<string> {
    const socket = connect(this.socketPaths[i] as string);
    let out = '';
    socket.on('data', (d) => {
      out += d;
    });
    await once(socket, 'connect');
    socket.end(`${line}\n`);
    await once(socket, 'close');
    return out;
  }

  /** Adds a backend at runtime: added in maintenance, its health check on, then enabled. */
  async addServer(b: KernelBackend): Promise<void> {
    const id = `be_${this.options.name}/${serverName(b.nodeId)}`;
    await this.expectOk(`add server ${id} ${b.address}:${b.port} ${serverParams(this.options)}`);
    await this.expectOk(`enable health ${id}`);
    await this.expectOk(`enable server ${id}`);
  }

  /** A server already known (a restarted node): its address again, then back in rotation. */
  async readyAgain(b: KernelBackend): Promise<void> {
    const id = `be_${this.options.name}/${serverName(b.nodeId)}`;
    await this.expectOk(`set server ${id} addr ${b.address} port ${b.port}`);
    await this.expectOk(`set server ${id} state ready`);
  }

  /** No new connections for the server; those it holds stay. */
  async drain(nodeId: string): Promise<void> {
    await this.expectOk(`set server be_${this.options.name}/${serverName(nodeId)} state drain`);
  }

  /** Out of rotation entirely. */
  async maint(nodeId: string): Promise<void> {
    await this.expectOk(`set server be_${this.options.name}/${serverName(nodeId)} state maint`);
  }

  /**
   * Current sessions per server (`show stat` scur), its connects retried
   * (`wretr`) and redispatched to another server (`wredis`) since start, added
   * up over the processes, and each server's status as the first process sees it.
   */
  async servers(): Promise<Record<string, HaproxyServer>> {
    const out: Record<string, HaproxyServer> = {};
    for (const i of this.socketPaths.keys()) {
      const csv = await this.commandTo(i, 'show stat');
      const lines = csv.split('\n').filter((l) => l.trim() !== '');
      const header = (lines[0] ?? '').replace(/^# /, '').split(',');
      const col = (name: string) => header.indexOf(name);
      const [px, sv, scur, status] = [col('pxname'), col('svname'), col('scur'), col('status')];
      const [wretr, wredis, check] = [col('wretr'), col('wredis'), col('check_status')];
      const count = (f: string[], i: number) => (i < 0 ? 0 : Number(f[i]) || 0);
      for (const line of lines.slice(1)) {
        const f = line.split(',');
        if (f[px] !== `be_${this.options.name}` || f[sv] === 'BACKEND' || f[sv] === 'FRONTEND')
          continue;
        const name = f[sv] as string;
        const seen = out[name] ?? {
          sessions: 0,
          status: f[status] ?? '',
          check: f[check] ?? '',
          retries: 0,
          redispatches: 0,
        };
        seen.sessions += count(f, scur);
        seen.retries += count(f, wretr);
        seen.redispatches += count(f, wredis);
        out[name] = seen;
      }
    }
    return out;
  }

  /** Stops every process (SIGTERM, then SIGKILL after 2 s) and removes the folder. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Sends `line` to every process; throws with the first error any of them answers. */
  private async expectOk(line: string): Promise<void> {
    const answers = await Promise.all(this.socketPaths.map((_, i) => this.commandTo(i, line)));
    for (const raw of answers) {
      const answer = raw.trim();
      // Success answers are empty or informational; errors name themselves.
      if (
        /^(?:unknown|no such|error|require|invalid|'?[a-z ]+' expects)/i.test(answer) ||
        /[Ee]rror/.test(answer)
      ) {
        throw new Error(`haproxy: ${line}: ${answer.split('\n')[0]}`);
      }
    }
  }
}
