/**
 * Starts a node's latency link (latency-link.ts) on the node's host, as a
 * process of its own inside the host's namespace, and drives it over IPC.
 */
import { spawn } from 'node:child_process';
import { entryBeside } from '../../core/runtime.js';
import type { KernelHost } from './fabric.js';
import type { LinkMessage } from './latency-link.js';

/** A running latency link. */
export interface LatencyLink {
  /** Where the node is reached through the link. */
  port: number;
  set(delayMs: number, jitterMs: number): void;
  clear(): void;
  /** Resets every connection through the link and each new one, until {@link restore}. */
  cut(): void;
  restore(): void;
  stop(): void;
}

/**
 * Starts the link on `host`, listening on `listenPort` and relaying to the
 * node's `targetPort` on the same host. Resolves once it accepts.
 */
export function startLatencyLink(
  host: KernelHost,
  listenPort: number,
  targetPort: number,
  seed: number,
): Promise<LatencyLink> {
  return startLink({
    name: host.name,
    namespace: host.namespace,
    listen: { host: host.address, port: listenPort },
    target: { host: host.address, port: targetPort },
    seed,
  });
}

/**
 * Starts a link process listening on `listen` (port 0: any free one) and
 * relaying to `target`, inside `namespace` when given (else in this one).
 * Resolves once it accepts, with the port it listens on.
 */
export async function startLink(options: {
  name: string;
  namespace?: string;
  listen: { host: string; port: number };
  target: { host: string; port: number };
  seed: number;
}): Promise<LatencyLink> {
  const entry = entryBeside(import.meta.url, './latency-link', { leanHeap: true });
  const node = [process.execPath, ...entry.execArgv, entry.path];
  const [command, args] =
    options.namespace === undefined
      ? [node[0] as string, node.slice(1)]
      : ['ip', ['netns', 'exec', options.namespace, ...node]];
  const host = { name: options.name };
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: {
      ...process.env,
      PUSHBENCH_LINK: JSON.stringify({
        listen: options.listen,
        target: options.target,
        seed: options.seed,
      }),
    },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`latency link on ${host.name} did not start within 10 s: ${stderr.trim()}`));
    }, 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      const m = /link-listening (\d+)/.exec(d.toString());
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(`latency link on ${host.name} exited (${signal ?? code}): ${stderr.trim()}`),
      );
    });
  });
  const send = (m: LinkMessage) => {
    if (child.connected) child.send(m);
  };
  return {
    port,
    set: (delayMs, jitterMs) => send({ op: 'latency', delayMs, jitterMs }),
    clear: () => send({ op: 'clear' }),
    cut: () => send({ op: 'cut' }),
    restore: () => send({ op: 'restore' }),
    stop: () => {
      child.kill('SIGTERM');
    },
  };
}
