/**
 * One node, several processes: `pushbench serve --processes N` forks N worker
 * processes (node:cluster) that share the node's port, so a node can hold more
 * connections than one process's open-file limit. The workers accept from
 * the one listening socket the primary shares with them (SCHED_NONE: the
 * kernel hands each connection to whichever worker is waiting in accept, so a
 * busier worker takes fewer); the primary holds no device socket. A worker near its open-file
 * limit stops accepting until some of its connections have gone, so the
 * others take the new ones (see PushNode.setAcceptCeiling).
 *
 * Each worker is a full PushNode named `<node>.p<i>` inside the node's own
 * cluster: without `--redis` or `--join` the primary runs the hub (an
 * in-memory registry and broker on a private port) that the workers join, so
 * a push arriving at any worker reaches the device wherever it is held.
 * Outside, the processes are one node: the hello frame and /metrics name
 * `<node>`; /metrics.json's `connections` is the node's total (the workers
 * report their counts to the primary twice a second), with each process's
 * own count beside it.
 *
 * Signals: SIGTERM to the primary drains every worker (a drain asked of one
 * worker through the API drains them all); SIGINT stops at once. A worker
 * that dies takes the node down (it exits 70), as one process dying would; a
 * SIGKILL of the primary closes the workers' IPC channel and they exit at once.
 */
import cluster, { type Worker } from 'node:cluster';
import { processLimits } from '../core/machine.js';
import type { PushNode } from './node.js';

/** Open files a worker keeps free of devices: its own files, API and hub sockets, heads in flight. */
const ACCEPT_HEADROOM = 400;

/** Worker -> primary, and back. */
type ToPrimary =
  | { pb: 'listening'; wsUrl: string; httpUrl: string }
  | { pb: 'counts'; connections: number }
  | { pb: 'drain' };
type ToWorker = { pb: 'totals'; perProcess: number[] };

/** What the primary needs to run the node's processes. */
export interface PrimaryOptions {
  nodeId: string;
  processes: number;
  /** The join URL workers use: the primary's own hub, another node's, or none with Redis. */
  join: string | undefined;
  /** The module each worker process runs, and its Node flags. */
  exec: string;
  execArgv: string[];
  /** Added to each worker's environment (its settings). */
  env: Record<string, string>;
  /** Called once every worker listens, with the node's address. */
  onListening: (address: { wsUrl: string; httpUrl: string }) => void;
}

/** The environment a worker reads its place from. */
const ENV_INDEX = 'PUSHBENCH_NODE_PROCESS';
const ENV_JOIN = 'PUSHBENCH_NODE_JOIN';

/** In a worker of a multi-process node: its index and the join URL; undefined elsewhere. */
export function workerPlace(): { index: number; join: string | undefined } | undefined {
  if (!cluster.isWorker) return undefined;
  const index = Number(process.env[ENV_INDEX]);
  if (!Number.isInteger(index)) return undefined;
  const join = process.env[ENV_JOIN];
  return { index, join: join === '' ? undefined : join };
}

/**
 * Runs the primary: forks the workers, waits for them to listen, aggregates
 * their counts, forwards signals. Resolves with the exit code once every
 * worker has exited.
 */
export function runPrimary(opts: PrimaryOptions): Promise<number> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: opts.exec, execArgv: opts.execArgv, args: [] });
  const counts = new Array<number>(opts.processes).fill(0);
  const workers: Worker[] = [];
  let listening = 0;
  let stopping = false;
  let exitCode = 0;
  const broadcast = (msg: ToWorker) => {
    for (const w of workers) if (w.isConnected()) w.send(msg);
  };
  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const w of workers) if (!w.isDead()) w.process.kill(signal);
  };
  return new Promise((resolve) => {
    let alive = opts.processes;
    for (let i = 0; i < opts.processes; i++) {
      const worker = cluster.fork({
        ...opts.env,
        [ENV_INDEX]: String(i),
        [ENV_JOIN]: opts.join ?? '',
      });
      workers.push(worker);
      worker.on('message', (msg: ToPrimary) => {
        switch (msg.pb) {
          case 'listening':
            if (++listening === opts.processes) opts.onListening(msg);
            break;
          case 'counts':
            counts[i] = msg.connections;
            break;
          case 'drain':
            if (!stopping) stopAll('SIGTERM');
            break;
        }
      });
      worker.on('exit', (code, signal) => {
        counts[i] = 0;
        if (!stopping) {
          // One process of the node died: the node is down, as a single process would be.
          process.stderr.write(
            `node ${opts.nodeId}: process ${i} exited (${signal ?? `code ${code}`}); stopping the node\n`,
          );
          exitCode = 70;
          stopAll('SIGKILL');
        }
        if (--alive === 0) resolve(exitCode);
      });
    }
    const ticker = setInterval(() => broadcast({ pb: 'totals', perProcess: [...counts] }), 500);
    ticker.unref();
    process.on('SIGTERM', () => stopAll('SIGTERM'));
    process.on('SIGINT', () => stopAll('SIGINT'));
  });
}

/**
 * In a worker: tells the primary where it listens, reports its count twice a
 * second, feeds the node's totals back into `node`, and turns a drain of this
 * process into a drain of the node.
 */
export function attachWorker(
  node: PushNode,
  index: number,
  address: { wsUrl: string; httpUrl: string },
): void {
  const send = (msg: ToPrimary) => {
    if (process.connected) process.send?.(msg);
  };
  send({ pb: 'listening', ...address });
  // The processes accept from one shared socket: one near its open-file limit steps
  // aside (server sockets beyond devices: the API's, the hub's, heads in flight).
  const openFiles = processLimits().openFiles;
  if (openFiles !== null && openFiles > 2000) {
    node.setAcceptCeiling(openFiles - ACCEPT_HEADROOM, openFiles - ACCEPT_HEADROOM - 500);
  }
  let drainTold = false;
  const ticker = setInterval(() => {
    send({ pb: 'counts', connections: node.connectionCount() });
    if (!drainTold && node.health() === 'draining') {
      drainTold = true;
      send({ pb: 'drain' });
    }
  }, 500);
  ticker.unref();
  process.on('message', (msg: ToWorker) => {
    if (msg?.pb !== 'totals') return;
    // This process's own count is current; the others' are at most half a second old.
    const perProcess = [...msg.perProcess];
    perProcess[index] = node.connectionCount();
    node.setProcessCounts(perProcess, index);
  });
  // The primary is gone (killed): the node is gone; close every socket by exiting.
  process.on('disconnect', () => process.exit(0));
}
