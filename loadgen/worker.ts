/**
 * Entry point of every load-generator worker thread. It only dispatches on the
 * role in its start-up data; the work lives in fleet.ts and publisher.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runFleet } from './fleet.js';
import type { FromWorker, WorkerData } from './messages.js';
import { runPublisher } from './publisher.js';

const port = parentPort;
if (!port) throw new Error('loadgen/worker must run as a worker thread');

process.on('uncaughtException', (err) => {
  port.postMessage({ type: 'fatal', message: err.stack ?? String(err) } satisfies FromWorker);
});

const data = workerData as WorkerData;
switch (data.role) {
  case 'devices':
    runFleet(data, port);
    break;
  case 'publisher':
    runPublisher(data, port);
    break;
}
