/**
 * Peer comparison: in one session, against one reference node (`pushbench
 * serve`, started once), each tool in turn holds the same N WebSocket
 * connections subscribed to one room — pushbench's own load generator, a plain
 * `ws` client, Artillery's WebSocket engine and Tsung — and the table compares
 * what it cost them:
 *
 * - held: connections the SERVER counts when the tool's RSS is sampled;
 * - KB/conn: (process-tree RSS when all are held − the tool's baseline RSS
 *   before its first connection) / held / 1024, from /proc (KB = 1024 bytes);
 * - connect rate: connections/s between the server's first and N-th held;
 * - receive rate: room messages delivered to the tool during a fan-out phase /
 *   the phase's length. The driver publishes to the peers and counts the
 *   frames the server wrote to them (its delivered counter minus slow-consumer
 *   drops) from the first publish until the tool's CPU goes quiet; pushbench
 *   publishes by itself and counts what its devices received between its
 *   `publishing` and `closing` phases;
 * - CPU µs/msg: the tool's process-tree CPU over that phase / those messages;
 * - ratio: pushbench / peer (below 1: pushbench needs less, or is slower).
 *
 * Tools run one after another; between two, TIME_WAIT sockets must drain (the
 * next tool needs the ephemeral ports) and the server must hold nothing.
 *
 *   node --import tsx bench/compare.ts [--connections 15000] [--rate 1000] [--fanout-rate 4]
 *     [--fanout-seconds 15] [--tools pushbench,ws,artillery,tsung] [--json out.json]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type MachineFacts, machineFacts } from '../core/machine.js';
import { version as pushbenchVersion } from '../core/version.js';
import { signToken } from '../server/token.js';
import { artilleryErrors, startArtillery } from './peers/artillery.js';
import { installArtillery, installTsung, type PeerInstall } from './peers/install.js';
import { processTree, sampleTree, type TreeSample, timeWaitSockets } from './peers/proc.js';
import { epmdPids, startTsung, TSUNG_ARRIVAL_FACTOR, tsungErrors } from './peers/tsung.js';

/** The tools the comparison knows, in the order they run. */
export const TOOLS = ['pushbench', 'ws', 'artillery', 'tsung'] as const;
/** One of {@link TOOLS}. */
export type ToolName = (typeof TOOLS)[number];

/** What to compare and how hard; every field has a default. */
export interface CompareOptions {
  /** Connections each tool holds. Default 15,000. */
  connections?: number;
  /** Connections opened per second, paced. Default 1,000. */
  rateHz?: number;
  /**
   * Room publishes per second during the fan-out phase. Default 4: with 15,000
   * held, 60,000 messages a second, what the reference node on a 2-core box
   * writes with p99 ~150 ms. At 10 (150,000/s) it saturates there, every tool's
   * latency is the node's backlog of seconds, and what a tool pays per message
   * depends on how large the node's bursts grow (bench/RESULTS.md).
   */
  fanoutRateHz?: number;
  /** Length of the fan-out phase, seconds. Default 15. */
  fanoutSeconds?: number;
  /** Tools to run. Default all of {@link TOOLS}. */
  tools?: readonly ToolName[];
  /** Progress lines. Default: to stderr. */
  log?: (line: string) => void;
}

/** The fan-out phase as one tool experienced it. */
export interface FanoutFigures {
  /** Who published: the driver (room `bench`), or pushbench's own publisher (room `r0`). */
  publishedBy: 'driver' | 'tool';
  /** Room messages the server published in the window (its own counter). */
  publishes: number;
  /** Driver publishes that did not get a 200, by status or error code. */
  publishFailures: Record<string, number>;
  /** Room frames the server wrote to the tool's sockets (its delivered counter − slow-consumer drops). */
  serverFrames: number;
  /**
   * Room messages delivered to the tool: the server's frames, except for
   * pushbench, whose devices count what they got (frames plus messages inside
   * `subscribed` dumps).
   */
  delivered: number;
  /** Room frames the server owed: publishes × connections held. */
  expected: number;
  /** First publish until the tool went quiet (driver) or its publishing..closing phases (pushbench). */
  seconds: number;
  /** Tool process-tree CPU over `seconds`. */
  cpuSeconds: number;
  receiveRateHz: number;
  cpuUsPerMsg: number;
  /** Messages the tool counted itself, where it can (ws, pushbench). */
  ownReceived: number | null;
  /** Server process CPU over the same window, in cores (1 = one core saturated). */
  serverCores: number;
}

/** One tool's row. */
export interface ToolRow {
  tool: ToolName;
  label: string;
  version: string;
  /** Why the tool was not measured (install failed, it crashed); the other fields are then empty. */
  skipped: string | null;
  requested: number;
  /** Connections the server held when the RSS was sampled. */
  held: number;
  /** Process-tree RSS before the first connection, bytes. */
  baselineRssBytes: number;
  /** Process-tree RSS with every connection held, bytes. */
  heldRssBytes: number;
  /** Processes in the tool's tree when all were held. */
  processes: number;
  kbPerConn: number | null;
  connectRateHz: number | null;
  fanout: FanoutFigures | null;
  /** Push latency percentiles the tool recorded (pushbench only), ms. */
  latency: { series: string; p50: number; p99: number; count: number } | null;
  /** Server RSS with this tool's connections held, bytes. */
  serverRssBytes: number;
  notes: string[];
}

/** Everything one comparison measured. */
export interface CompareResult {
  startedAt: string;
  options: Required<Omit<CompareOptions, 'log'>>;
  machine: MachineFacts;
  server: { command: string; pid: number; httpUrl: string };
  rows: ToolRow[];
}

const DEFAULTS = {
  connections: 15_000,
  rateHz: 1000,
  fanoutRateHz: 4,
  fanoutSeconds: 15,
  tools: TOOLS,
} as const;

const SECRET = 'compare-secret';
const API_KEY = 'compare-key';
const ROOM = 'bench';
/** Below this many TIME_WAIT sockets the next tool may start. */
const TIME_WAIT_OK = 1000;
const TIME_WAIT_MAX_MS = 70_000;
/** Connecting is abandoned after this long without the server's count growing. */
const STALL_MS = 15_000;
/** A tool is quiet when its tree uses under this share of one core over a poll interval. */
const QUIET_CORES = 0.1;
const QUIET_POLL_MS = 250;
const QUIET_MAX_MS = 30_000;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

// --- the reference server -------------------------------------------------------------

/** The server's own counts that the comparison reads. */
interface ServerCounts {
  connections: number;
  /** Room messages published (PUTs accepted), total. */
  roomPublished: number;
  /** Room frames written to subscribers, total. */
  roomDelivered: number;
  /** Frames not written because a connection's buffer was full, total. */
  slowDropped: number;
}

/** Reads a number at `obj[a][b]`, 0 when absent. */
function counter(obj: unknown, family: string, key: string): number {
  const fam = (obj as Record<string, Record<string, unknown> | undefined> | undefined)?.[family];
  const v = fam?.[key];
  return typeof v === 'number' ? v : 0;
}

/** Sum of every label set of a counter family. */
function counterTotal(obj: unknown, family: string): number {
  const fam = (obj as Record<string, Record<string, unknown> | undefined> | undefined)?.[family];
  return Object.values(fam ?? {}).reduce<number>((s, v) => s + (typeof v === 'number' ? v : 0), 0);
}

/** One `pushbench serve` child process, with the HTTP calls the comparison makes. */
class ReferenceServer {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });
  private stderrTail = '';

  private constructor(
    readonly child: ChildProcess,
    readonly command: string,
    readonly wsUrl: string,
    readonly httpUrl: string,
  ) {
    child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-2000);
    });
  }

  /** Starts the node on 127.0.0.1, port 0, and waits for its `listening` line. */
  static async start(): Promise<ReferenceServer> {
    const args = [
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--secret',
      SECRET,
      '--api-key',
      API_KEY,
      '--heartbeat-interval',
      '1h',
      '--heartbeat-timeout',
      '2h',
      '--max-lifetime',
      '24h',
      '--lifetime-jitter',
      '0s',
      '--push-rate',
      '100000',
    ];
    const child = spawn(process.execPath, ['--import', 'tsx', 'bin/pushbench.ts', ...args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const command = `node --import tsx bin/pushbench.ts ${args.join(' ')}`;
    const urls = await new Promise<[string, string]>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('server printed no listening line in 30 s')),
        30_000,
      );
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        const m = /^listening (ws:\/\/\S+) (http:\/\/\S+)$/.exec(line);
        if (!m) return;
        clearTimeout(timer);
        resolve([m[1]!, m[2]!]);
      });
      child.once('exit', (code) =>
        reject(new Error(`server exited with code ${code} before listening`)),
      );
    });
    return new ReferenceServer(child, command, urls[0], urls[1]);
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** The host and port devices connect to. */
  get address(): { host: string; port: number } {
    const u = new URL(this.httpUrl);
    return { host: u.hostname, port: Number(u.port) };
  }

  private call(
    method: string,
    path: string,
    body?: string,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.httpUrl}${path}`,
        {
          method,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${API_KEY}`,
            ...(body !== undefined && {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            }),
          },
          timeout: 30_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Reads `/metrics.json`. */
  async counts(): Promise<ServerCounts> {
    const { text } = await this.call('GET', '/metrics.json');
    const json = JSON.parse(text) as { connections?: unknown; metrics?: unknown };
    return {
      connections: typeof json.connections === 'number' ? json.connections : 0,
      roomPublished: counter(
        json.metrics,
        'pushbench_messages_total',
        '{path="room",outcome="published"}',
      ),
      roomDelivered: counter(
        json.metrics,
        'pushbench_messages_total',
        '{path="room",outcome="delivered"}',
      ),
      slowDropped: counterTotal(json.metrics, 'pushbench_slow_consumer_total'),
    };
  }

  /** PUTs one message to a room; resolves with the HTTP status, or the error code when the request failed. */
  async publish(room: string, body: string): Promise<number | string> {
    try {
      return (await this.call('PUT', `/v1/rooms/${room}/messages`, body)).status;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
  }

  /** Stops the node at once (SIGINT), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    this.agent.destroy();
    await stopTree(this.child, 'SIGINT', 10_000);
  }

  /** The end of the server's stderr, for notes. */
  get errors(): string {
    return this.stderrTail.trim();
  }
}

// --- child processes ------------------------------------------------------------------

/** A JSON line a peer script printed. */
interface PeerEvent {
  event: string;
  [field: string]: unknown;
}

/** A peer's line with the tool's and the server's process trees as they were when it arrived. */
interface StampedEvent {
  event: PeerEvent;
  tool: TreeSample;
  server: TreeSample;
}

/**
 * JSON lines from a child's stdout, awaited by predicate. Each line is stamped
 * with /proc samples the moment it arrives, so a phase change can be measured
 * at the instant it happened rather than when the driver gets round to it.
 */
class EventLines {
  private readonly events: StampedEvent[] = [];
  private waiters: Array<() => void> = [];
  private exitNote: string | undefined;

  constructor(child: ChildProcess, serverPid: number, stderrTail: () => string) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof v === 'object' && v !== null && typeof (v as PeerEvent).event === 'string') {
        const tool = sampleTree(child.pid ?? 0);
        this.events.push({ event: v as PeerEvent, tool, server: sampleTree(serverPid) });
        this.wake();
      }
    });
    child.once('exit', (code, signal) => {
      this.exitNote = `exited (${signal ?? `code ${code}`})${stderrTail() ? `: ${stderrTail()}` : ''}`;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The first event (seen or to come) matching `pred`; rejects when the child exits first or after `timeoutMs`. */
  async next(pred: (e: PeerEvent) => boolean, timeoutMs: number): Promise<StampedEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => pred(e.event));
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      if (this.exitNote !== undefined) throw new Error(this.exitNote);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no answer in ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

/** True while a process exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a child and every descendant: `signal` to each process of its tree
 * (some tools put helpers in their own sessions), then SIGKILL to whatever is
 * left after `graceMs`.
 */
async function stopTree(
  child: ChildProcess,
  signal: NodeJS.Signals,
  graceMs: number,
): Promise<void> {
  const root = child.pid;
  if (root === undefined) return;
  const pids = processTree(root);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
  const deadline = performance.now() + graceMs;
  while (pids.some(alive) && performance.now() < deadline) await sleep(100);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
  if (child.exitCode === null && child.signalCode === null) {
    await new Promise<void>((r) => {
      child.once('exit', () => r());
      setTimeout(r, 2000);
    });
  }
}

// --- one tool ---------------------------------------------------------------------------

/** A running tool, however it was started. */
interface ToolRun {
  child: ChildProcess;
  /** The tool's baseline: its tree sampled once loaded, before its first connection. */
  baseline(): Promise<TreeSample>;
  /** How the baseline was taken, for the notes. */
  baselineHow: string;
  /** How the tool paces its connects, for the notes. */
  pacing: string;
  /** Diagnostics when something goes wrong (its log's end). */
  diagnostics(): string;
  /** Messages the tool counted itself so far, where it can. */
  ownReceived?(): Promise<number>;
  /** pushbench only: its own phases drive sampling and publishing. */
  lines?: EventLines;
  /** Stops the tool and whatever it left behind. */
  stop(): Promise<void>;
}

/** Device tokens `prefix-0..n-1`, spread over 100 accounts like pushbench's devices. */
function makeTokens(prefix: string, n: number): string[] {
  const expiresAtSec = Math.floor(Date.now() / 1000) + 24 * 3600;
  return Array.from({ length: n }, (_, i) =>
    signToken({ deviceId: `${prefix}-${i}`, accountId: `a${i % 100}`, expiresAtSec }, SECRET),
  );
}

/** Waits until the server counts a first connection; returns the last tree sample taken before it. */
async function baselineBeforeFirstConnection(
  server: ReferenceServer,
  child: ChildProcess,
): Promise<TreeSample> {
  const pid = child.pid ?? 0;
  let clean = sampleTree(pid);
  for (;;) {
    // Sample first, then ask the server: a sample followed by a count of 0 held no connection.
    const s = sampleTree(pid);
    const { connections } = await server.counts();
    if (connections > 0) return clean;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error('exited before connecting');
    clean = s;
    await sleep(50);
  }
}

/** A peer script (`bench/peers/*.ts`) started with tsx in the repository. */
function spawnScript(
  script: string,
  args: string[],
): { child: ChildProcess; stderrTail: () => string } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join('bench', 'peers', script), ...args],
    {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-600);
  });
  return { child, stderrTail: () => tail.trim().replace(/\s+/g, ' ') };
}

function startWs(server: ReferenceServer, n: number, rateHz: number, dir: string): ToolRun {
  const tokensPath = join(dir, 'tokens.txt');
  writeFileSync(tokensPath, `${makeTokens('ws', n).join('\n')}\n`);
  const { child, stderrTail } = spawnScript('ws-peer.ts', [
    '--url',
    server.wsUrl,
    '--tokens',
    tokensPath,
    '--rate',
    String(rateHz),
    '--room',
    ROOM,
  ]);
  const lines = new EventLines(child, server.pid, stderrTail);
  return {
    child,
    baselineHow: 'sampled at its "ready" line, before it was told to connect',
    pacing: `its own open-loop timer, ${rateHz}/s`,
    async baseline() {
      const ready = await lines.next((e) => e.event === 'ready', 30_000);
      child.stdin!.write('go\n');
      return ready.tool;
    },
    diagnostics: stderrTail,
    async ownReceived() {
      child.stdin!.write('count\n');
      const { event } = await lines.next((x) => x.event === 'count', 10_000);
      return typeof event.received === 'number' ? event.received : 0;
    },
    stop: () => stopTree(child, 'SIGTERM', 5000),
  };
}

function startPushbench(
  server: ReferenceServer,
  opts: Required<Omit<CompareOptions, 'log'>>,
): ToolRun {
  const { host, port } = server.address;
  const { child, stderrTail } = spawnScript('pushbench-peer.ts', [
    '--host',
    host,
    '--port',
    String(port),
    '--api',
    server.httpUrl,
    '--secret',
    SECRET,
    '--api-key',
    API_KEY,
    '--connections',
    String(opts.connections),
    '--rate',
    String(opts.rateHz),
    '--fanout-rate',
    String(opts.fanoutRateHz),
    '--fanout-seconds',
    String(opts.fanoutSeconds),
  ]);
  const lines = new EventLines(child, server.pid, stderrTail);
  return {
    child,
    lines,
    pacing: `scenario devices.connectRate ${opts.rateHz}/s, split over its device workers`,
    baselineHow:
      'sampled as its "connecting" phase line arrived (workers loaded; the first connect is due 50 ms later)',
    async baseline() {
      const connecting = await lines.next(
        (e) => e.event === 'phase' && e.phase === 'connecting',
        60_000,
      );
      return connecting.tool;
    },
    diagnostics: stderrTail,
    async stop() {
      // It closes its devices and exits by itself after its result line.
      const deadline = performance.now() + 30_000;
      while (child.exitCode === null && child.signalCode === null && performance.now() < deadline)
        await sleep(100);
      await stopTree(child, 'SIGTERM', 5000);
    },
  };
}

function startArtilleryRun(
  server: ReferenceServer,
  install: Extract<PeerInstall, { ok: true }>,
  n: number,
  rateHz: number,
  dir: string,
): ToolRun {
  const child = startArtillery({
    bin: install.bin,
    url: server.wsUrl,
    tokens: makeTokens('art', n),
    rateHz,
    room: ROOM,
    dir,
  });
  return {
    child,
    pacing: `one arrival phase, arrivalRate ${rateHz} for ${Math.max(1, Math.round(n / rateHz))} s`,
    baselineHow:
      'it connects on its own: the last tree sample (every 50 ms) before the server saw its first connection',
    baseline: () => baselineBeforeFirstConnection(server, child),
    diagnostics: () => artilleryErrors(dir),
    stop: () => stopTree(child, 'SIGTERM', 5000),
  };
}

function startTsungRun(
  server: ReferenceServer,
  install: Extract<PeerInstall, { ok: true }>,
  n: number,
  rateHz: number,
  dir: string,
): ToolRun {
  const epmdBefore = new Set(epmdPids());
  const { host, port } = server.address;
  const child = startTsung({
    bin: install.bin,
    host,
    port,
    tokens: makeTokens('tsung', n),
    rateHz,
    room: ROOM,
    dir,
  });
  return {
    child,
    pacing: `arrival phase at ${Math.ceil(rateHz * TSUNG_ARRIVAL_FACTOR)}/s (${TSUNG_ARRIVAL_FACTOR}x the rate: its launcher cannot hold a steady ${rateHz}/s) capped with maxnumber ${n}`,
    baselineHow:
      'it connects on its own: the last tree sample (every 50 ms) before the server saw its first connection',
    baseline: () => baselineBeforeFirstConnection(server, child),
    diagnostics: () => tsungErrors(dir),
    async stop() {
      await stopTree(child, 'SIGTERM', 5000);
      // Tsung's Erlang VM starts an epmd daemon when none runs; stop only the one it started.
      for (const pid of epmdPids().filter((p) => !epmdBefore.has(p))) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // Gone.
        }
      }
    },
  };
}

/** The host's 1-minute load average, as text. */
function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '?';
}

/** Waits for TIME_WAIT sockets to drain and the server to hold nothing; returns notes on what did not. */
async function settle(server: ReferenceServer, log: (l: string) => void): Promise<string[]> {
  const notes: string[] = [];
  const start = performance.now();
  let tw = timeWaitSockets();
  if (tw >= TIME_WAIT_OK) log(`  waiting for ${tw} TIME_WAIT sockets to drain`);
  while (tw >= TIME_WAIT_OK && performance.now() - start < TIME_WAIT_MAX_MS) {
    await sleep(1000);
    tw = timeWaitSockets();
  }
  if (tw >= TIME_WAIT_OK) notes.push(`started with ${tw} sockets still in TIME_WAIT`);
  let held = (await server.counts()).connections;
  const until = performance.now() + 60_000;
  while (held > 0 && performance.now() < until) {
    await sleep(200);
    held = (await server.counts()).connections;
  }
  if (held > 0) notes.push(`server still held ${held} connections from the previous tool`);
  return notes;
}

/** How connecting went, as the server counted it. */
interface ConnectWatch {
  rateHz: number | null;
  /** Why fewer than N are held, if so. */
  shortfall: string | null;
}

/**
 * Polls the server's connection count until it reaches `n`, the tool exits, or
 * the count has not grown for {@link STALL_MS}. The rate is the growth between
 * the first poll that saw a connection and the first that saw `n` (or the last
 * growth) over the time between them.
 */
async function watchConnect(
  server: ReferenceServer,
  run: ToolRun,
  n: number,
  stopWhen?: Promise<unknown>,
): Promise<ConnectWatch> {
  let first: { atMs: number; count: number } | undefined;
  let last = { atMs: performance.now(), count: 0 };
  let shortfall: string | null = null;
  let stopped = false;
  void stopWhen?.then(
    () => {
      stopped = true;
    },
    () => {},
  );
  for (;;) {
    const { connections } = await server.counts();
    const atMs = performance.now();
    if (connections > 0 && first === undefined) first = { atMs, count: connections };
    if (connections > last.count) last = { atMs, count: connections };
    if (connections >= n) break;
    if (run.child.exitCode !== null || run.child.signalCode !== null) {
      shortfall = `tool exited while connecting: ${run.diagnostics()}`;
      break;
    }
    if (stopped) {
      shortfall = `the tool finished its ramp with the server holding ${connections}`;
      break;
    }
    if (atMs - last.atMs > STALL_MS) {
      shortfall = `no progress for ${STALL_MS / 1000} s at ${connections}${run.diagnostics() ? `; tool says: ${run.diagnostics()}` : ''}`;
      break;
    }
    await sleep(100);
  }
  const rateHz =
    first && last.atMs > first.atMs
      ? ((last.count - first.count) * 1000) / (last.atMs - first.atMs)
      : null;
  return { rateHz, shortfall };
}

/**
 * Publishes to the room open-loop (publish k at start + k / rate, without
 * waiting for earlier answers), then waits until the tool has gone quiet: its
 * CPU under {@link QUIET_CORES} over a poll and the server writing nothing more.
 */
async function driverFanout(
  server: ReferenceServer,
  run: ToolRun,
  held: number,
  rateHz: number,
  seconds: number,
): Promise<FanoutFigures> {
  const pid = run.child.pid ?? 0;
  const body = JSON.stringify({ payload: 'x'.repeat(64) });
  const count = Math.max(1, Math.round(rateHz * seconds));
  const own0 = (await run.ownReceived?.()) ?? null;
  const m0 = await server.counts();
  const s0 = sampleTree(pid);
  const srv0 = sampleTree(server.pid);
  const statuses: Promise<number | string>[] = [];
  for (let k = 0; k < count; k++) {
    await sleep(s0.atMs + (k * 1000) / rateHz - performance.now());
    statuses.push(server.publish(ROOM, body));
  }
  const publishFailures: Record<string, number> = {};
  for (const status of await Promise.all(statuses)) {
    if (status !== 200) publishFailures[status] = (publishFailures[status] ?? 0) + 1;
  }
  let end = sampleTree(pid);
  let endSrv = sampleTree(server.pid);
  let endCounts = await server.counts();
  const giveUpAt = performance.now() + QUIET_MAX_MS;
  while (performance.now() < giveUpAt) {
    await sleep(QUIET_POLL_MS);
    const s = sampleTree(pid);
    const srv = sampleTree(server.pid);
    const m = await server.counts();
    const cores = (s.cpuSeconds - end.cpuSeconds) / ((s.atMs - end.atMs) / 1000);
    if (cores < QUIET_CORES && m.roomDelivered === endCounts.roomDelivered) break;
    end = s;
    endSrv = srv;
    endCounts = m;
  }
  const own1 = (await run.ownReceived?.()) ?? null;
  const serverFrames = framesWritten(m0, endCounts);
  return figures({
    publishedBy: 'driver',
    publishFailures,
    publishes: endCounts.roomPublished - m0.roomPublished,
    held,
    serverFrames,
    delivered: serverFrames,
    tool: [s0, end],
    server: [srv0, endSrv],
    ownReceived: own0 !== null && own1 !== null ? own1 - own0 : null,
  });
}

/** Room frames the server wrote between two readings (delivered minus slow-consumer drops). */
function framesWritten(m0: ServerCounts, m1: ServerCounts): number {
  return m1.roomDelivered - m0.roomDelivered - (m1.slowDropped - m0.slowDropped);
}

/** What one fan-out window measured, before the figures are derived. */
interface FanoutWindow {
  publishedBy: FanoutFigures['publishedBy'];
  publishFailures: Record<string, number>;
  publishes: number;
  held: number;
  serverFrames: number;
  delivered: number;
  /** The tool's tree at the window's start and end. */
  tool: [TreeSample, TreeSample];
  /** The server's process at the window's start and end. */
  server: [TreeSample, TreeSample];
  ownReceived: number | null;
}

function figures(w: FanoutWindow): FanoutFigures {
  const [s0, s1] = w.tool;
  const [srv0, srv1] = w.server;
  const { delivered } = w;
  const seconds = (s1.atMs - s0.atMs) / 1000;
  const cpuSeconds = s1.cpuSeconds - s0.cpuSeconds;
  return {
    publishedBy: w.publishedBy,
    publishes: w.publishes,
    publishFailures: w.publishFailures,
    serverFrames: w.serverFrames,
    delivered,
    expected: w.publishes * w.held,
    seconds: round(seconds, 3),
    cpuSeconds: round(cpuSeconds, 2),
    receiveRateHz: seconds > 0 ? Math.round(delivered / seconds) : 0,
    cpuUsPerMsg: delivered > 0 ? round((cpuSeconds * 1e6) / delivered, 2) : 0,
    ownReceived: w.ownReceived,
    serverCores: seconds > 0 ? round((srv1.cpuSeconds - srv0.cpuSeconds) / seconds, 2) : 0,
  };
}

/** A row for a tool that was not measured. */
function skippedRow(
  tool: ToolName,
  label: string,
  version: string,
  n: number,
  why: string,
): ToolRow {
  return {
    tool,
    label,
    version,
    skipped: why,
    requested: n,
    held: 0,
    baselineRssBytes: 0,
    heldRssBytes: 0,
    processes: 0,
    kbPerConn: null,
    connectRateHz: null,
    fanout: null,
    latency: null,
    serverRssBytes: 0,
    notes: [],
  };
}

/** Runs one tool through the whole procedure. */
async function measureTool(
  tool: ToolName,
  server: ReferenceServer,
  opts: Required<Omit<CompareOptions, 'log'>>,
  log: (line: string) => void,
): Promise<ToolRow> {
  const n = opts.connections;
  const wsVersion = (createRequire(import.meta.url)('ws/package.json') as { version: string })
    .version;
  let label: string;
  let version: string;
  let install: PeerInstall = { ok: true, version: '', bin: '' };
  switch (tool) {
    case 'pushbench':
      label = 'pushbench fleet';
      version = `${pushbenchVersion} (node ${process.version})`;
      break;
    case 'ws':
      label = 'ws client';
      version = `${wsVersion} (node ${process.version})`;
      break;
    case 'artillery':
      label = 'Artillery ws engine';
      install = await installArtillery();
      version = install.ok ? install.version : '-';
      break;
    case 'tsung':
      label = 'Tsung websocket';
      install = await installTsung();
      version = install.ok ? install.version : '-';
      break;
  }
  if (!install.ok) return skippedRow(tool, label, version, n, install.reason);

  log(`${tool}: settling`);
  const notes = await settle(server, log);
  const dir = mkdtempSync(join(tmpdir(), `pushbench-compare-${tool}-`));
  let run: ToolRun;
  switch (tool) {
    case 'pushbench':
      run = startPushbench(server, opts);
      break;
    case 'ws':
      run = startWs(server, n, opts.rateHz, dir);
      break;
    case 'artillery':
      run = startArtilleryRun(server, install, n, opts.rateHz, dir);
      break;
    case 'tsung':
      run = startTsungRun(server, install, n, opts.rateHz, dir);
      break;
  }
  try {
    log(`${tool}: starting`);
    const base = await run.baseline();
    notes.push(`pacing: ${run.pacing}`, `baseline ${run.baselineHow}`);
    log(
      `${tool}: baseline ${(base.rssBytes / 2 ** 20).toFixed(1)} MB; connecting ${n} at ${opts.rateHz}/s`,
    );

    // Nothing publishes before the fan-out phase: the room counters read now are its start.
    const m0 = await server.counts();
    // pushbench moves on to publishing by itself once its ramp is over: that line
    // is the moment to sample (all open, nothing published yet).
    const publishing = run.lines?.next(
      (e) => e.event === 'phase' && e.phase === 'publishing',
      (n / opts.rateHz) * 1000 + 120_000,
    );
    const watch = await watchConnect(server, run, n, publishing);
    const publishingLine = await publishing;
    const atHold = publishingLine?.tool ?? sampleTree(run.child.pid ?? 0);
    const serverRssBytes = (publishingLine?.server ?? sampleTree(server.pid)).rssBytes;
    const heldNow = (await server.counts()).connections;
    if (watch.shortfall) notes.push(`held ${heldNow} of ${n}: ${watch.shortfall}`);
    log(`${tool}: server holds ${heldNow}; tree RSS ${(atHold.rssBytes / 2 ** 20).toFixed(1)} MB`);

    let fanout: FanoutFigures | null = null;
    let latency: ToolRow['latency'] = null;
    if (heldNow > 0) {
      log(`${tool}: fan-out ${opts.fanoutRateHz}/s for ${opts.fanoutSeconds} s`);
      if (run.lines) {
        const own = await selfFanout(server, run.lines, heldNow, m0, publishingLine!, opts);
        fanout = own.fanout;
        const { result } = own;
        latency = latencyOf(result);
        if (result.generatorValid === false)
          notes.push(
            `pushbench generator marked its result invalid: ${String(result.generatorReasons)}`,
          );
        notes.push(
          'its devices join room r0 as they connect (subscribe with dump); its own publisher thread publishes from the publishing phase on',
        );
      } else {
        fanout = await driverFanout(server, run, heldNow, opts.fanoutRateHz, opts.fanoutSeconds);
      }
      if (fanout.serverFrames < fanout.expected)
        notes.push(
          `server wrote ${fanout.serverFrames} of ${fanout.expected} room frames owed (${fanout.publishes} publishes x ${heldNow} held)`,
        );
    }
    // This machine may be shared: say how busy it was, since every figure depends on it.
    notes.push(`host load average (1 min) after the fan-out: ${loadAverage()}`);
    return {
      tool,
      label,
      version,
      skipped: null,
      requested: n,
      held: heldNow,
      baselineRssBytes: base.rssBytes,
      heldRssBytes: atHold.rssBytes,
      processes: atHold.pids.length,
      kbPerConn: heldNow > 0 ? round((atHold.rssBytes - base.rssBytes) / heldNow / 1024, 2) : null,
      connectRateHz: watch.rateHz === null ? null : Math.round(watch.rateHz),
      fanout,
      latency,
      serverRssBytes,
      notes,
    };
  } catch (err) {
    const why = `${(err as Error).message}${run.diagnostics() ? ` (${run.diagnostics()})` : ''}`;
    return { ...skippedRow(tool, label, version, n, why.slice(0, 300)), notes };
  } finally {
    log(`${tool}: stopping`);
    await run.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * pushbench publishes by itself: its CPU is measured between its `publishing`
 * and `closing` lines (stamped on arrival). Its devices subscribe only when
 * publishing starts (with `dump`), so early messages reach late subscribers
 * inside their `subscribed` answers, which the server does not count as room
 * frames: messages delivered are the room messages its devices counted. The
 * server's frames are read between `m0` (before it connected) and its result
 * line (it has stopped publishing by then). Returns the figures and the result line.
 */
async function selfFanout(
  server: ReferenceServer,
  lines: EventLines,
  held: number,
  m0: ServerCounts,
  publishing: StampedEvent,
  opts: Required<Omit<CompareOptions, 'log'>>,
): Promise<{ fanout: FanoutFigures; result: PeerEvent }> {
  const closing = await lines.next(
    (e) => e.event === 'phase' && e.phase === 'closing',
    opts.fanoutSeconds * 1000 + 120_000,
  );
  const { event: result } = await lines.next((e) => e.event === 'result', 60_000);
  const m1 = await server.counts();
  const serverFrames = framesWritten(m0, m1);
  const fanout = figures({
    publishedBy: 'tool',
    publishFailures: {},
    publishes: m1.roomPublished - m0.roomPublished,
    held,
    serverFrames,
    delivered: typeof result.roomReceived === 'number' ? result.roomReceived : serverFrames,
    tool: [publishing.tool, closing.tool],
    server: [publishing.server, closing.server],
    ownReceived: null,
  });
  return { fanout, result };
}

/** The pushbench result line's room (else push) latency percentiles. */
function latencyOf(result: PeerEvent): ToolRow['latency'] {
  for (const series of ['room', 'push']) {
    const p = result[series] as
      | { p50?: unknown; p99?: unknown; count?: unknown }
      | null
      | undefined;
    if (p && typeof p.p50 === 'number' && typeof p.p99 === 'number' && typeof p.count === 'number')
      return { series, p50: p.p50, p99: p.p99, count: p.count };
  }
  return null;
}

// --- the comparison ---------------------------------------------------------------------

/**
 * Runs every requested tool, one after another, against one reference node and
 * returns their rows. A tool that cannot be installed or fails comes back with
 * `skipped` set; the comparison itself only throws if the server cannot start.
 */
export async function comparePeers(options: CompareOptions = {}): Promise<CompareResult> {
  const opts = {
    connections: options.connections ?? DEFAULTS.connections,
    rateHz: options.rateHz ?? DEFAULTS.rateHz,
    fanoutRateHz: options.fanoutRateHz ?? DEFAULTS.fanoutRateHz,
    fanoutSeconds: options.fanoutSeconds ?? DEFAULTS.fanoutSeconds,
    tools: options.tools ?? DEFAULTS.tools,
  };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const startedAt = new Date().toISOString();
  const server = await ReferenceServer.start();
  log(`server ${server.httpUrl} (pid ${server.pid})`);
  const rows: ToolRow[] = [];
  try {
    for (const tool of TOOLS.filter((t) => opts.tools.includes(t))) {
      rows.push(await measureTool(tool, server, opts, log));
    }
  } finally {
    await server.stop();
  }
  if (server.errors) log(`server stderr: ${server.errors}`);
  return {
    startedAt,
    options: opts,
    machine: machineFacts(),
    server: { command: server.command, pid: server.pid, httpUrl: server.httpUrl },
    rows,
  };
}

/** `pushbench / peer` as `0.62x`, or '-' when either side is missing. */
function ratio(ours: number | null | undefined, theirs: number | null | undefined): string {
  if (ours == null || theirs == null || theirs === 0) return '-';
  return `${(ours / theirs).toFixed(2)}x`;
}

/** `, 3 failed (ECONNRESET 3)` or ''. */
function failures(f: FanoutFigures): string {
  const list = Object.entries(f.publishFailures);
  if (list.length === 0) return '';
  const total = list.reduce((n, [, v]) => n + v, 0);
  return `, ${total} failed (${list.map(([k, v]) => `${k} ${v}`).join(', ')})`;
}

/** The comparison as a text table with notes and machine facts. */
export function formatCompare(result: CompareResult): string {
  const { options: o, rows } = result;
  const ours = rows.find((r) => r.tool === 'pushbench' && r.skipped === null);
  const header = [
    'tool',
    'version',
    'held/N',
    'base MB',
    'KB/conn',
    'x',
    'conn/s',
    'x',
    'recv msg/s',
    'x',
    'CPU us/msg',
    'x',
    'latency recorded',
  ];
  const table: string[][] = [header];
  for (const r of rows) {
    if (r.skipped !== null) {
      table.push([r.label, r.version, `skipped: ${r.skipped}`]);
      continue;
    }
    const peer = r !== ours;
    const f = r.fanout;
    table.push([
      r.label,
      r.version,
      `${r.held}/${r.requested}`,
      (r.baselineRssBytes / 2 ** 20).toFixed(0),
      r.kbPerConn?.toFixed(2) ?? '-',
      peer ? ratio(ours?.kbPerConn, r.kbPerConn) : '',
      r.connectRateHz?.toString() ?? '-',
      peer ? ratio(ours?.connectRateHz, r.connectRateHz) : '',
      f ? String(f.receiveRateHz) : '-',
      peer ? ratio(ours?.fanout?.receiveRateHz, f?.receiveRateHz) : '',
      f ? f.cpuUsPerMsg.toFixed(2) : '-',
      peer ? ratio(ours?.fanout?.cpuUsPerMsg, f?.cpuUsPerMsg) : '',
      r.latency
        ? `yes: ${r.latency.series} p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms`
        : 'no',
    ]);
  }
  const widths = header.map((_, i) =>
    Math.max(...table.map((row) => (row.length > 2 || i < 2 ? (row[i] ?? '').length : 0))),
  );
  const lines = table.map((row) =>
    row.length <= 3
      ? `${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padEnd(widths[1]!)}  ${row[2]}`
      : row
          .map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
          .join('  '),
  );
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const m = result.machine;
  const out = [
    `Peer comparison: ${o.connections} connections each, opened at ${o.rateHz}/s; fan-out ${o.fanoutRateHz} publishes/s for ${o.fanoutSeconds} s to every held connection`,
    '',
    ...lines,
    '',
    'x = pushbench / peer. held = connections the server counted when RSS was sampled.',
    'KB/conn = (process-tree RSS with all held - baseline RSS) / held / 1024 (KB = 1024 bytes), from /proc.',
    'conn/s = growth of the server count between its first and N-th connection over that time.',
    'recv msg/s = room messages delivered to the tool / fan-out window; CPU us/msg = tool process-tree CPU',
    '  over the window / those messages. Peers: the driver publishes (room bench), messages = frames the server',
    '  wrote (delivered - slow-consumer drops), window = first publish until the tool went quiet. pushbench:',
    '  it publishes itself (room r0), messages = what its devices counted (frames + subscribe dumps),',
    '  window = its publishing..closing phases.',
  ];
  for (const r of rows) {
    const extra: string[] = [...r.notes];
    if (r.fanout) {
      const f = r.fanout;
      extra.push(
        `fan-out: ${f.publishes} publishes (${f.publishedBy === 'tool' ? 'by the tool' : 'by the driver'})${failures(f)}; server wrote ${f.serverFrames} frames; ${f.delivered} messages delivered in ${f.seconds} s; tool CPU ${f.cpuSeconds} s; server CPU ${f.serverCores} cores${f.ownReceived === null ? '' : `; the tool counted ${f.ownReceived}`}`,
      );
    }
    if (r.skipped === null)
      extra.push(
        `${r.processes} process(es); RSS ${(r.heldRssBytes / 2 ** 20).toFixed(1)} MB held; server RSS ${(r.serverRssBytes / 2 ** 20).toFixed(0)} MB`,
      );
    if (extra.length > 0) out.push(`${r.label}:`, ...extra.map((e) => `  - ${e}`));
  }
  out.push(
    '',
    `machine: ${m.cores} cores (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, node ${m.node}, ${m.platform}/${m.arch}, open files limit ${m.openFilesLimit ?? 'unknown'}`,
  );
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: String(DEFAULTS.connections) },
      rate: { type: 'string', default: String(DEFAULTS.rateHz) },
      'fanout-rate': { type: 'string', default: String(DEFAULTS.fanoutRateHz) },
      'fanout-seconds': { type: 'string', default: String(DEFAULTS.fanoutSeconds) },
      tools: { type: 'string', default: TOOLS.join(',') },
      json: { type: 'string' },
    },
  });
  const tools = values.tools.split(',').map((t) => t.trim());
  const unknown = tools.filter((t) => !(TOOLS as readonly string[]).includes(t));
  const numbers = [
    values.connections,
    values.rate,
    values['fanout-rate'],
    values['fanout-seconds'],
  ].map(Number);
  if (unknown.length > 0 || numbers.some((x) => !Number.isFinite(x) || x <= 0)) {
    process.stderr.write(
      `usage: compare.ts [--connections N] [--rate R] [--fanout-rate R] [--fanout-seconds S] [--tools ${TOOLS.join(',')}] [--json FILE]${unknown.length ? `\nunknown tools: ${unknown.join(', ')}` : ''}\n`,
    );
    process.exitCode = 2;
  } else {
    const result = await comparePeers({
      connections: numbers[0]!,
      rateHz: numbers[1]!,
      fanoutRateHz: numbers[2]!,
      fanoutSeconds: numbers[3]!,
      tools: tools as ToolName[],
    });
    process.stdout.write(`${formatCompare(result)}\n`);
    if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
  }
}
