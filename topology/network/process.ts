/**
 * The network child process: reads its spec (JSON) from the
 * `PUSHBENCH_NETWORK_SPEC` environment variable or the first argument, starts a
 * {@link Network}, prints `network-listening <addresses json>` on stdout, then
 * answers {@link NetworkRequest}s over Node IPC until `stop` or SIGTERM.
 */
import { isPushbenchError, PushbenchError } from '../../core/errors.js';
import { type NetworkReply, type NetworkRequest, parseNetworkRequest } from './messages.js';
import { Network } from './network.js';
import { parseNetworkSpec } from './spec.js';

/** Environment variable carrying the spec. */
export const NETWORK_SPEC_ENV = 'PUSHBENCH_NETWORK_SPEC';

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? '';
}

function perform(network: Network, req: NetworkRequest): unknown {
  switch (req.op) {
    case 'addresses':
      return network.addresses();
    case 'addBackend':
      network.addBackend(...req.args);
      return null;
    case 'removeBackend':
      network.removeBackend(...req.args);
      return null;
    case 'applyFault':
      return network.applyFault(...req.args);
    case 'clearFault':
      network.clearFault(...req.args);
      return null;
    case 'clearScope':
      network.clearScope(...req.args);
      return null;
    case 'sample':
      return network.sample();
    case 'stop':
      // Handled by the caller: it must answer after the network has stopped.
      return null;
  }
}

async function main(): Promise<void> {
  const raw = process.env[NETWORK_SPEC_ENV] ?? process.argv[2];
  if (!raw) {
    throw new PushbenchError('PB_USAGE', `no network spec: set ${NETWORK_SPEC_ENV} to its JSON`);
  }
  let input: unknown;
  try {
    input = JSON.parse(raw);
  } catch (err) {
    throw new PushbenchError('PB_BAD_SCENARIO', `network spec is not JSON: ${oneLine(err)}`);
  }
  const network = await Network.start(parseNetworkSpec(input));
  process.stdout.write(`network-listening ${JSON.stringify(network.addresses())}\n`);

  let stopped: Promise<void> | undefined;
  const stopNetwork = (): Promise<void> => {
    stopped ??= network.stop();
    return stopped;
  };
  // With nothing listening and the channel closed, the process exits on its own.
  const leave = () => {
    process.off('message', onMessage);
    if (process.connected) process.disconnect();
  };
  const send = (reply: NetworkReply, then?: () => void) => {
    if (process.connected && process.send) process.send(reply, undefined, {}, () => then?.());
    else then?.();
  };
  const onMessage = (msg: unknown) => {
    let req: NetworkRequest;
    try {
      req = parseNetworkRequest(msg);
    } catch (err) {
      const id = typeof msg === 'object' && msg && 'id' in msg ? Number(msg.id) : -1;
      send({ id, error: { code: 'PB_INTERNAL', message: `bad request: ${oneLine(err)}` } });
      return;
    }
    if (req.op === 'stop') {
      // Answer first, then close the channel: the answer must not be lost with it.
      void stopNetwork().then(() => send({ id: req.id, result: null }, leave));
      return;
    }
    try {
      send({ id: req.id, result: perform(network, req) });
    } catch (err) {
      const code = isPushbenchError(err) ? err.code : 'PB_INTERNAL';
      send({ id: req.id, error: { code, message: oneLine(err) } });
    }
  };
  process.on('message', onMessage);
  process.once('SIGTERM', () => void stopNetwork().then(leave));
}

main().catch((err: unknown) => {
  process.stderr.write(`network process failed: ${oneLine(err)}\n`);
  process.exitCode = 1;
  if (process.connected) process.disconnect();
});
