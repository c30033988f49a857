import { execa } from 'execa';
import { PushbenchError } from '../../core/errors.js';
import { entryBeside } from '../../core/runtime.js';
import {
  type NetworkOp,
  type NetworkReply,
  type NetworkRequest,
  type NetworkResults,
  parseNetworkReply,
} from './messages.js';
import type {
  AddBackendOptions,
  BackendSpec,
  FaultScope,
  NetworkAddresses,
  NetworkFault,
  NetworkSample,
  NetworkSpec,
} from './types.js';

/** How long one control request may take before it fails. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How long the process may take to print its listening line. */
const START_TIMEOUT_MS = 15_000;
const LISTENING = /^network-listening (\{.*\})$/m;

/** The network running in its own process: the {@link Network} methods, over IPC. */
export interface NetworkHandle {
  pid: number;
  addresses(): Promise<NetworkAddresses>;
  addBackend(region: string, backend: BackendSpec, opts?: AddBackendOptions): Promise<void>;
  removeBackend(region: string, nodeId: string): Promise<void>;
  applyFault(fault: NetworkFault): Promise<string>;
  clearFault(id: string): Promise<void>;
  clearScope(scope: FaultScope): Promise<void>;
  sample(): Promise<NetworkSample>;
  /** Stops the network and waits for the process to exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

type Args<Op extends NetworkOp> = Extract<NetworkRequest, { op: Op }>['args'];

/**
 * Starts the network fabric as a child process and resolves once it listens.
 * Rejects with a one-line PB_INTERNAL error if it exits first (a bad spec, a
 * port in use); each request rejects the same way on failure or after 10 s.
 */
export async function startNetworkProcess(
  spec: NetworkSpec,
  /** Runs it inside this network namespace (a host of the kernel fabric). */
  namespace?: string,
): Promise<NetworkHandle> {
  const entry = entryBeside(import.meta.url, './process', { leanHeap: true });
  const node = [process.execPath, ...entry.execArgv, entry.path];
  const [command, args] =
    namespace === undefined
      ? [node[0] as string, node.slice(1)]
      : ['ip', ['netns', 'exec', namespace, ...node]];
  const child = execa(command, args, {
    env: { PUSHBENCH_NETWORK_SPEC: JSON.stringify(spec) },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    ipc: true,
    serialization: 'json',
    reject: false,
    cleanup: true,
    buffer: false,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  let alive = true;
  const exited = child.then((r) => {
    alive = false;
    return r;
  });
  const lastLine = () => stderr.trim().split('\n').pop() ?? '';

  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new PushbenchError(
          'PB_INTERNAL',
          `network process did not report listening within ${START_TIMEOUT_MS}ms`,
        ),
      );
    }, START_TIMEOUT_MS);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (LISTENING.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((r) => {
      clearTimeout(timer);
      reject(
        new PushbenchError(
          'PB_INTERNAL',
          `network process exited (${r.exitCode ?? r.signal}) before listening: ${lastLine()}`,
        ),
      );
    });
  });

  const pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  let nextId = 1;
  const settle = (reply: NetworkReply) => {
    const waiter = pending.get(reply.id);
    if (!waiter) return;
    pending.delete(reply.id);
    clearTimeout(waiter.timer);
    if ('error' in reply) {
      waiter.reject(new PushbenchError('PB_INTERNAL', `network: ${reply.error.message}`));
    } else {
      waiter.resolve(reply.result);
    }
  };
  void (async () => {
    try {
      for await (const msg of child.getEachMessage({ reference: false })) {
        const reply = parseNetworkReply(msg);
        if (reply) settle(reply);
      }
    } catch {
      // The channel broke; the exit below fails whatever is pending.
    }
  })();
  void exited.then((r) => {
    for (const [id, waiter] of pending) {
      pending.delete(id);
      clearTimeout(waiter.timer);
      waiter.reject(
        new PushbenchError(
          'PB_INTERNAL',
          `network process exited (${r.exitCode ?? r.signal}): ${lastLine()}`,
        ),
      );
    }
  });

  // The child answers each op with the type NetworkResults names; its replies
  // are its own, so the shape is trusted after parseNetworkReply checked the envelope.
  const call = <Op extends NetworkOp>(op: Op, args: Args<Op>): Promise<NetworkResults[Op]> => {
    if (!alive) {
      return Promise.reject(
        new PushbenchError('PB_INTERNAL', `network process is gone; cannot ${op}`),
      );
    }
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(
          new PushbenchError(
            'PB_INTERNAL',
            `network request ${op} got no answer within ${REQUEST_TIMEOUT_MS}ms`,
          ),
        );
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, {
        resolve: (v) => resolve(v as NetworkResults[Op]),
        reject,
        timer,
      });
      // Our request types are interfaces, which TypeScript will not match to
      // execa's index-signature JSON type; they are plain JSON all the same.
      const request = { id, op, args } as NetworkRequest;
      child
        .sendMessage(request as unknown as Parameters<typeof child.sendMessage>[0])
        .catch((err: unknown) => {
          settle({ id, error: { code: 'PB_INTERNAL', message: String(err) } });
        });
    });
  };

  return {
    pid: child.pid ?? 0,
    addresses: () => call('addresses', []),
    async addBackend(region, backend, opts) {
      await call('addBackend', [region, backend, opts ?? {}]);
    },
    async removeBackend(region, nodeId) {
      await call('removeBackend', [region, nodeId]);
    },
    applyFault: (fault) => call('applyFault', [fault]),
    async clearFault(id) {
      await call('clearFault', [id]);
    },
    async clearScope(scope) {
      await call('clearScope', [scope]);
    },
    sample: () => call('sample', []),
    async stop(graceMs = 5000) {
      if (alive) {
        try {
          await call('stop', []);
        } catch {
          child.kill('SIGTERM');
        }
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
