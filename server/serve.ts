/**
 * `pushbench serve`: one reference node for as long as the process lives, in
 * one process or spread over worker processes sharing its port. The command
 * line parses and checks flags into {@link ServeOptions}; everything after that
 * (the primary and its hub, the node, signals, shutdown) lives here, so the
 * worker processes of a multi-process node start from `serve-worker.ts` and
 * load the server alone, not the whole harness (~16 MB of RSS less each).
 */
import { ExitCode } from '../core/exit-codes.js';
import { entryBeside } from '../core/runtime.js';
import { parseD2dAllow } from './d2d.js';
import { attachWorker, runPrimary, workerPlace } from './multi-process.js';
import { type BackendChoice, type NodeOptions, startNode } from './node.js';

/**
 * A node's settings as they cross into its worker processes (JSON in the
 * environment): what {@link startNode} takes, without callbacks, and the
 * device-to-device allow list as its `a=b,c` specs.
 */
export type ServeNodeOptions = Partial<
  Omit<NodeOptions, 'onOverloadCrash' | 'onWarning' | 'd2dAllow'>
> &
  Pick<NodeOptions, 'secret' | 'apiKey' | 'nodeId'> &
  BackendChoice & {
    /** `a=b,c` specs (see `parseD2dAllow`); checked by the caller. */
    d2dAllow: string[];
  };

/** Everything `pushbench serve` was asked for, parsed and checked. */
export interface ServeOptions {
  node: ServeNodeOptions;
  /** Worker processes sharing the port; 1: this process is the node. */
  processes: number;
  /** How many of them accept at once, the least loaded; default all (multi-process.ts). */
  acceptors?: number;
}

/** The environment variable a worker process reads its {@link ServeOptions} from. */
export const ENV_SERVE_OPTIONS = 'PUSHBENCH_SERVE_OPTIONS';

/**
 * Runs the node until it is stopped: SIGTERM drains gracefully (a second
 * SIGTERM, or SIGINT, stops at once), as does `POST /v1/admin/drain`. Prints
 * `listening <ws url> <http url>` once every process listens. Resolves with
 * the exit code: 0 after a clean stop, 70 when a worker process died.
 */
export async function serve(options: ServeOptions, print: (line: string) => void): Promise<number> {
  const place = workerPlace();
  if (options.processes > 1 && place === undefined) return servePrimary(options, print);
  const o = options.node;
  const capacity = o.maxConnections;
  const { node, address, backends } = await startNode({
    ...o,
    d2dAllow: parseD2dAllow(o.d2dAllow),
    nodeId: place ? `${o.nodeId}.p${place.index}` : o.nodeId,
    ...(place && { publicNodeId: o.nodeId, join: place.join }),
    // A multi-process node's capacity is shared evenly by its processes.
    ...(capacity !== undefined && {
      maxConnections: place ? Math.ceil(capacity / options.processes) : capacity,
    }),
    onOverloadCrash: (connections) => {
      // Falling over is the point: exit at once, sockets die with the process.
      process.stderr.write(
        `node ${o.nodeId} over capacity (${connections} > ${capacity}): falling over\n`,
      );
      process.exit(70);
    },
    onWarning: (line) => process.stderr.write(`node ${o.nodeId}: warning: ${line}\n`),
  });
  // Said once per node: by a multi-process node's first worker.
  if (backends.broker.persistenceWarning && (!place || place.index === 0)) {
    process.stderr.write(`node ${o.nodeId}: warning: ${backends.broker.persistenceWarning}\n`);
  }
  if (place) attachWorker(node, place.index, address);
  else print(`listening ${address.wsUrl} ${address.httpUrl}`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stopNow = () => {
      if (stopping) return;
      stopping = true;
      void node.stop().then(resolve);
    };
    const onTerm = () => {
      if (node.health() === 'draining') return stopNow();
      node.drain(undefined);
      void node.drained().then(stopNow);
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', stopNow);
    // POST /v1/admin/drain ends the process the same way once drained.
    const poll = setInterval(() => {
      if (node.health() === 'draining') {
        clearInterval(poll);
        void node.drained().then(stopNow);
      }
    }, 200);
    poll.unref();
  });
  await backends.registry.close();
  await backends.broker.close();
  if (place) process.disconnect?.();
  return ExitCode.Pass;
}

/**
 * The primary of a multi-process node: a hub for its workers unless they
 * share Redis or another node's hub, then the workers (started from
 * `serve-worker.ts` with the options in their environment) until they exit.
 */
async function servePrimary(options: ServeOptions, print: (line: string) => void): Promise<number> {
  const o = options.node;
  let hub: Awaited<ReturnType<typeof startNode>> | undefined;
  if (o.redisUrl === undefined && o.join === undefined) {
    hub = await startNode({
      host: '127.0.0.1',
      port: 0,
      secret: o.secret,
      apiKey: o.apiKey,
      nodeId: `${o.nodeId}.hub`,
    });
  }
  // The workers hold the connections: the server alone, young generation capped.
  const worker = entryBeside(import.meta.url, './serve-worker', { leanHeap: true });
  const exitCode = await runPrimary({
    nodeId: o.nodeId,
    processes: options.processes,
    ...(options.acceptors !== undefined && { acceptors: options.acceptors }),
    join: hub?.address.httpUrl ?? o.join,
    exec: worker.path,
    execArgv: worker.execArgv,
    env: { [ENV_SERVE_OPTIONS]: JSON.stringify(options) },
    onListening: (a) => print(`listening ${a.wsUrl} ${a.httpUrl}`),
  });
  if (hub) {
    await hub.node.stop();
    await hub.backends.registry.close();
    await hub.backends.broker.close();
  }
  return exitCode;
}

/** Reads a worker's {@link ServeOptions} from its environment; throws if they are missing or not an object. */
export function workerServeOptions(env: NodeJS.ProcessEnv = process.env): ServeOptions {
  const raw = env[ENV_SERVE_OPTIONS];
  if (raw === undefined)
    throw new Error(`${ENV_SERVE_OPTIONS} is not set: start workers through serve()`);
  const parsed: unknown = JSON.parse(raw);
  if (typeof parsed !== 'object' || parsed === null || !('node' in parsed)) {
    throw new Error(`${ENV_SERVE_OPTIONS} does not hold serve options`);
  }
  // Written by servePrimary from checked options in the same version of this code.
  return parsed as ServeOptions;
}
