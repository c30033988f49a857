/**
 * What the coordinator pays per report interval to merge N agents' reports:
 * each agent sends one device-interval message per shard per second, carrying
 * compressed HdrHistogram snapshots (`push`, `connect`, and `room` when rooms
 * run). This bench builds realistic snapshots once (latencies 1-200 ms,
 * `samples` values per series per agent), then times RunFold.apply for every
 * agent's message plus one flush, for 10, 100 and 1,000 agents, and prints
 * ms of CPU per interval and the share of one core that is at a 1 s interval.
 * It also prints the snapshot sizes: the join channel's bytes per agent per
 * second (the relayed message is these snapshots plus ~300 bytes of counters,
 * V8-serialized).
 *
 *   node --import tsx bench/agent-merge.ts [samples per series per agent=2000] [rounds=5]
 */
import { serialize } from 'node:v8';
import { monoNowUs } from '../core/clock.js';
import { createLatencyHistogram, encodeHistogram, recordUs } from '../core/measure/histogram.js';
import { Rng } from '../core/rng.js';
import type { DeviceInterval } from '../loadgen/messages.js';
import { noConnectionEvents, RunFold } from '../loadgen/run-fold.js';

const samples = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 5);
const SERIES = ['push', 'connect', 'room'];

/** One agent's interval report with `samples` latencies per series, log-uniform 1-200 ms. */
function message(rng: Rng, worker: number, atUs: number): DeviceInterval {
  const histograms: Record<string, string> = {};
  for (const s of SERIES) {
    const h = createLatencyHistogram();
    for (let i = 0; i < samples; i++) recordUs(h, Math.round(1000 * 200 ** rng.next()));
    histograms[s] = encodeHistogram(h);
  }
  return {
    type: 'device-interval',
    workerIndex: worker,
    atUs,
    open: 10_000,
    established: 10_000,
    connectsOk: 0,
    received: samples,
    trafficCounters: { room: samples },
    histograms,
    self: { elu: 0.2, lagP99Ms: 3, lagMaxMs: 5, processCpu: 0.3 },
    ...noConnectionEvents(),
  };
}

function main(): void {
  const rng = new Rng(7);
  // Distinct snapshots for 50 agents, reused round-robin (encoding them all would take longer than merging).
  const pool = Array.from({ length: 50 }, (_, i) => message(rng, i, 0));
  const bytes = serialize({ type: 'from-shard', shard: 0, msg: pool[0] }).length;
  console.log(
    `agent interval report: ${SERIES.length} series x ${samples} samples, ${bytes} bytes V8-serialized (the join channel's bytes per agent per second, one shard)`,
  );
  console.log('');
  console.log('agents   merge ms per interval (best of rounds)   one core at 1 s intervals');
  for (const agents of [10, 100, 1000]) {
    let best = Number.POSITIVE_INFINITY;
    for (let r = 0; r < rounds; r++) {
      const fold = new RunFold();
      const start = monoNowUs();
      fold.begin(start - 1_000_000);
      const t0 = process.cpuUsage();
      for (let a = 0; a < agents; a++) {
        const m = pool[a % pool.length]!;
        fold.apply(`agent ${a}`, { ...m, workerIndex: a, atUs: start });
      }
      fold.flush('publishing');
      const used = process.cpuUsage(t0);
      best = Math.min(best, (used.user + used.system) / 1000);
    }
    console.log(
      `${String(agents).padStart(6)}   ${best.toFixed(1).padStart(10)}                               ${((best / 1000) * 100).toFixed(1)} %`,
    );
  }
}

main();
