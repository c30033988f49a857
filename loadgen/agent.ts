/**
 * A load agent: a child process of the coordinator that holds some of the
 * fleet's device shards, so a fleet can hold more sockets than one process's
 * open-file limit allows. It relays messages between the coordinator (IPC,
 * advanced serialization, so typed arrays travel as they are) and its shards.
 * One shard runs on the agent's own main thread (one isolate less per
 * process); several run as worker threads. When the coordinator goes away
 * the agent exits with it.
 */
import type { Worker } from 'node:worker_threads';
import { startWorkerBeside } from '../core/runtime.js';
import { runFleet } from './fleet.js';
import type {
  DeviceWorkerData,
  FromAgent,
  FromWorker,
  ShardLink,
  ToAgent,
  ToWorker,
} from './messages.js';

if (typeof process.send !== 'function') {
  throw new Error('loadgen/agent must run as a child process with an IPC channel');
}

function send(msg: FromAgent): void {
  // After the coordinator closed the channel (threads then exit and say so), nobody listens.
  if (process.connected) process.send?.(msg);
}

/** Where each shard's messages from the coordinator go. */
const inbound = new Map<number, (msg: ToWorker) => void>();
const threads: Worker[] = [];

/** Runs one shard on this thread, its link being the IPC channel. */
function runInline(data: DeviceWorkerData): void {
  const shard = data.workerIndex;
  process.on('uncaughtException', (err) => {
    send({ type: 'from-shard', shard, msg: { type: 'fatal', message: err.stack ?? String(err) } });
    process.exitCode = 1;
  });
  let listener: (msg: ToWorker) => void = () => {};
  inbound.set(shard, (msg) => listener(msg));
  const link: ShardLink = {
    postMessage: (msg: FromWorker) => send({ type: 'from-shard', shard, msg }),
    on: (_event, fn) => {
      listener = fn;
    },
  };
  runFleet(data, link);
}

function runThread(data: DeviceWorkerData): void {
  const shard = data.workerIndex;
  const worker = startWorkerBeside(import.meta.url, './worker', data, { leanHeap: true });
  worker.on('message', (msg: FromWorker) => send({ type: 'from-shard', shard, msg }));
  worker.on('error', (err) => send({ type: 'shard-error', shard, message: err.message }));
  worker.on('exit', (code) => send({ type: 'shard-exit', shard, code }));
  inbound.set(shard, (msg) => worker.postMessage(msg));
  threads.push(worker);
}

process.on('message', (msg: ToAgent) => {
  switch (msg.type) {
    case 'spawn':
      if (msg.shards.length === 1) runInline(msg.shards[0]!);
      else for (const data of msg.shards) runThread(data);
      break;
    case 'to-shard':
      inbound.get(msg.shard)?.(msg.msg);
      break;
  }
});

// The coordinator closed the channel (it finished, or died): nothing is left to report to.
process.on('disconnect', () => {
  void Promise.all(threads.map((t) => t.terminate())).finally(() => process.exit(0));
});
