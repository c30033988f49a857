/**
 * A redis-server pushbench starts and owns (`topology.redis: "managed"`), on a
 * free port of this host, so the timeline may kill it (SIGKILL, as a crash) and
 * start it again, empty or with its data. Its files live in a temporary folder
 * of its own, removed at the end; with `appendonly` it persists every write to
 * an append-only file there (fsync before every answer, `appendfsync always`), which a
 * restart with its data replays. The machine's own Redis is never touched.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushbenchError } from '../core/errors.js';

/** Redis's own port, on a kernel-engine host of its own. */
const REDIS_PORT = 6379;

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** One owned redis-server; the same port across restarts, so the nodes' clients reconnect to it. */
export class ManagedRedis {
  private child: ChildProcess | undefined;
  private readonly dir: string;

  private constructor(
    readonly port: number,
    readonly appendonly: boolean,
    /** The kernel-engine host it runs on (its own namespace and address); else this machine's loopback. */
    private readonly host: { namespace: string; address: string } | undefined,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'pushbench-redis-'));
  }

  /**
   * Starts one and resolves once it accepts connections: on a free port of this
   * machine's loopback, or, given a kernel-engine host, on port 6379 of that host's
   * address, inside its namespace (the nodes on their own hosts reach it across the
   * bridge, and a dead run's sweep kills it with the namespace).
   */
  static async start(options: {
    appendonly: boolean;
    host?: { namespace: string; address: string };
  }): Promise<ManagedRedis> {
    const redis = options.host
      ? new ManagedRedis(REDIS_PORT, options.appendonly, options.host)
      : new ManagedRedis(await freePort(), options.appendonly, undefined);
    try {
      await redis.start('empty');
    } catch (err) {
      await redis.stop();
      throw err;
    }
    return redis;
  }

  get url(): string {
    return `redis://${this.host?.address ?? '127.0.0.1'}:${this.port}`;
  }

  /** Its pid while it runs, else 0. */
  get pid(): number {
    return this.child?.pid ?? 0;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /**
   * Starts redis-server: `empty` removes what an earlier life persisted first,
   * `kept` replays its append-only file. Resolves once it accepts connections.
   */
  async start(data: 'empty' | 'kept'): Promise<void> {
    if (this.child) throw new PushbenchError('PB_INTERNAL', 'the managed Redis is already running');
    if (data === 'empty') {
      for (const name of readdirSync(this.dir)) rmSync(join(this.dir, name), { recursive: true });
    }
    const bind = this.host?.address ?? '127.0.0.1';
    const args = ['--port', String(this.port), '--bind', bind, '--save', ''];
    // On its own host it answers the nodes' hosts, not loopback: protected mode would
    // refuse them (no password). Only the run's bridge reaches that address.
    if (this.host) args.push('--protected-mode', 'no');
    args.push('--dir', this.dir, '--appendonly', this.appendonly ? 'yes' : 'no');
    // Every write on disk before Redis answers: a SIGKILL loses nothing it acknowledged.
    if (this.appendonly) args.push('--appendfsync', 'always');
    let child: ChildProcess;
    try {
      // `ip netns exec` execs redis-server in the host's namespace: the pid stays Redis's own,
      // so a SIGKILL is a real crash of it.
      child = this.host
        ? spawn('ip', ['netns', 'exec', this.host.namespace, 'redis-server', ...args], {
            stdio: ['ignore', 'pipe', 'pipe'],
          })
        : spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new PushbenchError('PB_USAGE', `cannot start redis-server: ${(err as Error).message}`);
    }
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new PushbenchError(
              'PB_SERVER_START',
              `redis-server did not start in 10 s: ${out.trim().split('\n').pop()}`,
            ),
          ),
        10_000,
      );
      const read = (d: Buffer) => {
        out = (out + d.toString()).slice(-4000);
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', read);
      child.stderr?.on('data', read);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(
          new PushbenchError(
            'PB_USAGE',
            `topology.redis "managed" needs redis-server (apt-get install redis-server): ${err.message}`,
          ),
        );
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new PushbenchError(
            'PB_SERVER_START',
            `redis-server exited (${code}): ${out.trim().split('\n').pop()}`,
          ),
        );
      });
    });
    this.child = child;
  }

  /** SIGKILL, as a crash; resolves once it is gone. Does nothing when it is not running. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills it and removes its folder. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
