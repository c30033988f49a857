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
  stop(): void;
}

/**
 * Starts the link on `host`, listening on `listenPort` and relaying to the
 * node's `targetPort` on the same host. Resolves once it accepts.
 */
export async function startLatencyLink(
  host: KernelHost,
  listenPort: number,
  targetPort: number,
  seed: number,
): Promise<LatencyLink> {
  const entry = entryBeside(import.meta.url, './latency-link', { leanHeap: true });
  const child = spawn(
    'ip',
    ['netns', 'exec', host.namespace, process.execPath, ...entry.execArgv, entry.path],
    {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        ...process.env,
        PUSHBENCH_LINK: JSON.stringify({
          listen: { host: host.address, port: listenPort },
          target: { host: host.address, port: targetPort },
          seed,
        }),
      },
    },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`latency link on ${host.name} did not start within 10 s: ${stderr.trim()}`));
    }, 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('link-listening')) {
        clearTimeout(timer);
        resolve();
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
    port: listenPort,
    set: (delayMs, jitterMs) => send({ op: 'latency', delayMs, jitterMs }),
    clear: () => send({ op: 'clear' }),
    stop: () => {
      child.kill('SIGTERM');
    },
  };
}
