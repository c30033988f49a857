/**
 * What the Node floor benchmarks (floor.ts, multi-process-floor.ts) put on the
 * wire, and their raw client: a fixed upgrade request, a fixed 101 answer (no
 * accept key computed), and a `net.connect` socket spread over source addresses.
 * Their own minimal code, nothing from the project's hot path.
 */
import * as net from 'node:net';

export const UPGRADE_REQUEST = Buffer.from(
  'GET /ws HTTP/1.1\r\nHost: floor\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n',
);

export const UPGRADE_ANSWER = Buffer.from(
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n\r\n',
);

/** Source addresses over 127.0.1-200.1-250, as the lean devices spread theirs. */
export function sourceAddress(i: number): string {
  return `127.0.${1 + (i % 200)}.${1 + (((i / 200) | 0) % 250)}`;
}

/**
 * Raw device `i`: connects to 127.0.0.1:`port` from its source address and writes
 * the upgrade request. `onData` hears every chunk (`once`: only the first, the 101).
 */
export function openRawDevice(
  port: number,
  i: number,
  onData: (this: net.Socket, chunk: Buffer) => void,
  once = false,
): net.Socket {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: sourceAddress(i) });
  s.setNoDelay(true);
  if (once) s.once('data', onData);
  else s.on('data', onData);
  s.on('error', () => {});
  s.write(UPGRADE_REQUEST);
  return s;
}
