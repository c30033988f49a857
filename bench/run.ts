/**
 * `npm run bench`: everything measured on this box in one session.
 *
 * 1. Peers side by side (bench/compare.ts): pushbench's fleet, a plain `ws`
 *    client, Artillery's WebSocket engine and Tsung each hold the same N
 *    connections against the same reference server, one after another, with
 *    KB per connection, connect rate, receive rate and CPU per message from
 *    /proc, and ratios pushbench/peer. The peers are installed by the bench
 *    itself (Artillery into bench/.peers, Tsung with apt-get).
 * 2. The Node floor beside pushbench (bench/floor.ts): a minimal raw-net
 *    acceptor and connector, then pushbench's node and lean client, in one
 *    run: µs per connect (both ends), per server write and per client read,
 *    and the pushbench / floor ratios.
 * 3. pushbench at scale (bench/scale.ts): `pushbench run hold` at 50k, 100k and
 *    250k devices at 1,000 connects/s (what the preflight's CPU estimate lets a
 *    250k hold ask of two cores), a connect-rate probe and fan-out at rising rates.
 *
 * Prints both tables and writes bench/results/<time>.json. Figures are
 * measurements of this machine, not assertions: nothing here fails on a number.
 *
 *   npm run bench [-- --connections 15000] [--holds 50000,100000,250000]
 *                 [--rate 1000] [--skip-peers] [--skip-floor] [--skip-scale]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineFacts } from '../core/machine.js';
import { comparePeers, formatCompare } from './compare.js';
import { formatScale, parseFanout, runScale } from './scale.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '15000' },
    holds: { type: 'string', default: '50000,100000,250000' },
    rate: { type: 'string', default: '1000' },
    fanout: { type: 'string', default: '20000:1,20000:5,20000:10' },
    probe: { type: 'string', default: '20000' },
    'skip-peers': { type: 'boolean', default: false },
    'skip-floor': { type: 'boolean', default: false },
    'skip-scale': { type: 'boolean', default: false },
  },
});

const log = (line: string) => process.stderr.write(`${line}\n`);
const m = machineFacts();
const facts = `machine: ${m.cores} cores (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${m.node}, RLIMIT_NOFILE ${m.openFilesLimit}`;
log(facts);

const results: Record<string, unknown> = { machine: m, startedAt: new Date().toISOString() };
const out: string[] = [facts, ''];
if (!values['skip-peers']) {
  const compare = await comparePeers({ connections: Number(values.connections), log });
  results.peers = compare;
  out.push(formatCompare(compare), '');
}
if (!values['skip-floor']) {
  // Its own process: the clients' CPU is that process's own.
  const floor = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(new URL('floor.ts', import.meta.url)), values.connections],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  results.floor = floor.stdout;
  out.push(floor.stdout.trim(), '');
}
if (!values['skip-scale']) {
  const runs = await runScale({
    holds: values.holds.split(',').filter(Boolean).map(Number),
    rate: Number(values.rate),
    holdSeconds: 20,
    fanout: parseFanout(values.fanout),
    probe: Number(values.probe),
    log,
  });
  results.scale = runs;
  out.push(formatScale(runs));
}
process.stdout.write(`${out.join('\n')}\n`);
const dir = join(fileURLToPath(new URL('.', import.meta.url)), 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
log(`wrote ${file}`);
