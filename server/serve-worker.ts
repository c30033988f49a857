/**
 * The entry of one worker process of a multi-process node (`pushbench serve
 * --processes N`): the primary starts it through node:cluster with the node's
 * settings in the environment. It loads the server and nothing of the harness.
 */
import { serve, workerServeOptions } from './serve.js';

try {
  process.exitCode = await serve(workerServeOptions(), (line) => process.stdout.write(`${line}\n`));
} catch (err) {
  process.stderr.write(`pushbench serve (worker process): ${(err as Error).message}\n`);
  process.exitCode = 1;
}
