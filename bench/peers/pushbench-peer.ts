/**
 * The pushbench row: a child process that runs pushbench's own load generator
 * (the `Coordinator`) against a running node. Its devices (`d0`..`dN-1`) sign
 * their own tokens, connect paced at `--rate` and join room `r0` when publishing
 * starts; its own publisher PUTs to that room at `--fanout-rate` for
 * `--fanout-seconds`.
 *
 * stdout, one JSON object per line: `{"event":"phase","phase":...}` at each
 * phase change (`connecting`: workers loaded, nothing opened yet;
 * `publishing`: the ramp is over, nothing published yet; `draining`;
 * `closing`), then `{"event":"result",...}` with what the generator measured:
 * connections, room messages published and received, latency percentiles.
 *
 *   node --import tsx bench/peers/pushbench-peer.ts --host 127.0.0.1 --port P --api http://127.0.0.1:P \
 *     --secret S --api-key K --connections 15000 --rate 1000 --fanout-rate 4 --fanout-seconds 15
 */
import { parseArgs } from 'node:util';
import { summarize } from '../../core/measure/histogram.js';
import { Coordinator } from '../../loadgen/coordinator.js';
import { loadScenario } from '../../scenarios/load.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    api: { type: 'string' },
    secret: { type: 'string' },
    'api-key': { type: 'string' },
    connections: { type: 'string', default: '15000' },
    rate: { type: 'string', default: '1000' },
    'fanout-rate': { type: 'string', default: '10' },
    'fanout-seconds': { type: 'string', default: '10' },
  },
});
const { port, api, secret } = values;
const apiKey = values['api-key'];
if (!port || !api || !secret || !apiKey) {
  process.stderr.write(
    'usage: pushbench-peer --port P --api http://host:port --secret S --api-key K [--connections N] ...\n',
  );
  process.exit(2);
}

const say = (line: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};

const scenario = await loadScenario({
  name: 'compare-peers',
  description: 'pushbench row of bench/compare.ts',
  devices: {
    count: Number(values.connections),
    connectRate: Number(values.rate),
    connectTimeout: '10s',
  },
  traffic: {
    direct: { rate: 0 },
    rooms: { count: 1, perDevice: 1, rate: Number(values['fanout-rate']), payloadBytes: 64 },
  },
  duration: `${Number(values['fanout-seconds'])}s`,
  deliveryDeadline: '5s',
});

const coordinator = new Coordinator({
  scenario,
  target: { host: values.host, port: Number(port), path: '/ws' },
  httpUrls: [api],
  secret,
  apiKey,
  localAddresses: [],
});
coordinator.on('phase', (phase) => say({ event: 'phase', phase }));
const result = await coordinator.run();

const percentiles = (series: string): { p50: number; p99: number; count: number } | null => {
  const h = result.histograms[series];
  if (!h || h.totalCount === 0) return null;
  const s = summarize(h);
  return { p50: s.p50, p99: s.p99, count: s.count };
};
say({
  event: 'result',
  requested: result.connections.requested,
  established: result.connections.established,
  heldAtEnd: result.connections.heldAtEnd,
  roomPublished: result.traffic.room.messages,
  roomDelivered: result.traffic.room.delivered,
  // Every room message a device read, in frames or in `subscribed` dumps, duplicates included.
  roomReceived: result.timeline.reduce((n, p) => n + (p.traffic.roomReceived ?? 0), 0),
  push: percentiles('push'),
  room: percentiles('room'),
  generatorValid: result.generator.valid,
  generatorReasons: result.generator.reasons,
});
