/**
 * `pushbench agent --join URL --token T`: a load agent on any host. It dials
 * the coordinator (protocol.ts), says who it is and what its host can hold,
 * puts its clock on the coordinator's (Cristian's method, repeated during the
 * run to follow drift), then runs the device shards it is given, as threads
 * of its own or as load-agent processes of its own when the file limit
 * wants more than one (loadgen/shards.ts), and relays their messages. It runs
 * no code it is sent: only typed, checked start-up data.
 */
import { readFileSync } from 'node:fs';
import { freemem, hostname, networkInterfaces } from 'node:os';
import { WebSocket } from 'ws';
import {
  type ClockOffset,
  type ClockSample,
  estimateOffset,
  hostMonoUs,
  setClockOffsetUs,
} from '../../core/clock.js';
import { machineFacts, processLimits } from '../../core/machine.js';
import { sumProcessStats } from '../../core/process-stats.js';
import { version } from '../../core/version.js';
import type { FromWorker, ToWorker } from '../messages.js';
import type { ShardHandle } from '../remote-shards.js';
import { type ShardHost, startShardGroups } from '../shards.js';
import {
  type AgentText,
  type CoordinatorBinary,
  encodeBinary,
  type HostFacts,
  JOIN_PROTOCOL,
  JoinClose,
  JoinProtocolError,
  parseCoordinatorBinary,
  parseCoordinatorText,
} from './protocol.js';

/** What a device costs this host, planned: the preflight's figure (run/preflight.ts BYTES_PER_CONNECTION). */
const BYTES_PER_DEVICE = 24 * 1024;
/** Share of the host's available memory an agent offers. */
const MEMORY_SHARE = 0.8;
/** Share of a source address's ephemeral ports an agent offers per destination. */
const PORT_SHARE = 0.8;
/** Clock exchanges at the join, and in each later burst. */
const FIRST_BURST = 24;
const LATER_BURST = 8;
/** How often the offset is measured again, and the agent's processes read. */
const RESYNC_MS = 5000;

/** Settings of {@link runAgent}. */
export interface AgentOptions {
  /** The coordinator's join URL, `ws://host:port` (or `wss://`). */
  url: string;
  token: string;
  /** How the run names this agent; default the host name. */
  name?: string;
  /** Never offer more devices than this. */
  maxDevices?: number;
  /**
   * Source addresses of this host for the devices to bind, round-robin: each
   * gives another range of ephemeral ports toward one destination. Default:
   * the kernel picks (one address's ports).
   */
  sourceAddresses?: string[];
  /** Give up joining after this long, ms. Default 30 s. */
  joinTimeoutMs?: number;
  /** Trust this CA (PEM) for a `wss://` coordinator. */
  ca?: string | Buffer;
  /** One line per event. */
  log?: (line: string) => void;
}

/** Memory the kernel says it can give now (MemAvailable), or the OS figure. */
function availableMemory(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m?.[1]) return Number(m[1]) * 1024;
  } catch {
    // fall through
  }
  return freemem();
}

/** This host's facts and what it offers to hold. */
export function hostFacts(maxDevices?: number, sourceAddresses = 1): HostFacts {
  const machine = machineFacts();
  const limits = processLimits();
  const free = availableMemory();
  const addresses: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) addresses.push(a.address);
  }
  const byMemory = Math.floor((free * MEMORY_SHARE) / BYTES_PER_DEVICE);
  // Devices reach one destination from one source address unless told otherwise.
  const byPorts = Math.floor((limits.ephemeralPorts ?? 28_232) * PORT_SHARE) * sourceAddresses;
  const offer = Math.min(byMemory, byPorts, maxDevices ?? Number.POSITIVE_INFINITY);
  return {
    hostname: hostname(),
    cores: machine.cores,
    cpuModel: machine.cpuModel,
    memoryBytes: machine.memoryBytes,
    freeMemoryBytes: free,
    openFiles:
      limits.openFiles === null || !Number.isFinite(limits.openFiles) ? null : limits.openFiles,
    ephemeralPorts: limits.ephemeralPorts,
    addresses,
    maxDevices: Math.max(0, offer),
  };
}

/** Why the agent stopped, and its exit code. */
export interface AgentExit {
  code: number;
  reason: string;
}

/**
 * Joins a run and serves it until the run ends. Resolves with the exit code:
 * 0 when the run ended it, 2 when the coordinator refused it (wrong token,
 * other version: the reason says which), 1 when the coordinator was lost or
 * could not be reached.
 */
export function runAgent(options: AgentOptions): Promise<AgentExit> {
  const log = options.log ?? (() => {});
  const name =
    options.name ??
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 64);
  return new Promise<AgentExit>((resolve) => {
    const joinTimeoutMs = options.joinTimeoutMs ?? 30_000;
    const giveUpAt = performance.now() + joinTimeoutMs;
    const open = () =>
      new WebSocket(options.url, {
        perMessageDeflate: false,
        maxPayload: 512 * 2 ** 20,
        handshakeTimeout: joinTimeoutMs,
        // Checked at the upgrade, before the coordinator reads a byte of ours.
        headers: { authorization: `Bearer ${options.token}` },
        ...(options.ca !== undefined && { ca: options.ca }),
      });
    let ws = open();
    let hosts: ShardHost[] = [];
    const shards = new Map<number, ShardHandle>();
    let welcomed = false;
    let ended = false;
    let offset: ClockOffset | undefined;
    let resync: NodeJS.Timeout | undefined;
    const pending = new Map<number, (us: number, receivedUs: number) => void>();
    let nextId = 0;
    let done = false;

    const finish = async (exit: AgentExit) => {
      if (done) return;
      done = true;
      if (resync) clearInterval(resync);
      await Promise.all([...shards.values()].map((s) => s.terminate().catch(() => {})));
      if (ws.readyState === WebSocket.OPEN) ws.close(JoinClose.Done);
      log(exit.reason);
      resolve(exit);
    };
    const sendText = (msg: AgentText) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    };

    /** One clock exchange: the coordinator's time, between our send and receive. */
    const ask = () =>
      new Promise<ClockSample>((done) => {
        const id = nextId++;
        const sentUs = hostMonoUs();
        pending.set(id, (referenceUs, receivedUs) => done({ sentUs, referenceUs, receivedUs }));
        sendText({ t: 'clock', id });
      });
    const measure = async (n: number) => {
      const samples: ClockSample[] = [];
      for (let i = 0; i < n && !done; i++) samples.push(await ask());
      const est = estimateOffset(samples);
      if (!est) return;
      offset = est;
      setClockOffsetUs(est.offsetUs);
      sendText({ t: 'offset', ...est });
      for (const s of shards.values()) s.postMessage({ type: 'clock', offsetUs: est.offsetUs });
    };
    const report = () => {
      const pids = [process.pid, ...hosts.flatMap((h) => h.pids())];
      sendText({ t: 'stats', ...sumProcessStats(pids) });
    };

    const spawn = (order: Extract<CoordinatorBinary, { t: 'spawn' }>) => {
      if (hosts.length > 0) throw new JoinProtocolError('a second spawn order');
      const offsetUs = offset?.offsetUs ?? 0;
      const local = options.sourceAddresses ?? [];
      const groups = order.groups.map((g) =>
        g.map((d) => ({
          ...d,
          clockOffsetUs: offsetUs,
          // This host's own addresses, when it was given some; else its kernel picks.
          routes: d.routes.map((r) => ({ ...r, localAddresses: local })),
        })),
      );
      hosts = startShardGroups(groups);
      const indices = groups.flat().map((d) => d.workerIndex);
      let i = 0;
      for (const host of hosts) {
        for (const { handle } of host.shards) {
          const shard = indices[i++]!;
          shards.set(shard, handle);
          handle.on('message', (msg: FromWorker) => {
            if (ws.readyState === WebSocket.OPEN)
              ws.send(encodeBinary({ type: 'from-shard', shard, msg }));
          });
          handle.on('error', (err: Error) => {
            if (ws.readyState === WebSocket.OPEN)
              ws.send(encodeBinary({ type: 'shard-error', shard, message: err.message }));
          });
          handle.on('exit', (code: number) => {
            if (ws.readyState === WebSocket.OPEN)
              ws.send(encodeBinary({ type: 'shard-exit', shard, code }));
          });
        }
      }
      log(
        `running ${indices.length} shard${indices.length === 1 ? '' : 's'} in ${groups.length} process${groups.length === 1 ? '' : 'es'}: ${groups.flat().reduce((n, d) => n + d.deviceCount + d.reserveCount, 0)} devices`,
      );
    };

    const attach = (sock: WebSocket) => {
      let opened = false;
      sock.on('open', () => {
        opened = true;
        sendText({
          t: 'hello',
          protocol: JOIN_PROTOCOL,
          token: options.token,
          name,
          pushbench: version,
          node: process.version,
          facts: hostFacts(options.maxDevices, Math.max(1, options.sourceAddresses?.length ?? 0)),
        });
      });
      sock.on('message', (data: Buffer, isBinary: boolean) => {
        try {
          if (!isBinary) {
            const msg = parseCoordinatorText(data.toString('utf8'));
            switch (msg.t) {
              case 'welcome':
                welcomed = true;
                log(`joined as ${msg.name} (agent ${msg.index})`);
                void measure(FIRST_BURST).then(() => {
                  if (offset)
                    log(
                      `clock offset ${(offset.offsetUs / 1000).toFixed(3)} ms ± ${(offset.uncertaintyUs / 1000).toFixed(3)} ms`,
                    );
                });
                resync = setInterval(() => {
                  void measure(LATER_BURST);
                  report();
                }, RESYNC_MS);
                resync.unref();
                break;
              case 'clock': {
                const receivedUs = hostMonoUs();
                pending.get(msg.id)?.(msg.us, receivedUs);
                pending.delete(msg.id);
                break;
              }
              case 'end':
                ended = true;
                // Its processes' last reading, however short the run was.
                report();
                void finish({ code: 0, reason: 'the run ended' });
                break;
            }
            return;
          }
          if (!welcomed) throw new JoinProtocolError('a binary frame before welcome');
          const msg = parseCoordinatorBinary(data);
          if (msg.t === 'spawn') spawn(msg);
          else shards.get(msg.shard)?.postMessage(msg.msg as ToWorker);
        } catch (err) {
          const why = err instanceof JoinProtocolError ? err.message : String(err);
          log(`refused a message from the coordinator: ${why}`);
          if (sock.readyState === WebSocket.OPEN) sock.close(JoinClose.BadSpawn, why.slice(0, 120));
          void finish({
            code: 1,
            reason: `stopped: the coordinator sent what this agent will not run (${why})`,
          });
        }
      });
      sock.on('unexpected-response', (_req, res) => {
        // The coordinator answered the upgrade with an HTTP status: 401 is a wrong token.
        const why =
          res.statusCode === 401 ? 'wrong token' : `HTTP ${res.statusCode} at the upgrade`;
        res.resume();
        sock.terminate();
        void finish({ code: 2, reason: `refused by the coordinator: ${why}` });
      });
      sock.on('close', (code: number, reasonBuf: Buffer) => {
        // A dial that never opened is the error handler's (it may dial again).
        if (!opened) return;
        const reason = reasonBuf.toString('utf8');
        if (ended || code === JoinClose.Done) {
          void finish({ code: 0, reason: 'the run ended' });
        } else if (
          code === JoinClose.BadToken ||
          code === JoinClose.VersionMismatch ||
          code === JoinClose.RunFull ||
          code === JoinClose.Malformed ||
          code === JoinClose.HelloTimeout
        ) {
          void finish({
            code: 2,
            reason: `refused by the coordinator: ${reason || `close code ${code}`}`,
          });
        } else {
          void finish({
            code: 1,
            reason: welcomed
              ? `lost the coordinator (close code ${code}${reason ? `: ${reason}` : ''})`
              : `could not join ${options.url} (close code ${code}${reason ? `: ${reason}` : ''})`,
          });
        }
      });
      sock.on('error', (err: Error & { code?: string }) => {
        log(`join channel: ${err.message}`);
        // Not listening yet (an agent started before its run): dial again until the deadline.
        const early = !opened && (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH');
        if (early && !done && performance.now() + 1000 < giveUpAt) {
          setTimeout(() => {
            if (done) return;
            ws = open();
            attach(ws);
          }, 1000);
          return;
        }
        void finish({
          code: 1,
          reason: `could not reach the coordinator at ${options.url}: ${err.message}`,
        });
      });
    };
    attach(ws);
  });
}
