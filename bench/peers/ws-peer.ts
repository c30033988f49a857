/**
 * The plain `ws` peer: a child process that opens one `ws` client (library
 * defaults) per token in a file, paced open-loop at `--rate` per second, sends
 * a subscribe frame on each, and holds them until SIGTERM. It counts received
 * messages and never prints per message.
 *
 * Talks to the driver in lines. stdout: `{"event":"ready"}` once loaded,
 * `{"event":"ramp-done",...}` when every attempt has opened or failed, and
 * `{"event":"count",...}` in answer to a `count` line on stdin. It starts
 * connecting when it reads a `go` line, so the driver can sample its baseline
 * RSS first.
 *
 *   node --import tsx bench/peers/ws-peer.ts --url ws://127.0.0.1:PORT/ws --tokens FILE --rate 1000 --room bench
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    tokens: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    room: { type: 'string', default: 'bench' },
  },
});
if (!values.url || !values.tokens) {
  process.stderr.write(
    'usage: ws-peer --url ws://host:port/ws --tokens FILE [--rate R] [--room R]\n',
  );
  process.exit(2);
}
const url = values.url;
const rateHz = Number(values.rate);
const subscribe = JSON.stringify({ type: 'subscribe', room: values.room });
const tokens = readFileSync(values.tokens, 'utf8').split('\n').filter(Boolean);

let received = 0;
let open = 0;
let failed = 0;
let closed = 0;

const say = (line: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};

function connect(token: string): void {
  const ws = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
  let opened = false;
  ws.on('open', () => {
    opened = true;
    open++;
    ws.send(subscribe);
    resolved();
  });
  ws.on('message', () => {
    received++;
  });
  ws.on('error', () => {
    if (!opened) {
      failed++;
      resolved();
    }
  });
  ws.on('close', () => {
    if (opened) {
      open--;
      closed++;
    }
  });
}

let pending = tokens.length;
function resolved(): void {
  if (--pending === 0) say({ event: 'ramp-done', open, failed });
}

/** Opens connection i at start + i / rate (open loop: a late tick opens every overdue one). */
function ramp(): void {
  const startMs = performance.now();
  let next = 0;
  const timer = setInterval(() => {
    const due = Math.min(
      tokens.length,
      Math.floor(((performance.now() - startMs) * rateHz) / 1000) + 1,
    );
    while (next < due) connect(tokens[next++]!);
    if (next >= tokens.length) clearInterval(timer);
  }, 5);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'go') ramp();
  else if (line === 'count') say({ event: 'count', received, open, failed, closed });
});
process.on('SIGTERM', () => process.exit(0));
say({ event: 'ready', tokens: tokens.length });
