/**
 * One node, several processes: `pushbench serve --processes N` forks N worker
 * processes (node:cluster) that share the node's port, so a node can hold more
 * connections than one process's open-file limit. The workers accept from
 * the one listening socket the primary shares with them (SCHED_NONE: the
 * kernel hands each connection to a worker waiting in accept); the primary
 * holds no device socket.
 *
 * Each new connection on a shared socket wakes every process polling it, and
 * all but one find nothing to accept. `--acceptors N` keeps only N of the
 * workers listening, the ones holding the fewest connections, and moves that
 * role twice a second as the counts change; the others close their copy of the
 * socket until asked again. The socket, and its accept queue, stays open as
 * long as one worker holds it, so a worker lets go only once a new acceptor
 * has said it listens. Measured here (bench/RESULTS.md): 14 processes at 2,000
 * connects/s on an otherwise idle 2-core box, 619 µs of node CPU per connect
 * with all accepting, 453 µs with 2. But on a box whose cores are saturated
 * (the fleet on the same two cores) the few acceptors get too little CPU and
 * connects wait in the queue (a 250,000-device hold: connect p99 214 ms with
 * all accepting, 6.5 s with 2), so the default is every worker.
 * A worker near its open-file limit also stops accepting until some of its
 * connections have gone (see PushNode.setAcceptCeiling).
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
  | { pb: 'accepting'; on: boolean; gen: number }
  | { pb: 'drain' };
type ToWorker =
  | { pb: 'totals'; perProcess: number[] }
  /** `gen` numbers the primary's asks; the worker's `accepting` reports carry the last it got. */
  | { pb: 'accept'; on: boolean; gen: number };

/**
 * A current acceptor keeps its role until another process holds at least this
 * many connections fewer, so two processes with about the same count do not
 * trade it every tick.
 */
const ACCEPTOR_MARGIN = 32;

/**
 * Which processes accept next: the `acceptors` holding the fewest connections,
 * those accepting now counted {@link ACCEPTOR_MARGIN} lower, ties to the lower
 * index. `counts[i]` undefined: process i is gone.
 */
export function chooseAcceptors(
  counts: readonly (number | undefined)[],
  accepting: readonly boolean[],
  acceptors: number,
): boolean[] {
  const score = (i: number) => (counts[i] ?? 0) - (accepting[i] ? ACCEPTOR_MARGIN : 0);
  const order = [...counts.keys()]
    .filter((i) => counts[i] !== undefined)
    .sort((a, b) => score(a) - score(b) || a - b);
  const chosen = new Set(order.slice(0, acceptors));
  return counts.map((_, i) => chosen.has(i));
}

/** What the primary needs to run the node's processes. */
export interface PrimaryOptions {
  nodeId: string;
  processes: number;
  /** How many workers accept at once; default all of them. */
  acceptors?: number;
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
  // Every worker listens at first (their 'listening' says the node is up); from the
  // first tick on, only the chosen ones. `wanted`: what each was last asked (ask
  // number `sent`); `open`: what each last said it does, about ask number `acked`.
  const acceptors = opts.acceptors ?? opts.processes;
  const wanted = new Array<boolean>(opts.processes).fill(true);
  const open = new Array<boolean>(opts.processes).fill(true);
  const sent = new Array<number>(opts.processes).fill(0);
  const acked = new Array<number>(opts.processes).fill(0);
  const ask = (i: number, on: boolean) => {
    const w = workers[i];
    if (!w?.isConnected()) return;
    wanted[i] = on;
    sent[i] = (sent[i] ?? 0) + 1;
    // Letting go counts at once: never a holder again until it says so anew.
    if (!on) open[i] = false;
    w.send({ pb: 'accept', on, gen: sent[i] });
  };
  /** Wanted, and has said it listens since it was last asked. */
  const holds = (i: number) => wanted[i] === true && open[i] === true && acked[i] === sent[i];
  const moveAcceptors = () => {
    const alive = counts.map((n, i) => (workers[i]?.isConnected() ? n : undefined));
    const next = chooseAcceptors(alive, wanted, acceptors);
    for (const i of workers.keys()) if (next[i] && !wanted[i]) ask(i, true);
    // The socket lives while some worker holds it (node:cluster closes it, and resets
    // its accept queue, when the last one lets go): the old ones stop only once a
    // new one has said it accepts; until then they go on, and the next tick tries again.
    if (!next.some((on, i) => on && holds(i))) return;
    for (const i of workers.keys()) if (!next[i] && wanted[i]) ask(i, false);
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
          case 'accepting':
            open[i] = msg.on;
            acked[i] = msg.gen;
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
    const ticker = setInterval(() => {
      broadcast({ pb: 'totals', perProcess: [...counts] });
      if (listening === opts.processes && !stopping) moveAcceptors();
    }, 500);
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
  // The last ask this worker got, echoed in its reports.
  let gen = 0;
  node.onAcceptingChange = (on) => send({ pb: 'accepting', on, gen });
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
    if (msg?.pb === 'accept') {
      gen = msg.gen;
      node.setAccepting(msg.on);
      // Already as asked (no change to report): say so, so the primary knows.
      if (node.accepting === msg.on) send({ pb: 'accepting', on: msg.on, gen });
      return;
    }
    if (msg?.pb !== 'totals') return;
    // This process's own count is current; the others' are at most half a second old.
    const perProcess = [...msg.perProcess];
    perProcess[index] = node.connectionCount();
    node.setProcessCounts(perProcess, index);
  });
  // The primary is gone (killed): the node is gone; close every socket by exiting.
  process.on('disconnect', () => process.exit(0));
}
