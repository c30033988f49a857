/**
 * What the node benchmarks (`server-rss.ts`, `connect-cost.ts`) share: device
 * connections through the lean client, counted by one sink, with tokens and
 * source addresses made the same way.
 */
import {
  WsClientConnection,
  type WsClientSink,
  type WsCloseInfo,
} from '../loadgen/ws-client/connection.js';
import { signToken } from '../server/token.js';

/** The HMAC secret the benchmarks start their node with. */
export const BENCH_SECRET = 'bench-secret';

/** Connections open now and attempts that never opened, kept by {@link countingSink}. */
export interface Counts {
  open: number;
  failed: number;
}

/** One sink for every connection that only counts opens, closes and failed attempts. */
export function countingSink(): { sink: WsClientSink; counts: Counts } {
  const counts: Counts = { open: 0, failed: 0 };
  const sink: WsClientSink = {
    onOpen: () => {
      counts.open++;
    },
    onText: () => {},
    onClose: (_c, info: WsCloseInfo) => {
      if (info.opened) counts.open--;
      else counts.failed++;
    },
  };
  return { sink, counts };
}

/** Device `i`'s token, valid for an hour; 100 accounts. */
export function deviceToken(i: number, secret = BENCH_SECRET): string {
  const expiresAtSec = Math.floor(Date.now() / 1000) + 3600;
  return signToken({ deviceId: `d${i}`, accountId: `a${i % 100}`, expiresAtSec }, secret);
}

/**
 * Starts device `i`'s connection to `node`. Source addresses spread over
 * 127.0.1-200.1-250 so ephemeral ports never run out. `hello`: ask for the
 * node's hello frame, as the fleet's devices always do. `bind`: instead,
 * `bind.perAddress` devices bound to each address of 127.`bind.net`.x.y in turn
 * (as the fleet's placement spreads them), or `perAddress` 0 for no bind at all
 * (the kernel picks the port inside connect()). A fresh `net` per run keeps the
 * last run's TIME_WAIT ports out of the way.
 */
export function connectDevice(
  sink: WsClientSink,
  i: number,
  node: { host: string; port: number },
  token: string,
  hello = false,
  bind?: { perAddress: number; net: number },
): WsClientConnection {
  const c = new WsClientConnection(sink, i);
  const block = bind && bind.perAddress > 0 ? (i / bind.perAddress) | 0 : 0;
  c.connect({
    host: node.host,
    port: node.port,
    path: hello ? `/ws?token=${token}&hello=1` : `/ws?token=${token}`,
    ...(bind === undefined
      ? { localAddress: `127.0.${1 + (i % 200)}.${1 + (((i / 200) | 0) % 250)}` }
      : bind.perAddress > 0 && {
          localAddress: `127.${bind.net}.${1 + ((block / 250) | 0)}.${1 + (block % 250)}`,
        }),
  });
  return c;
}
