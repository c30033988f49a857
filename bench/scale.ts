/**
 * pushbench at scale on this box, measured from outside: `pushbench run hold`
 * at several sizes (ramp, hold, verify both ends), a connect-rate probe and
 * fan-out at rising rates. Memory comes from /proc, sampled while the run
 * prints its progress, never from the run's own figures: RSS of the load
 * generator's processes (the run process and its load agents) and of the node's
 * process tree, and the kernel's slab and TCP buffer growth.
 *
 * Per-connection memory is the slope of RSS against held connections over the
 * ramp (a least-squares fit), so process baselines do not count; RSS / held at
 * the end is printed beside it.
 *
 *   node --import tsx bench/scale.ts [--holds 50000,100000,250000] [--rate 2500]
 *        [--fanout 20000:5,20000:10] [--probe 20000] [--json out.json]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { machineFacts } from '../core/machine.js';
import { descendantsOf, readProcessStats } from '../core/process-stats.js';
import type { Report } from '../reports/report.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/bin/pushbench.js');

/** One /proc reading, at `t` seconds after the fleet began connecting. */
interface Sample {
  t: number;
  /** Devices the fleet held then (from the run's per-second timeline, interpolated). */
  held: number;
  loadRss: number;
  nodeRss: number;
  loadCpu: number;
  nodeCpu: number;
  slabBytes: number;
  tcpBufferBytes: number;
}

/** What one run gave. */
export interface ScaleRun {
  kind: 'hold' | 'probe' | 'fanout';
  devices: number;
  connectRateAsked: number;
  held: number;
  heldAtServer: number | null;
  /** Connections/s while established went from 10 % to 90 % of the devices. */
  connectRate: number | null;
  connectP50Ms: number | null;
  connectP99Ms: number | null;
  loadProcesses: number;
  nodeProcesses: number;
  /** Slope of RSS over held connections, bytes per connection. */
  loadBytesPerConn: number | null;
  nodeBytesPerConn: number | null;
  /** RSS at the end over held connections, baselines included. */
  loadBytesPerConnTotal: number | null;
  nodeBytesPerConnTotal: number | null;
  /** Kernel slab + TCP buffer growth per connection (both ends), bytes. */
  kernelBytesPerConn: number | null;
  /** Fan-out: room messages published per second and delivered per second. */
  publishRate?: number;
  deliveredPerSec?: number;
  roomP50Ms?: number | null;
  roomP99Ms?: number | null;
  roomLost?: number;
  valid: boolean;
  invalidBecause: string[];
  exitCode: number | null;
  wallS: number;
}

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  return m?.[1] ? Number(m[1]) * 1024 : 0;
}

function tcpBufferBytes(): number {
  const m = /^TCP:.* mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m?.[1] ? Number(m[1]) * 4096 : 0;
}

function timeWaitSockets(): number {
  const m = /^TCP:.* tw (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m?.[1] ? Number(m[1]) : 0;
}

/** Waits until sockets in TIME_WAIT (which hold ports) have drained, at most 70 s. */
export async function drainTimeWait(below = 2000): Promise<void> {
  const until = Date.now() + 70_000;
  while (timeWaitSockets() > below && Date.now() < until)
    await new Promise((r) => setTimeout(r, 1000));
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The run process and its agents vs the node's process tree. */
function sample(runPid: number, t: number, base: { slab: number }): Sample {
  let loadRss = 0;
  let loadCpu = 0;
  let nodeRss = 0;
  let nodeCpu = 0;
  const self = readProcessStats(runPid);
  if (self) {
    loadRss += self.rssBytes;
    loadCpu += self.cpuSeconds;
  }
  for (const pid of descendantsOf(runPid)) {
    const s = readProcessStats(pid);
    if (!s) continue;
    const cmd = cmdline(pid);
    if (cmd.includes('loadgen/agent')) {
      loadRss += s.rssBytes;
      loadCpu += s.cpuSeconds;
    } else if (cmd.includes(' serve ') || cmd.includes('server/serve-worker')) {
      // The node: its primary (`pushbench serve`) and its worker processes.
      nodeRss += s.rssBytes;
      nodeCpu += s.cpuSeconds;
    }
  }
  return {
    t,
    held: 0,
    loadRss,
    nodeRss,
    loadCpu,
    nodeCpu,
    slabBytes: meminfo('Slab') - base.slab,
    tcpBufferBytes: tcpBufferBytes(),
  };
}

/** Devices the fleet held at `t` s, interpolated over the run's per-second timeline. */
function heldAt(report: Report, t: number): number {
  const tl = report.timeline;
  let prev = { t: 0, open: 0 };
  for (const p of tl) {
    if (p.t >= t) {
      const span = p.t - prev.t;
      return span > 0 ? prev.open + ((p.open - prev.open) * (t - prev.t)) / span : p.open;
    }
    prev = p;
  }
  return prev.open;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number | null {
  if (points.length < 3) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den > 0 ? num / den : null;
}

/** Runs `pushbench run hold` with these flags, sampling /proc at each progress line. */
async function runHoldOnce(
  kind: ScaleRun['kind'],
  devices: number,
  rate: number,
  extra: string[],
): Promise<ScaleRun> {
  await drainTimeWait();
  const out = mkdtempSync(join(tmpdir(), `pb-scale-${kind}-`));
  const base = { slab: meminfo('Slab') };
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [
      CLI,
      'run',
      'hold',
      '--devices',
      String(devices),
      '--connect-rate',
      String(rate),
      '--out',
      out,
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const samples: Sample[] = [];
  let connectingAt = 0;
  let closing = false;
  let buffered = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    buffered += chunk;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line === 'phase connecting') connectingAt = performance.now();
      if (line === 'phase draining' || line === 'phase closing') closing = true;
      nl = buffered.indexOf('\n');
    }
  });
  // Sample twice a second while the fleet connects and holds; teardown is not sampled.
  const timer = setInterval(() => {
    if (connectingAt > 0 && !closing && child.pid !== undefined) {
      samples.push(sample(child.pid, (performance.now() - connectingAt) / 1000, base));
    }
  }, 500);
  const exitCode = await new Promise<number | null>((resolve) =>
    child.on('exit', (c) => resolve(c)),
  );
  clearInterval(timer);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  for (const s of samples) s.held = heldAt(report, s.t);
  return summarize(kind, devices, rate, report, samples, exitCode, (Date.now() - started) / 1000);
}

function summarize(
  kind: ScaleRun['kind'],
  devices: number,
  rate: number,
  report: Report,
  samples: Sample[],
  exitCode: number | null,
  wallS: number,
): ScaleRun {
  const ramp = samples.filter((s) => s.held >= devices * 0.05);
  const last = samples.filter((s) => s.held > 0).at(-1);
  const held = report.devices.heldAtEnd;
  // 10 % -> 90 % of the devices established, from the run's own per-second timeline.
  const at = (share: number) => report.timeline.find((p) => p.established >= devices * share)?.t;
  const t10 = at(0.1);
  const t90 = at(0.9);
  const connectRate =
    t10 !== undefined && t90 !== undefined && t90 > t10 ? (devices * 0.8) / (t90 - t10) : null;
  const node = report.server[0] as { process?: { processes?: number } } | undefined;
  const room = report.deliveryByKind?.room;
  const publishWindowS = Math.max(0.001, report.config.durationMs / 1000);
  const run: ScaleRun = {
    kind,
    devices,
    connectRateAsked: rate,
    held,
    heldAtServer: report.devices.heldAtServer,
    connectRate: connectRate === null ? null : Math.round(connectRate),
    connectP50Ms: report.latency.connect?.p50 ?? null,
    connectP99Ms: report.latency.connect?.p99 ?? null,
    loadProcesses: report.generator.placement?.processes ?? 1,
    nodeProcesses: node?.process?.processes ?? 1,
    loadBytesPerConn: round(slope(ramp.map((s) => [s.held, s.loadRss]))),
    nodeBytesPerConn: round(slope(ramp.map((s) => [s.held, s.nodeRss]))),
    loadBytesPerConnTotal: last && held > 0 ? Math.round(last.loadRss / held) : null,
    nodeBytesPerConnTotal: last && held > 0 ? Math.round(last.nodeRss / held) : null,
    kernelBytesPerConn: round(slope(ramp.map((s) => [s.held, s.slabBytes + s.tcpBufferBytes]))),
    valid: report.generator.valid,
    invalidBecause: report.generator.reasons,
    exitCode,
    wallS: Math.round(wallS),
  };
  if (kind === 'fanout' && room) {
    run.publishRate = report.config.traffic.rooms.rateHz;
    run.deliveredPerSec = Math.round(room.delivered / publishWindowS);
    run.roomP50Ms = report.latency.room?.p50 ?? null;
    run.roomP99Ms = report.latency.room?.p99 ?? null;
    run.roomLost = room.lost;
  }
  return run;
}

function round(n: number | null): number | null {
  return n === null ? null : Math.round(n);
}

export interface ScaleOptions {
  holds: number[];
  rate: number;
  holdSeconds: number;
  /** devices:publishes-per-second pairs; every device is in the one room. */
  fanout: Array<{ devices: number; rate: number }>;
  /** Devices for the connect-rate probe, opened at 20,000/s; 0 = skip. */
  probe: number;
  log?: (line: string) => void;
}

/** Runs every scale measurement in turn. */
export async function runScale(opts: ScaleOptions): Promise<ScaleRun[]> {
  const log = opts.log ?? (() => {});
  const runs: ScaleRun[] = [];
  for (const n of opts.holds) {
    log(`hold ${n.toLocaleString('en-US')} at ${opts.rate}/s ...`);
    runs.push(await runHoldOnce('hold', n, opts.rate, ['--duration', `${opts.holdSeconds}s`]));
  }
  if (opts.probe > 0) {
    log(`connect-rate probe: ${opts.probe.toLocaleString('en-US')} devices asked at 20,000/s ...`);
    runs.push(await runHoldOnce('probe', opts.probe, 20_000, ['--duration', '5s']));
  }
  for (const f of opts.fanout) {
    log(
      `fan-out: ${f.devices.toLocaleString('en-US')} devices in one room, ${f.rate} publishes/s ...`,
    );
    runs.push(
      await runHoldOnce('fanout', f.devices, opts.rate, [
        '--duration',
        '15s',
        '--rate',
        '0',
        '--set',
        `traffic.rooms=${JSON.stringify({ count: 1, perDevice: 1, rate: f.rate, payloadBytes: 64 })}`,
        '--set',
        'deliveryDeadline=5s',
      ]),
    );
  }
  return runs;
}

const kb = (n: number | null) => (n === null ? '-' : (n / 1024).toFixed(2));
const num = (n: number | null | undefined) => (n == null ? '-' : n.toLocaleString('en-US'));
const ms = (n: number | null | undefined) =>
  n == null ? '-' : n >= 1000 ? `${(n / 1000).toFixed(1)}s` : `${n.toFixed(1)}ms`;

/** The tables `npm run bench` prints. */
export function formatScale(runs: ScaleRun[]): string {
  const lines: string[] = [];
  const holds = runs.filter((r) => r.kind !== 'fanout');
  if (holds.length > 0) {
    lines.push(
      'hold (pushbench run hold; loadgen and node on this box; KB = 1024 bytes; memory from /proc)',
      '',
      '| devices | asked/s | held (fleet) | held (node) | connect rate /s (10-90%) | connect p50 / p99 | load procs | node procs | loadgen KB/conn (slope / total) | node KB/conn (slope / total) | kernel KB/conn | generator |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const r of holds) {
      lines.push(
        `| ${num(r.devices)} | ${num(r.connectRateAsked)} | ${num(r.held)} | ${num(r.heldAtServer)} | ${num(r.connectRate)} | ${ms(r.connectP50Ms)} / ${ms(r.connectP99Ms)} | ${r.loadProcesses} | ${r.nodeProcesses} | ${kb(r.loadBytesPerConn)} / ${kb(r.loadBytesPerConnTotal)} | ${kb(r.nodeBytesPerConn)} / ${kb(r.nodeBytesPerConnTotal)} | ${kb(r.kernelBytesPerConn)} | ${r.valid ? 'valid' : 'INVALID (saturated)'} |`,
      );
    }
  }
  const fan = runs.filter((r) => r.kind === 'fanout');
  if (fan.length > 0) {
    lines.push(
      '',
      'fan-out (every device in one room; PUT /v1/rooms/r0/messages at the rate; every delivery timed from its scheduled publish)',
      '',
      '| devices | publishes/s | offered msgs/s | delivered msgs/s | room p50 | room p99 | lost | generator |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const r of fan) {
      lines.push(
        `| ${num(r.devices)} | ${num(r.publishRate)} | ${num((r.publishRate ?? 0) * r.devices)} | ${num(r.deliveredPerSec)} | ${ms(r.roomP50Ms)} | ${ms(r.roomP99Ms)} | ${num(r.roomLost)} | ${r.valid ? 'valid' : 'INVALID (saturated)'} |`,
      );
    }
  }
  return lines.join('\n');
}

/** `20000:5,10000:20` -> fan-out runs of (devices, publishes/s). */
export function parseFanout(spec: string): ScaleOptions['fanout'] {
  return spec
    .split(',')
    .filter(Boolean)
    .map((pair) => {
      const [devices, rate] = pair.split(':').map(Number);
      return { devices: devices!, rate: rate! };
    });
}

function list(v: string | undefined, fallback: number[]): number[] {
  return v === undefined ? fallback : v.split(',').filter(Boolean).map(Number);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      holds: { type: 'string' },
      rate: { type: 'string', default: '2500' },
      'hold-seconds': { type: 'string', default: '20' },
      fanout: { type: 'string', default: '20000:5,20000:10' },
      probe: { type: 'string', default: '20000' },
      json: { type: 'string' },
    },
  });
  const runs = await runScale({
    holds: list(values.holds, [50_000, 100_000, 250_000]),
    rate: Number(values.rate),
    holdSeconds: Number(values['hold-seconds']),
    fanout: parseFanout(values.fanout ?? ''),
    probe: Number(values.probe),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const m = machineFacts();
  process.stdout.write(
    `machine: ${m.cores} cores ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${m.node}, RLIMIT_NOFILE ${m.openFilesLimit}\n\n${formatScale(runs)}\n`,
  );
  if (values.json) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(values.json, `${JSON.stringify({ machine: m, runs }, null, 2)}\n`);
  }
}
