import cluster from 'node:cluster';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { Server as NetServer } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { NodeUnreachableError, PushbenchError, QueueFullError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { readPemFile } from '../core/tls-certs.js';
import { CloseCode } from '../core/ws/close-codes.js';
import { defaultHeartbeatTimeoutMs } from '../core/ws/heartbeat.js';
import { createBroker, createRegistry } from './backends.js';
import type { Broker } from './broker.js';
import { NodeLink, type NodeReply, type NodeRequest } from './cluster.js';
import { ConnectionTable, type DeviceConnection } from './connections.js';
import { type D2dOutcome, d2dAllowed, TargetCache } from './d2d.js';
import { DevicePort } from './device-port.js';
import { Hub } from './hub.js';
import { LifecycleSweep } from './lifecycle.js';
import { NodeMetrics } from './metrics.js';
import { isConcreteHost, PeerServer } from './peer-link.js';
import {
  type DeviceFrame,
  encodeD2dFrame,
  encodeFrame,
  encodePushFrame,
  parseDeviceFrame,
} from './protocol.js';
import { createPushApi, type NodeApi, type PushOutcome } from './push-api.js';
import { type QueueBody, QueueProcessor } from './queue-processor.js';
import { TokenBucket } from './rate-limit.js';
import type { PushRegistry } from './registry.js';
import { RoomHub } from './rooms.js';
import { type DeviceClaims, verifyToken } from './token.js';
import {
  LeanWebSocket,
  LeanWebSocketServer,
  type LeanWebSocketSink,
  type UpgradeRequest,
} from './ws-server.js';

/** Settings of one reference node; {@link nodeDefaults} fills what is left out. */
export interface NodeOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  host: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port: number;
  /** Serve devices and the API over TLS (`wss://`, `https://`); absent: plain TCP. */
  tls?: NodeTls;
  /** HMAC secret that device tokens are signed with. Required. */
  secret: string;
  /** Bearer key for the HTTP API. Required. */
  apiKey: string;
  /** Name of this node, unique in the cluster. Default `node-1`. */
  nodeId: string;
  /**
   * Node-to-node requests straight to the holding process's peer port
   * (peer-link.ts), named in the registry entry. false: through the broker.
   * Default true; a `host` of `0.0.0.0` or `::` has no one address to name, so
   * it goes through the broker too.
   */
  peerLinks?: boolean;
  /**
   * The name devices and the harness see (hello frame, /metrics.json), when
   * this process is one of a multi-process node whose processes are `nodeId`s
   * of their own. Default: `nodeId`.
   */
  publicNodeId?: string;
  /** Heartbeat: every connection is pinged once per interval. Default 10 s. */
  heartbeatIntervalMs: number;
  /** Silence after which a connection is closed. Default 3 intervals, at least 30 s (core/ws/heartbeat.ts). */
  heartbeatTimeoutMs: number;
  /** Push Registry TTL; refreshed every heartbeat interval while connected. Default 3 intervals. */
  registryTtlMs: number;
  /** Largest HTTP body. Default 64 KiB. */
  maxBodyBytes: number;
  /** Largest frame a device may send. Default 16 KiB. */
  maxFrameBytes: number;
  /** Bound on one connection's unsent bytes. Default 1 MiB. */
  maxBufferedBytes: number;
  /** What happens past that bound: `drop` the message (counted) or `disconnect` (4008). Default drop. */
  slowConsumer: 'drop' | 'disconnect';
  /** Maximum connection lifetime before a goaway. Default 30 min. */
  maxLifetimeMs: number;
  /** Each connection's lifetime is shortened by a random 0..jitter so reconnects spread. Default 3 min. */
  lifetimeJitterMs: number;
  /** Time between a goaway and the forced close. Default 10 s. */
  goawayGraceMs: number;
  /** A drain spreads goaways over this window. Default 30 s. */
  drainWindowMs: number;
  /** Connections closed at most per drain step (100 ms). Default 500. */
  drainBatch: number;
  /** Seed of the node's own random choices (lifetime and goaway jitter, drain order); null = unseeded. */
  seed: number | null;
  /** Connections this node holds well (its capacity). Default unlimited. */
  maxConnections: number;
  /**
   * What happens at capacity: `refuse` upgrades with 503 (default); turn
   * `unhealthy` (`/healthz` 503 so balancers stop sending, upgrades still
   * accepted); or `crash` past it (the node falls over, as an overloaded
   * process does; `onOverloadCrash` is called and the process should exit).
   */
  overload: 'refuse' | 'unhealthy' | 'crash';
  /** Called once when `overload: 'crash'` and a connection goes past capacity. */
  onOverloadCrash?: (connections: number) => void;
  /** Called with a line worth saying while the node runs (`serve` prints it as a warning). */
  onWarning?: (line: string) => void;
  /** Upgrades admitted per second (token bucket); more get HTTP 429. Default unlimited. */
  admissionRatePerSec: number;
  /** Direct pushes per second one device may receive (burst 2x); more get 429. Default 100. */
  pushRatePerSec: number;
  /** Device-to-device messages per second one device may send (burst 2x). Default 10. */
  d2dRatePerSec: number;
  /** Accounts whose devices may message another account's devices: from -> allowed targets. */
  d2dAllow: ReadonlyMap<string, ReadonlySet<string>>;
  /** How long a d2d target lookup is cached. Default 5 s; 0 turns the cache off. */
  d2dCacheTtlMs: number;
  /** Rooms one connection may join. Default 100. */
  maxRoomsPerConnection: number;
  /** Messages kept per room. Default 100. */
  roomHistoryLength: number;
  /** An idle room's history expires after this. Default 1 h. */
  roomHistoryTtlMs: number;
  /** Default and maximum `?ack=1` wait. Defaults 5 s and 60 s. */
  ackTimeoutMs: number;
  maxAckTimeoutMs: number;
  /** How long a node waits for another node's answer. Default 2 s. */
  nodeRequestTimeoutMs: number;
  /** Indirect push: attempts before dead-lettering, retry delay. Defaults 5, 2 s. */
  queueMaxAttempts: number;
  queueRetryAfterMs: number;
  /** Device ids per batch push and messages per queue request. Default 1000. */
  maxBatch: number;
  /**
   * How long a new connection has to send its whole request head; then it is
   * answered 408 and closed, so slow heads cannot pile up to the file limit.
   */
  headTimeoutMs: number;
  /**
   * Most connections (per process) that may be sending their request head at
   * once; past it the oldest is answered 503 `pending_shed` and closed.
   */
  maxPendingUpgrades: number;
}

/**
 * A node's TLS: its certificate chain and key (PEM files), and optionally a
 * 48-byte session-ticket key file that the region's nodes share, so a device
 * resumes its session on whichever node it lands (without one, each process
 * makes its own keys and only resumes what it issued).
 */
export interface NodeTls {
  certFile: string;
  keyFile: string;
  ticketKeysFile?: string;
  /**
   * Plain TCP on the same port too, told apart by the first byte (a TLS
   * handshake record is 0x16): devices connect over TLS while a harness's own
   * API calls and health checks stay plain. The node then names its plain URLs.
   */
  plainToo?: boolean;
}

/** Reads a node's TLS files into secure-context options; `PB_USAGE` naming the file that cannot be used. */
export function readNodeTls(t: NodeTls): SecureContextOptions {
  const read = readPemFile;
  const options: SecureContextOptions = {
    cert: read('--tls-cert', t.certFile),
    key: read('--tls-key', t.keyFile),
  };
  if (t.ticketKeysFile !== undefined) {
    const keys = read('--tls-ticket-keys', t.ticketKeysFile);
    if (keys.length !== 48) {
      throw new PushbenchError(
        'PB_USAGE',
        `--tls-ticket-keys ${t.ticketKeysFile}: must hold exactly 48 bytes, has ${keys.length}`,
      );
    }
    options.ticketKeys = keys;
  }
  try {
    createSecureContext(options);
  } catch (err) {
    throw new PushbenchError(
      'PB_USAGE',
      `--tls-cert ${t.certFile} / --tls-key ${t.keyFile}: ${(err as Error).message}`,
    );
  }
  return options;
}

/** Defaults for every optional node setting. */
export const nodeDefaults: Omit<NodeOptions, 'secret' | 'apiKey' | 'registryTtlMs'> = {
  host: '127.0.0.1',
  port: 0,
  nodeId: 'node-1',
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 30_000,
  maxBodyBytes: 64 * 1024,
  maxFrameBytes: 16 * 1024,
  maxBufferedBytes: 1024 * 1024,
  slowConsumer: 'drop',
  maxLifetimeMs: 30 * 60_000,
  lifetimeJitterMs: 3 * 60_000,
  goawayGraceMs: 10_000,
  drainWindowMs: 30_000,
  drainBatch: 500,
  seed: null,
  maxConnections: Number.POSITIVE_INFINITY,
  overload: 'refuse',
  admissionRatePerSec: Number.POSITIVE_INFINITY,
  pushRatePerSec: 100,
  d2dRatePerSec: 10,
  d2dAllow: new Map(),
  d2dCacheTtlMs: 5000,
  maxRoomsPerConnection: 100,
  roomHistoryLength: 100,
  roomHistoryTtlMs: 3_600_000,
  ackTimeoutMs: 5000,
  maxAckTimeoutMs: 60_000,
  nodeRequestTimeoutMs: 2000,
  queueMaxAttempts: 5,
  queueRetryAfterMs: 2000,
  maxBatch: 1000,
  headTimeoutMs: 10_000,
  maxPendingUpgrades: 2000,
};

/** What a node shares with its cluster. Both default to in-memory (a cluster of one process). */
export interface NodeBackends {
  registry: PushRegistry;
  broker: Broker;
}

/** Where a started node listens. */
export interface NodeAddress {
  host: string;
  port: number;
  /** `ws://HOST:PORT/ws` */
  wsUrl: string;
  /** `http://HOST:PORT` */
  httpUrl: string;
}

/** A device's WebSocket, with its `DeviceConnection` as owner once the upgrade is done. */
type DeviceSocket = LeanWebSocket<DeviceConnection>;

function monoMs(): number {
  return performance.now();
}

function refuseUpgrade(
  socket: Duplex,
  status: number,
  reason: string,
  error: string,
  extraHeaders = '',
): void {
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n${extraHeaders}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Guards an upgrade socket until it is refused or handed to the WebSocket server. */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** The node's sink for device sockets: one object per node, not a closure per connection. */
function deviceSocketSink(node: PushNode): LeanWebSocketSink<DeviceConnection> {
  return {
    onMessage(ws: DeviceSocket, data: Buffer, isBinary: boolean): void {
      if (ws.owner) node.onDeviceMessage(ws.owner, data, isBinary);
    },
    onPong(ws: DeviceSocket): void {
      if (ws.owner) ws.owner.lastSeenMs = monoMs();
    },
    onError(_ws: DeviceSocket, err): void {
      // Frame-level violations (unmasked frame, bad UTF-8, oversize): the socket has
      // already sent the matching close code (1002/1007/1009); we only count them.
      node.metrics.inc('pushbench_bad_frames_total', { kind: err.code });
    },
    onClose(ws: DeviceSocket, code: number): void {
      if (ws.owner) node.onDeviceClose(ws.owner, code);
    },
  };
}

/** The frame a device that asked with `?registered=1` gets once its registry entry is written. */
const REGISTERED_FRAME = encodeFrame({ type: 'registered' });

/** Devices per registry call when every entry is re-checked after an outage. */
const RECHECK_BATCH = 500;

/**
 * The event-loop delay monitor's sampling period. Each sample is a wakeup of an
 * otherwise idle process: at 10 ms, 14 workers of one node spent 19 ms of CPU a
 * second more than at 20 ms, and at 20 ms 35-40 ms more than at 100 ms
 * (bench/multi-process-cost.ts, idle). A stall longer than the period still shows
 * in full; the metric is a p99 over 10 s.
 */
const LAG_RESOLUTION_MS = 100;

/** A worker whose listener could not be opened again tries again after this. */
const RELISTEN_RETRY_MS = 500;

/**
 * One reference push node: WebSocket endpoint for devices, HTTP API for
 * services, and the lifecycle sweep. It names its collaborators: the Push
 * Registry (which node holds which device), the broker (node-to-node requests,
 * room fan-out and history, presence, the indirect queue), the room hub, the
 * d2d target cache and the queue processor. It stands alone; the harness runs
 * it as a separate process and talks to it only over its sockets.
 */
export class PushNode implements NodeApi {
  /** Counters, gauges and histograms served on `/metrics`. */
  readonly metrics = new NodeMetrics();
  /** Devices connected to this node. */
  readonly connections = new ConnectionTable();
  readonly options: NodeOptions;
  private readonly http: Server;
  private readonly wss: LeanWebSocketServer<DeviceConnection>;
  private readonly devicePort: DevicePort;

  /** Connections still sending their request head. */
  get devicePortWaiting(): number {
    return this.devicePort.waitingCount;
  }
  /** The lifecycle sweep (heartbeats, lifetimes, registry refresh). */
  readonly sweep: LifecycleSweep;
  private readonly registry: PushRegistry;
  private readonly broker: Broker;
  private readonly link: NodeLink;
  readonly rooms: RoomHub;
  private readonly targets: TargetCache;
  readonly queue: QueueProcessor;
  private readonly admission: TokenBucket | undefined;
  private readonly pendingAcks = new Map<string, (acked: boolean) => void>();
  private readonly presenceSubscribers = new Map<string, Set<DeviceConnection>>();
  private readonly lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  private lagTimer: NodeJS.Timeout | undefined;
  private messageSeq = 0;
  private connSeq = 0;
  private readonly instance = randomBytes(4).toString('hex');
  private readonly startedAtMs = Date.now();
  /** Every process's connection count, in a multi-process node (see server/multi-process.ts). */
  private processCounts: { perProcess: number[]; index: number } | undefined;
  private crashed = false;
  /** The node's random choices: seeded for replayable runs, else from Math.random's seed. */
  private readonly random: Rng;
  private draining: { done: Promise<void>; resolve: () => void } | undefined;
  /** Serves this node's in-memory registry and broker to nodes that `--join` it. */
  private hub: Hub | undefined;
  /** Where this process takes its peers' requests directly (peer-link.ts), and its `host:port`. */
  private peerServer: PeerServer | undefined;
  private peerAddress: string | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** The port bound by {@link start} (the asked one may be 0). */
  private boundPort: number | undefined;
  /** Where this process stops and starts accepting again (see {@link setAcceptCeiling}). */
  private acceptCeiling: { pauseAt: number; resumeAt: number; below: boolean } | undefined;
  /** Whether the node's primary wants this process accepting (see {@link setAccepting}). */
  private acceptWanted = true;
  /** The port speaks TLS only (`https://`, `wss://`). */
  private readonly tlsOnly: boolean;
  /** Set by {@link stop}: the listener is not opened again. */
  private stopping = false;
  /** Whether the listener is open, closed, or being opened again; undefined until gated. */
  private acceptState: 'accepting' | 'paused' | 'reopening' | undefined;

  constructor(
    options: Partial<NodeOptions> & Pick<NodeOptions, 'secret' | 'apiKey'>,
    backends: NodeBackends,
  ) {
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? nodeDefaults.heartbeatIntervalMs;
    this.options = {
      ...nodeDefaults,
      registryTtlMs: 3 * heartbeatIntervalMs,
      ...options,
      heartbeatTimeoutMs:
        options.heartbeatTimeoutMs ?? defaultHeartbeatTimeoutMs(heartbeatIntervalMs),
    };
    if (!this.options.secret)
      throw new PushbenchError('PB_USAGE', 'the node needs a token secret (--secret)');
    if (!this.options.apiKey)
      throw new PushbenchError('PB_USAGE', 'the node needs an API key (--api-key)');
    this.registry = backends.registry;
    this.broker = backends.broker;
    this.random = new Rng(this.options.seed ?? Math.floor(Math.random() * 2 ** 32));
    // The lean server never negotiates per-message deflate, which would cost tens
    // of KB per connection at scale, and keeps no per-connection timer.
    this.wss = new LeanWebSocketServer(deviceSocketSink(this), {
      maxMessageBytes: this.options.maxFrameBytes,
    });
    const api = createPushApi(this, {
      apiKey: this.options.apiKey,
      maxBodyBytes: this.options.maxBodyBytes,
      maxBatch: this.options.maxBatch,
      ackTimeoutMs: this.options.ackTimeoutMs,
      maxAckTimeoutMs: this.options.maxAckTimeoutMs,
    });
    const t = this.options.tls;
    const tlsOnly = t !== undefined && t.plainToo !== true;
    this.tlsOnly = tlsOnly;
    // TLS is the device front's (device-port.ts): it wraps each socket that opens with
    // a handshake, under the same head deadline and cap of sockets in waiting.
    this.http = createServer(api);
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onHttpUpgrade(req, socket, head),
    );
    // Device upgrades skip node:http: the port's front parses them (server/device-port.ts).
    this.devicePort = new DevicePort(
      this.http,
      (req, socket, head) => this.onUpgrade(req, socket, head),
      {
        headTimeoutMs: this.options.headTimeoutMs,
        ...(t !== undefined && {
          tlsContext: createSecureContext(readNodeTls(t)),
          tlsOnly,
        }),
        onHeadTimeout: () =>
          this.metrics.inc('pushbench_upgrades_refused_total', {
            status: 408,
            reason: 'head_too_slow',
          }),
        maxWaiting: this.options.maxPendingUpgrades,
        onShed: () =>
          this.metrics.inc('pushbench_upgrades_refused_total', {
            status: 503,
            reason: 'pending_shed',
          }),
      },
    );
    this.sweep = new LifecycleSweep(
      { intervalMs: this.options.heartbeatIntervalMs, timeoutMs: this.options.heartbeatTimeoutMs },
      {
        silent: (conn) => {
          conn.ws.terminate();
          this.metrics.inc('pushbench_disconnects_total', { reason: 'heartbeat_timeout' });
        },
        lifetimeOver: (conn) => this.goaway(conn, 'lifetime', CloseCode.Lifetime),
        overstayed: (conn) => conn.ws.close(conn.forceCloseCode, 'go away'),
        ping: (conn) => {
          if (conn.ws.readyState === LeanWebSocket.OPEN) conn.ws.ping();
        },
      },
      monoMs,
    );
    // Each tick refreshes the registry TTL of the bucket it just swept: one batched
    // call per tick, every connection once per heartbeat interval.
    this.sweep.onTick = (bucket) => {
      if (!bucket || bucket.size === 0) return;
      const items = [...bucket].map((c) => ({ deviceId: c.deviceId, connId: c.connId }));
      this.registry.refresh(items, this.options.registryTtlMs).then(
        (result) => {
          for (const stale of result.stale) void this.repairEntry(stale.deviceId, stale.connId);
        },
        () =>
          this.metrics.inc('pushbench_messages_total', {
            path: 'registry',
            outcome: 'refresh_failed',
          }),
      );
    };
    // Redis back after an outage may have come back empty: every entry is re-checked
    // now, not one bucket per tick over a heartbeat interval, so pushes find devices
    // that stayed connected all along.
    this.registry.onReconnect?.(() => void this.recheckRegistry());
    this.broker.onQueueLost?.(() => {
      this.metrics.inc('pushbench_queue_lost_total');
      this.options.onWarning?.(
        'the queue was gone when Redis answered again (it came back without its data): every message it held is lost',
      );
    });
    this.link = new NodeLink(
      this.broker,
      this.options.nodeId,
      (req) => this.onNodeRequest(req),
      this.peerLinksOn() ? this.options.apiKey : undefined,
    );
    this.rooms = new RoomHub(
      this.broker,
      {
        maxRoomsPerConnection: this.options.maxRoomsPerConnection,
        historyLength: this.options.roomHistoryLength,
        historyTtlMs: this.options.roomHistoryTtlMs,
      },
      (conn, frame) => {
        this.sendTo(conn, frame);
      },
      (_room, recipients) =>
        this.metrics.inc(
          'pushbench_messages_total',
          { path: 'room', outcome: 'delivered' },
          recipients,
        ),
    );
    this.targets = new TargetCache(this.registry, this.options.d2dCacheTtlMs, monoMs);
    this.queue = new QueueProcessor(
      this.broker,
      this.options.nodeId,
      async (deviceId, id, payloadJson) =>
        (await this.route(deviceId, id, payloadJson, false, 0)).outcome,
      {
        maxAttempts: this.options.queueMaxAttempts,
        retryAfterMs: this.options.queueRetryAfterMs,
        batch: 100,
      },
    );
    if (Number.isFinite(this.options.admissionRatePerSec)) {
      this.admission = new TokenBucket(
        this.options.admissionRatePerSec,
        Math.max(1, this.options.admissionRatePerSec),
        monoMs(),
      );
    }
  }

  /** Whether node-to-node requests take peer links (see {@link NodeOptions.peerLinks}). */
  private peerLinksOn(): boolean {
    return this.options.peerLinks !== false && isConcreteHost(this.options.host);
  }

  /** Binds the port, joins the cluster and starts the sweep; rejects with `PB_PORT_IN_USE` if taken. */
  async start(): Promise<NodeAddress> {
    const { host, port } = this.options;
    await new Promise<void>((resolve, reject) => {
      const onListenError = (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') {
          reject(
            new PushbenchError(
              'PB_PORT_IN_USE',
              `port ${port} on ${host} is already in use; choose another --port, or 0 for a free one`,
            ),
          );
        } else if (err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
          reject(new PushbenchError('PB_USAGE', `cannot listen on ${host}:${port}: ${err.code}`));
        } else {
          reject(err);
        }
      };
      this.http.once('error', onListenError);
      // A deep accept queue (the kernel caps it at net.core.somaxconn): a connect
      // burst waits for accept() instead of overflowing into resets.
      this.http.listen({ port, host, backlog: 65_535 }, () => {
        this.http.off('error', onListenError);
        resolve();
      });
    });
    const address = this.http.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    this.boundPort = address.port;
    if (this.peerLinksOn()) {
      // A port of this process's own for its peers' requests: each worker of a
      // multi-process node gets one, so a forward reaches the process holding the device.
      this.peerServer = new PeerServer(this.options.apiKey, (env, reply) =>
        this.link.serve(env, reply),
      );
      this.peerAddress = await this.peerServer.listen(host);
    }
    await this.link.start();
    this.queue.start();
    this.sweep.start();
    this.lag.enable();
    this.lagTimer = setInterval(() => {
      this.metrics.set(
        'pushbench_event_loop_lag_seconds',
        Math.max(0, this.lag.percentile(99) / 1e9 - LAG_RESOLUTION_MS / 1000),
      );
      this.lag.reset();
    }, 10_000);
    this.lagTimer.unref();
    const shownHost = host.includes(':') ? `[${host}]` : host;
    return {
      host,
      port: address.port,
      wsUrl: `${this.tlsOnly ? 'wss' : 'ws'}://${shownHost}:${address.port}/ws`,
      httpUrl: `${this.tlsOnly ? 'https' : 'http'}://${shownHost}:${address.port}`,
    };
  }

  /**
   * In a worker of a multi-process node, whose processes accept from one shared
   * socket: stop accepting at `pauseAt` connections and start again at
   * `resumeAt`, so a process near its open-file limit leaves new connections to
   * the others instead of taking them into an accept() that fails (libuv then
   * resets them). The kernel's accept queue is shared, so nothing is refused
   * while another process accepts.
   */
  setAcceptCeiling(pauseAt: number, resumeAt: number): void {
    if (!(resumeAt < pauseAt) || resumeAt < 0) {
      throw new TypeError(`need 0 <= resumeAt < pauseAt, got ${resumeAt} and ${pauseAt}`);
    }
    this.acceptCeiling = { pauseAt, resumeAt, below: true };
    this.gateAccepting();
  }

  /**
   * In a worker of a multi-process node: whether the node's primary wants this
   * process accepting now (server/multi-process.ts keeps only a few of them
   * accepting at once, so one connect does not wake every process). The
   * ceiling still applies on top.
   */
  setAccepting(wanted: boolean): void {
    this.acceptWanted = wanted;
    this.gateAccepting();
  }

  /** Called each time this process's listener opens (true) or closes (false). */
  onAcceptingChange: ((on: boolean) => void) | undefined;

  /** Whether this process's listener is open (it takes new connections). */
  get accepting(): boolean {
    return this.acceptState === undefined || this.acceptState === 'accepting';
  }

  /** Opens or closes the listener as the primary's wish and the ceiling say together. */
  private gateAccepting(): void {
    if (this.stopping) return;
    const ceiling = this.acceptCeiling;
    if (ceiling !== undefined) {
      const held = this.connections.size;
      if (ceiling.below && held >= ceiling.pauseAt) {
        ceiling.below = false;
        this.metrics.inc('pushbench_accept_pauses_total');
      } else if (!ceiling.below && held <= ceiling.resumeAt) {
        ceiling.below = true;
      }
    }
    const want = this.acceptWanted && (ceiling === undefined || ceiling.below);
    const state = this.acceptState ?? 'accepting';
    if (state === 'accepting' && !want) {
      this.acceptState = 'paused';
      // net's close, not http's: that one would also close the API's idle keep-alive sockets.
      NetServer.prototype.close.call(this.http);
      this.onAcceptingChange?.(false);
    } else if (state === 'paused' && want) {
      this.acceptState = 'reopening';
      // A cluster worker asks for the port as it first did (0 included): node:cluster keys
      // the primary's shared socket by it. Alone, the port it was given.
      const port = cluster.isWorker ? this.options.port : (this.boundPort ?? this.options.port);
      const failed = (err: Error) => {
        // Not fatal: the others still accept. Try again in a while.
        this.http.off('listening', listening);
        this.acceptState = 'paused';
        process.stderr.write(`node ${this.options.nodeId}: cannot accept again: ${err.message}\n`);
        setTimeout(() => this.gateAccepting(), RELISTEN_RETRY_MS).unref();
      };
      const listening = () => {
        this.http.off('error', failed);
        this.acceptState = 'accepting';
        // Stopped meanwhile: no listener may outlive stop().
        if (this.stopping) {
          NetServer.prototype.close.call(this.http);
          return;
        }
        this.onAcceptingChange?.(true);
        this.gateAccepting();
      };
      this.http.once('error', failed);
      this.http.once('listening', listening);
      this.http.listen({ port, host: this.options.host, backlog: 65_535 });
    } else {
      this.acceptState = state;
    }
  }

  /** Closes every device with 1001 (going away), leaves the cluster and closes the listener. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.acceptCeiling = undefined;
    this.sweep.stop();
    if (this.drainTimer) clearInterval(this.drainTimer);
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.lag.disable();
    await this.queue.stop();
    this.devicePort.close();
    for (const conn of this.connections.values())
      conn.ws.close(CloseCode.GoingAway, 'node stopping');
    this.http.closeIdleConnections();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      // Devices that never answer our close frame must not hold the shutdown.
      setTimeout(() => {
        for (const conn of this.connections.values()) conn.ws.terminate();
        this.http.closeAllConnections();
      }, 2000).unref();
    });
    this.hub?.close();
    this.peerServer?.close();
    await this.link.stop();
  }

  /**
   * Drains the node: `/healthz` turns 503, new upgrades are refused, and every
   * connection gets a goaway at a random moment in the window, then a close
   * after the goaway grace; at most `drainBatch` per 100 ms step. Resolves (the
   * returned `done`) when no connection is left.
   */
  drain(windowMs: number | undefined): {
    alreadyDraining: boolean;
    connections: number;
    windowMs: number;
  } {
    const window = windowMs ?? this.options.drainWindowMs;
    const connections = this.connections.size;
    if (this.draining) return { alreadyDraining: true, connections, windowMs: window };
    let resolve = () => {};
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    this.draining = { done, resolve };
    const start = monoMs();
    // A random moment in the window for each connection, handled in time order.
    const schedule = [...this.connections.values()]
      .map((conn) => ({ conn, atMs: start + this.random.next() * window }))
      .sort((a, b) => a.atMs - b.atMs);
    let next = 0;
    const step = () => {
      const now = monoMs();
      let sent = 0;
      while (next < schedule.length && sent < this.options.drainBatch) {
        const item = schedule[next];
        if (!item || item.atMs > now) break;
        next++;
        if (item.conn.ws.readyState === LeanWebSocket.OPEN && item.conn.forceCloseAtMs === 0) {
          this.goaway(item.conn, 'drain', CloseCode.GoingAway);
          sent++;
        }
      }
      if (this.connections.size === 0) {
        if (this.drainTimer) clearInterval(this.drainTimer);
        this.drainTimer = undefined;
        resolve();
      }
    };
    this.drainTimer = setInterval(step, 100);
    step();
    return { alreadyDraining: false, connections, windowMs: window };
  }

  /** Resolves when a drain has closed every connection (immediately when not draining). */
  drained(): Promise<void> {
    return this.draining?.done ?? Promise.resolve();
  }

  /** `draining`, or `over_capacity` at capacity when overload is `unhealthy`; else `ok`. */
  health(): 'ok' | 'draining' | 'over_capacity' {
    if (this.draining !== undefined) return 'draining';
    const full =
      this.options.overload === 'unhealthy' && this.connections.size >= this.options.maxConnections;
    return full ? 'over_capacity' : 'ok';
  }

  /** False while draining, and at capacity when overload is `unhealthy`. */
  healthy(): boolean {
    return this.health() === 'ok';
  }

  /** Runs every lifecycle check now (tests use it instead of waiting). */
  sweepHeartbeats(): void {
    this.sweep.sweepAll();
  }

  prometheus(): string {
    this.metrics.set('pushbench_connections', this.connections.size);
    return this.metrics.toPrometheus({ node: this.options.nodeId });
  }

  /** Devices this process holds now. */
  connectionCount(): number {
    return this.connections.size;
  }

  /**
   * In a multi-process node: every process's connection count (this one's at
   * `index`), so /metrics.json can answer for the whole node.
   */
  setProcessCounts(perProcess: number[], index: number): void {
    this.processCounts = { perProcess, index };
  }

  /** The harness reads these: `connections` and `nodeId` first. */
  metricsJson(): Record<string, unknown> {
    const multi = this.processCounts;
    return {
      nodeId: this.options.publicNodeId ?? this.options.nodeId,
      uptimeMs: Date.now() - this.startedAtMs,
      connections: multi
        ? multi.perProcess.reduce((a, b) => a + b, 0) -
          (multi.perProcess[multi.index] ?? 0) +
          this.connections.size
        : this.connections.size,
      // Which of the node's processes answered, and every process's count.
      ...(multi && {
        processes: {
          answeredBy: this.options.nodeId,
          index: multi.index,
          perProcess: multi.perProcess,
        },
      }),
      draining: this.draining !== undefined,
      d2dCache: { hits: this.targets.hits, misses: this.targets.misses },
      queue: this.queue.counts,
      metrics: this.metrics.toJSON(),
    };
  }

  countResponse(status: number): void {
    this.metrics.inc('pushbench_http_responses_total', { status });
  }

  // --- devices ------------------------------------------------------------------------

  /**
   * An upgrade node:http parsed: the hub's, or a device's whose head the port's
   * front left to node:http (another path, an unusual but valid head).
   */
  private onHttpUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (new URL(req.url ?? '/', 'http://node').pathname !== '/internal/hub') {
      this.onUpgrade(req, socket, head);
      return;
    }
    socket.on('error', destroyOnError);
    this.onHubUpgrade(req, socket, head, (status, reason, error) => {
      this.metrics.inc('pushbench_upgrades_refused_total', { status, reason: error });
      refuseUpgrade(socket, status, reason, error);
    });
  }

  private onUpgrade(req: UpgradeRequest, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyOnError);
    const url = new URL(req.url ?? '/', 'http://node');
    const refuse = (status: number, reason: string, error: string, headers = '') => {
      this.metrics.inc('pushbench_upgrades_refused_total', { status, reason: error });
      refuseUpgrade(socket, status, reason, error, headers);
    };
    if (url.pathname !== '/ws') {
      refuse(404, 'Not Found', 'no_such_route');
      return;
    }
    if (this.draining) {
      refuse(503, 'Service Unavailable', 'draining', 'Retry-After: 1\r\n');
      return;
    }
    if (
      this.options.overload === 'refuse' &&
      this.connections.size >= this.options.maxConnections
    ) {
      refuse(503, 'Service Unavailable', 'node_full', 'Retry-After: 1\r\n');
      return;
    }
    const check = verifyToken(url.searchParams.get('token'), this.options.secret);
    if (!check.ok) {
      refuse(401, 'Unauthorized', `token_${check.problem}`);
      return;
    }
    if (this.admission && !this.admission.take(monoMs())) {
      const wait = Math.max(1, Math.ceil(this.admission.waitMs(monoMs()) / 1000));
      refuse(429, 'Too Many Requests', 'admission_rate', `Retry-After: ${wait}\r\n`);
      return;
    }
    // The WebSocket server attaches its own error listener; one is enough per socket.
    socket.off('error', destroyOnError);
    const hello = url.searchParams.get('hello') === '1';
    const registered = url.searchParams.get('registered') === '1';
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.onConnection(ws, check.claims, hello, registered),
    );
  }

  private onHubUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    refuse: (status: number, reason: string, error: string) => void,
  ): void {
    const header = req.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
    const expected = Buffer.from(this.options.apiKey);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      refuse(401, 'Unauthorized', 'unauthorized');
      return;
    }
    if (this.hub === undefined) {
      // Only a broker held in this process can be shared through a hub; with Redis
      // (or when this node joined another's hub) the nodes already share everything.
      const shared = this.broker.share?.();
      if (shared === undefined) {
        refuse(404, 'Not Found', 'no_hub_with_redis');
        return;
      }
      this.hub = new Hub(this.registry, shared);
    }
    this.hub.handleUpgrade(req, socket, head);
  }

  private onConnection(
    ws: DeviceSocket,
    claims: DeviceClaims,
    hello = false,
    registered = false,
  ): void {
    const now = monoMs();
    const jitter = this.random.next() * this.options.lifetimeJitterMs;
    const conn: DeviceConnection = {
      ws,
      deviceId: claims.deviceId,
      accountId: claims.accountId,
      connId: `${this.options.nodeId}.${this.instance}.${++this.connSeq}`,
      lastSeenMs: now,
      connectedAtMs: now,
      lifetimeEndMs: now + Math.max(0, this.options.maxLifetimeMs - jitter),
      forceCloseAtMs: 0,
      forceCloseCode: CloseCode.GoingAway,
      rooms: undefined,
      presence: false,
      d2dBucket: undefined,
      pushBucket: undefined,
      sweepBucket: -1,
    };
    ws.owner = conn;
    this.metrics.inc('pushbench_connects_total');
    this.sweep.add(conn);
    const previous = this.connections.put(conn);
    if (previous) this.replace(previous);
    if (this.acceptCeiling?.below === true) this.gateAccepting();
    if (
      this.options.overload === 'crash' &&
      this.connections.size > this.options.maxConnections &&
      !this.crashed
    ) {
      this.crashed = true;
      this.options.onOverloadCrash?.(this.connections.size);
    }
    // Asked for with `?hello=1`: which node and connection this is (a client behind a
    // balancer cannot otherwise tell, e.g. to attribute its losses to the node that died).
    if (hello) {
      this.sendTo(
        conn,
        encodeFrame({
          type: 'hello',
          nodeId: this.options.publicNodeId ?? this.options.nodeId,
          connId: conn.connId,
        }),
      );
    }
    this.registry
      .register(
        conn.deviceId,
        {
          nodeId: this.options.nodeId,
          connId: conn.connId,
          accountId: conn.accountId,
          connectedAtMs: Date.now(),
          ...(this.peerAddress !== undefined && { peer: this.peerAddress }),
        },
        this.options.registryTtlMs,
      )
      .then((replaced) => {
        // Asked for with `?registered=1`: the device is now reachable through the registry
        // (what Pushy calls client registration; its latency follows the datastore's).
        if (registered && this.connections.get(conn.deviceId) === conn) {
          this.sendTo(conn, REGISTERED_FRAME);
        }
        // The same device connected elsewhere before: tell that node to close the old socket.
        if (replaced && replaced.nodeId !== this.options.nodeId) {
          this.link
            .request(
              replaced.nodeId,
              { t: 'replace', deviceId: conn.deviceId, connId: replaced.connId },
              this.options.nodeRequestTimeoutMs,
              replaced.peer,
            )
            .catch(() => {});
        }
      })
      .catch(() =>
        this.metrics.inc('pushbench_messages_total', {
          path: 'registry',
          outcome: 'register_failed',
        }),
      );
    this.publishPresence(conn, 'online');
  }

  /**
   * Refreshes every connection's registry entry in batches and repairs the stale
   * ones (re-registers the gone), counting each pass. A pass already running
   * makes this one wait for it and then run again (the backend may have dropped
   * again in between).
   */
  private async recheckRegistry(): Promise<void> {
    if (this.recheck) {
      this.recheckAgain = true;
      return;
    }
    this.metrics.inc('pushbench_registry_rechecks_total');
    const run = (async () => {
      const all = [...this.connections.values()];
      for (let i = 0; i < all.length; i += RECHECK_BATCH) {
        const items = all
          .slice(i, i + RECHECK_BATCH)
          .filter((c) => this.connections.get(c.deviceId) === c)
          .map((c) => ({ deviceId: c.deviceId, connId: c.connId }));
        if (items.length === 0) continue;
        try {
          const result = await this.registry.refresh(items, this.options.registryTtlMs);
          await Promise.all(result.stale.map((s) => this.repairEntry(s.deviceId, s.connId)));
        } catch {
          // Down again: the next reconnect starts another pass.
          this.metrics.inc('pushbench_messages_total', {
            path: 'registry',
            outcome: 'refresh_failed',
          });
          return;
        }
      }
    })();
    this.recheck = run;
    await run;
    this.recheck = undefined;
    if (this.recheckAgain) {
      this.recheckAgain = false;
      await this.recheckRegistry();
    }
  }

  private recheck: Promise<void> | undefined;
  private recheckAgain = false;

  /**
   * A refresh found this connection's registry entry gone or pointing elsewhere.
   * Gone (expired during a registry outage): register it again. Pointing to a
   * newer connection of the device: this one was replaced and nobody told us.
   */
  private async repairEntry(deviceId: string, connId: string): Promise<void> {
    const conn = this.connections.get(deviceId);
    if (!conn || conn.connId !== connId) return;
    const entry = await this.registry.lookup(deviceId).catch(() => null);
    if (entry === null) return;
    if (entry === undefined) {
      this.metrics.inc('pushbench_messages_total', { path: 'registry', outcome: 're_registered' });
      await this.registry
        .register(
          deviceId,
          {
            nodeId: this.options.nodeId,
            connId,
            accountId: conn.accountId,
            connectedAtMs: Date.now(),
            ...(this.peerAddress !== undefined && { peer: this.peerAddress }),
          },
          this.options.registryTtlMs,
        )
        .catch(() => {});
    } else if (entry.connId !== connId) {
      this.replace(conn);
    }
  }

  private replace(previous: DeviceConnection): void {
    this.metrics.inc('pushbench_disconnects_total', { reason: 'replaced' });
    this.sendTo(previous, encodeFrame({ type: 'goaway', reason: 'replaced', reconnectAfterMs: 0 }));
    previous.ws.close(CloseCode.Replaced, 'replaced by a newer connection');
  }

  /** Called for every frame a device sends. */
  onDeviceMessage(conn: DeviceConnection, data: Buffer, isBinary: boolean): void {
    conn.lastSeenMs = monoMs();
    if (isBinary) {
      this.metrics.inc('pushbench_bad_frames_total', { kind: 'binary' });
      conn.ws.close(CloseCode.UnsupportedData, 'binary frames are not part of the protocol');
      return;
    }
    const parsed = parseDeviceFrame(data.toString());
    if (!parsed.ok) {
      if (parsed.kind === 'violation') {
        this.metrics.inc('pushbench_bad_frames_total', { kind: 'not_a_frame' });
        conn.ws.close(CloseCode.PolicyViolation, parsed.error);
      } else {
        this.metrics.inc('pushbench_bad_frames_total', { kind: parsed.code });
        this.sendTo(
          conn,
          encodeFrame({ type: 'error', code: parsed.code, message: parsed.error, ref: parsed.ref }),
        );
      }
      return;
    }
    this.handleFrame(conn, parsed.frame).catch((err: unknown) => {
      const ref = 'ref' in parsed.frame ? parsed.frame.ref : undefined;
      this.sendTo(
        conn,
        encodeFrame({ type: 'error', code: 'unavailable', message: (err as Error).message, ref }),
      );
    });
  }

  private async handleFrame(conn: DeviceConnection, frame: DeviceFrame): Promise<void> {
    switch (frame.type) {
      case 'ack': {
        this.metrics.inc('pushbench_acks_total');
        const waiter = this.pendingAcks.get(`${conn.deviceId}\n${frame.id}`);
        waiter?.(true);
        return;
      }
      case 'd2d': {
        const started = monoMs();
        const outcome = await this.d2d(conn, frame.to, frame.id, frame.payloadJson);
        this.sendTo(
          conn,
          encodeFrame({ type: 'd2d_status', id: frame.id, to: frame.to, status: outcome }),
        );
        this.metrics.inc('pushbench_messages_total', { path: 'd2d', outcome });
        this.metrics.observe('pushbench_d2d_seconds', (monoMs() - started) / 1000);
        return;
      }
      case 'subscribe': {
        const r = await this.rooms.subscribe(conn, frame.room, frame.dump, frame.since);
        if (!r.ok) {
          this.metrics.inc('pushbench_bad_frames_total', { kind: r.code });
          this.sendTo(
            conn,
            encodeFrame({ type: 'error', code: r.code, message: r.error, ref: frame.ref }),
          );
          return;
        }
        const h = r.history;
        this.sendTo(
          conn,
          encodeFrame({
            type: 'subscribed',
            room: frame.room,
            ref: frame.ref,
            ...(h && {
              epoch: h.epoch,
              offset: h.offset,
              complete: h.complete,
              messages: h.messages.map((m) => ({
                offset: m.offset,
                message: JSON.parse(m.data) as unknown,
              })),
            }),
            ...(r.recovered !== undefined && { recovered: r.recovered }),
          }),
        );
        return;
      }
      case 'unsubscribe':
        this.rooms.unsubscribe(conn, frame.room);
        this.sendTo(conn, encodeFrame({ type: 'unsubscribed', room: frame.room, ref: frame.ref }));
        return;
      case 'devices': {
        const devices = await this.accountDevices(conn.accountId);
        this.sendTo(
          conn,
          encodeFrame({ type: 'devices', account: conn.accountId, ref: frame.ref, devices }),
        );
        return;
      }
      case 'presence':
        await this.setPresence(conn, frame.subscribe);
        this.sendTo(
          conn,
          encodeFrame({ type: 'presence', subscribed: frame.subscribe, ref: frame.ref }),
        );
        return;
    }
  }

  /** Called when a device's socket closes, for any reason. */
  onDeviceClose(conn: DeviceConnection, code: number): void {
    this.sweep.remove(conn);
    this.rooms.leaveAll(conn);
    if (conn.presence) this.presenceSubscribers.get(conn.accountId)?.delete(conn);
    const current = this.connections.deleteIfCurrent(conn);
    if (this.acceptCeiling?.below === false) this.gateAccepting();
    if (code !== CloseCode.Replaced) {
      this.metrics.inc('pushbench_disconnects_total', { reason: `close_${code}` });
    }
    // Compare-and-delete: if the device already reconnected (here or elsewhere), its
    // newer entry stays.
    this.registry.unregister(conn.deviceId, conn.connId).catch(() => {});
    if (current) this.publishPresence(conn, 'offline');
    if (this.draining && this.connections.size === 0) this.draining.resolve();
  }

  /** Writes a frame, applying the slow-consumer policy; returns whether it was written. */
  private sendTo(
    conn: DeviceConnection,
    frame: string | Buffer,
    onWritten?: (err?: Error | null) => void,
  ): boolean {
    if (conn.ws.readyState !== LeanWebSocket.OPEN) return false;
    // ws.send never blocks, so a slow device would grow our memory without bound.
    if (conn.ws.bufferedAmount > this.options.maxBufferedBytes) {
      const action = this.options.slowConsumer;
      this.metrics.inc('pushbench_slow_consumer_total', { action });
      if (action === 'disconnect') {
        // A close frame would queue behind the full buffer and never be read:
        // drop the connection now (the client sees 1006; it is counted here).
        this.metrics.inc('pushbench_disconnects_total', { reason: 'slow_consumer' });
        conn.ws.terminate();
      }
      return false;
    }
    // A buffer is a frame a fan-out encoded once for all its recipients.
    if (typeof frame === 'string') conn.ws.send(frame, onWritten);
    else conn.ws.sendEncoded(frame, onWritten);
    return true;
  }

  private goaway(conn: DeviceConnection, reason: 'lifetime' | 'drain', closeCode: number): void {
    const reconnectAfterMs =
      reason === 'drain'
        ? Math.round(this.random.next() * 1000)
        : Math.round(this.random.next() * Math.min(this.options.goawayGraceMs, 5000));
    conn.forceCloseAtMs = monoMs() + this.options.goawayGraceMs;
    conn.forceCloseCode = closeCode;
    this.sendTo(conn, encodeFrame({ type: 'goaway', reason, reconnectAfterMs }));
    if (reason === 'drain') {
      // A drain cannot wait a whole grace per connection: close after the goaway is out.
      conn.ws.close(closeCode, 'draining');
    }
  }

  // --- routing ------------------------------------------------------------------------

  /** Delivers to a device connected here. */
  private deliverLocal(
    conn: DeviceConnection,
    id: string,
    payloadJson: string,
    wantAck: boolean,
    ackTimeoutMs: number,
  ): Promise<PushOutcome> {
    const now = monoMs();
    conn.pushBucket ??= new TokenBucket(
      this.options.pushRatePerSec,
      2 * this.options.pushRatePerSec,
      now,
    );
    if (!conn.pushBucket.take(now)) return Promise.resolve('rate_limited');
    return new Promise((resolve) => {
      let acked: ((ok: boolean) => void) | undefined;
      const key = `${conn.deviceId}\n${id}`;
      if (wantAck) {
        // Registered before the write so an ack racing the write callback is not lost.
        const timer = setTimeout(() => acked?.(false), ackTimeoutMs);
        acked = (ok) => {
          clearTimeout(timer);
          this.pendingAcks.delete(key);
          resolve(ok ? 'acked' : 'no_ack');
        };
        this.pendingAcks.set(key, acked);
      }
      const written = this.sendTo(conn, encodePushFrame(id, payloadJson), (err) => {
        if (err) {
          // The socket failed before taking the frame (it closed under us).
          acked?.(false);
          resolve('not_connected');
          return;
        }
        this.metrics.observe('pushbench_push_write_seconds', (monoMs() - now) / 1000);
      });
      if (!written) {
        if (acked) {
          this.pendingAcks.delete(key);
        }
        resolve(conn.ws.readyState === LeanWebSocket.OPEN ? 'overloaded' : 'not_connected');
      } else if (!wantAck) {
        // "Delivered" means written into the device's socket, not flushed by the
        // kernel: a device that stops reading must not hold the caller's request
        // open; its growing buffer trips the slow-consumer bound instead.
        resolve('delivered');
      }
    });
  }

  /**
   * Routes one push: locally when the device is here, else through the
   * registry to the holding node (a node-to-node request), else not_connected.
   */
  async route(
    deviceId: string,
    id: string,
    payloadJson: string,
    wantAck: boolean,
    ackTimeoutMs: number,
  ): Promise<{ outcome: PushOutcome; id: string }> {
    const local = this.connections.get(deviceId);
    if (local)
      return {
        outcome: await this.deliverLocal(local, id, payloadJson, wantAck, ackTimeoutMs),
        id,
      };
    let entry: Awaited<ReturnType<PushRegistry['lookup']>>;
    try {
      entry = await this.registry.lookup(deviceId);
    } catch {
      return { outcome: 'unavailable', id };
    }
    if (!entry || entry.nodeId === this.options.nodeId) return { outcome: 'not_connected', id };
    try {
      const reply = await this.link.request(
        entry.nodeId,
        { t: 'push', deviceId, id, payloadJson, wantAck, ackTimeoutMs },
        this.options.nodeRequestTimeoutMs + (wantAck ? ackTimeoutMs : 0),
        entry.peer,
      );
      return { outcome: reply.outcome as PushOutcome, id };
    } catch (err) {
      return {
        outcome: err instanceof NodeUnreachableError ? 'node_unreachable' : 'unavailable',
        id,
      };
    }
  }

  async pushDirect(
    deviceId: string,
    messageId: string | undefined,
    payloadJson: string,
    ack: { wait: boolean; timeoutMs: number },
  ): Promise<{ outcome: PushOutcome; id: string }> {
    const id = messageId ?? `${this.options.nodeId}-${++this.messageSeq}`;
    const r = await this.route(deviceId, id, payloadJson, ack.wait, ack.timeoutMs);
    this.metrics.inc('pushbench_messages_total', { path: 'direct', outcome: r.outcome });
    return r;
  }

  async enqueue(messages: readonly QueueBody[]): Promise<string[]> {
    const ids: string[] = [];
    for (const m of messages) {
      try {
        ids.push(
          await this.broker.enqueue(
            JSON.stringify({
              device: m.device,
              id: m.id,
              payload: JSON.parse(m.payloadJson) as unknown,
            }),
          ),
        );
      } catch (err) {
        if (err instanceof QueueFullError) {
          // The caller learns which of its batch were queued before the refusal.
          err.queued = [...ids];
          const queued = { path: 'queue', outcome: 'queued' };
          if (ids.length > 0) this.metrics.inc('pushbench_messages_total', queued, ids.length);
          this.metrics.inc(
            'pushbench_messages_total',
            { path: 'queue', outcome: 'queue_full' },
            messages.length - ids.length,
          );
        }
        throw err;
      }
    }
    this.metrics.inc(
      'pushbench_messages_total',
      { path: 'queue', outcome: 'queued' },
      messages.length,
    );
    const depth = await this.broker.queueDepth().catch(() => undefined);
    if (depth) {
      this.metrics.set('pushbench_queue_depth', depth.pending);
      this.metrics.set('pushbench_dead_letters', depth.deadLetters);
    }
    return ids;
  }

  publishRoom(room: string, messageJson: string): Promise<{ offset: number; epoch: string }> {
    this.metrics.inc('pushbench_messages_total', { path: 'room', outcome: 'published' });
    return this.rooms.publish(room, messageJson);
  }

  async accountDevices(
    accountId: string,
  ): Promise<{ deviceId: string; nodeId: string; connectedAtMs: number }[]> {
    const list = await this.registry.accountDevices(accountId);
    return list
      .map((d) => ({
        deviceId: d.deviceId,
        nodeId: d.entry.nodeId,
        connectedAtMs: d.entry.connectedAtMs,
      }))
      .sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  }

  private async d2d(
    conn: DeviceConnection,
    to: string,
    id: string,
    payloadJson: string,
  ): Promise<D2dOutcome> {
    const now = monoMs();
    conn.d2dBucket ??= new TokenBucket(
      this.options.d2dRatePerSec,
      2 * this.options.d2dRatePerSec,
      now,
    );
    if (!conn.d2dBucket.take(now)) return 'rate_limited';
    const frame = { deviceId: to, from: conn.deviceId, id, payloadJson };
    const first = await this.d2dAttempt(conn, frame);
    // A cached location that said "not here" (the device moved, or connected since
    // "not connected" was cached): forget it and ask the registry once more.
    if (first.outcome === 'not_connected' && first.hit && first.definite) {
      this.targets.invalidate(to);
      const again = await this.d2dAttempt(conn, frame);
      if (again.outcome === 'not_connected') this.targets.invalidate(to);
      return again.outcome;
    }
    if (first.outcome === 'not_connected') this.targets.invalidate(to);
    return first.outcome;
  }

  /**
   * One lookup and delivery of a d2d message: the outcome, whether the lookup came
   * from the cache, and whether "not connected" is certain (a node answered, or the
   * registry had no entry) rather than a forward that timed out and may yet arrive.
   */
  private async d2dAttempt(
    conn: DeviceConnection,
    frame: { deviceId: string; from: string; id: string; payloadJson: string },
  ): Promise<{ outcome: D2dOutcome; hit: boolean; definite: boolean }> {
    const hitsBefore = this.targets.hits;
    let entry: Awaited<ReturnType<PushRegistry['lookup']>>;
    try {
      entry = await this.targets.lookup(frame.deviceId);
    } catch {
      return { outcome: 'unavailable', hit: false, definite: true };
    }
    const hit = this.targets.hits > hitsBefore;
    this.metrics.inc('pushbench_d2d_cache_total', { result: hit ? 'hit' : 'miss' });
    if (!entry) return { outcome: 'not_connected', hit, definite: true };
    if (!d2dAllowed(conn.accountId, entry.accountId, this.options.d2dAllow)) {
      return { outcome: 'forbidden', hit, definite: true };
    }
    if (entry.nodeId === this.options.nodeId) {
      const local = this.deliverD2dLocal(frame);
      return {
        outcome: local === 'delivered' ? 'delivered' : 'not_connected',
        hit,
        definite: true,
      };
    }
    try {
      const reply = await this.link.request(
        entry.nodeId,
        { t: 'd2d', ...frame },
        this.options.nodeRequestTimeoutMs,
        entry.peer,
      );
      return {
        outcome: reply.outcome === 'delivered' ? 'delivered' : 'not_connected',
        hit,
        definite: true,
      };
    } catch {
      return { outcome: 'not_connected', hit, definite: false };
    }
  }

  private deliverD2dLocal(f: {
    deviceId: string;
    from: string;
    id: string;
    payloadJson: string;
  }): string {
    const target = this.connections.get(f.deviceId);
    if (!target) return 'not_connected';
    return this.sendTo(target, encodeD2dFrame(f.from, f.id, f.payloadJson))
      ? 'delivered'
      : 'overloaded';
  }

  private async onNodeRequest(req: NodeRequest): Promise<NodeReply> {
    switch (req.t) {
      case 'push': {
        const conn = this.connections.get(req.deviceId);
        if (!conn) return { outcome: 'not_connected' };
        return {
          outcome: await this.deliverLocal(
            conn,
            req.id,
            req.payloadJson,
            req.wantAck,
            req.ackTimeoutMs,
          ),
        };
      }
      case 'd2d':
        return { outcome: this.deliverD2dLocal(req) };
      case 'replace': {
        const conn = this.connections.get(req.deviceId);
        if (conn && conn.connId === req.connId) this.replace(conn);
        return { outcome: 'ok' };
      }
    }
  }

  // --- presence -----------------------------------------------------------------------

  private presenceChannel(accountId: string): string {
    return `presence:${accountId}`;
  }

  private async setPresence(conn: DeviceConnection, on: boolean): Promise<void> {
    let set = this.presenceSubscribers.get(conn.accountId);
    if (on) {
      conn.presence = true;
      if (!set) {
        set = new Set();
        this.presenceSubscribers.set(conn.accountId, set);
        await this.broker.subscribe(this.presenceChannel(conn.accountId), (data) =>
          this.onPresence(conn.accountId, data),
        );
      }
      set.add(conn);
    } else {
      conn.presence = false;
      set?.delete(conn);
    }
  }

  private publishPresence(conn: DeviceConnection, status: 'online' | 'offline'): void {
    const event = JSON.stringify({ device: conn.deviceId, status, node: this.options.nodeId });
    this.broker.publish(this.presenceChannel(conn.accountId), event).catch(() => {});
  }

  private onPresence(accountId: string, data: string): void {
    const set = this.presenceSubscribers.get(accountId);
    if (!set || set.size === 0) return;
    let event: { device?: unknown; status?: unknown; node?: unknown };
    try {
      event = JSON.parse(data) as typeof event;
    } catch {
      return;
    }
    const frame = encodeFrame({
      type: 'presence',
      device: event.device,
      status: event.status,
      node: event.node,
    });
    for (const conn of set) if (conn.deviceId !== event.device) this.sendTo(conn, frame);
  }
}

/** Where a node's registry and broker live. */
export interface BackendChoice {
  /** Share through Redis (`redis://host:port`): a real cluster. */
  redisUrl?: string | undefined;
  /** Join a local cluster through another node's hub (`http://host:port` of that node). */
  join?: string | undefined;
  /** Prefix of every Redis key and channel (default `pushbench:`), so clusters can share a Redis. */
  redisPrefix?: string | undefined;
  /**
   * The registry's Redis when it is reached another way than the broker's (the same
   * Redis through a link of its own, so a fault can slow one and not the other).
   * Default: `redisUrl`.
   */
  registryRedisUrl?: string | undefined;
}

/** Starts a node and resolves with it and its address; the caller stops it. */
export async function startNode(
  options: Partial<NodeOptions> & Pick<NodeOptions, 'secret' | 'apiKey'> & BackendChoice,
  backends?: NodeBackends,
): Promise<{ node: PushNode; address: NodeAddress; backends: NodeBackends }> {
  const shared = backends ?? (await createBackends(options, options.apiKey));
  const node = new PushNode(options, shared);
  try {
    const address = await node.start();
    return { node, address, backends: shared };
  } catch (err) {
    if (!backends) {
      await shared.registry.close();
      await shared.broker.close();
    }
    throw err;
  }
}

/**
 * The backends a node uses: Redis ones with `redisUrl`; a hub client with
 * `join` (the other node's registry and broker, over one WebSocket); else
 * in-memory ones, which this node can share with joiners through its hub.
 */
export async function createBackends(
  choice: BackendChoice = {},
  apiKey = '',
): Promise<NodeBackends> {
  if (choice.redisUrl && choice.join) {
    throw new PushbenchError('PB_USAGE', 'use either --redis or --join, not both');
  }
  if (choice.registryRedisUrl && !choice.redisUrl) {
    throw new PushbenchError('PB_USAGE', "--registry-redis needs --redis (the broker's Redis)");
  }
  if (choice.join) {
    let url: URL;
    try {
      url = new URL('/internal/hub', choice.join);
    } catch {
      throw new PushbenchError(
        'PB_USAGE',
        `--join needs the http://host:port of a node, got "${choice.join}"`,
      );
    }
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const { HubClient } = await import('./hub-client.js');
    let client: Awaited<ReturnType<typeof HubClient.connect>>;
    try {
      client = await HubClient.connect(url.href, apiKey);
    } catch (err) {
      throw new PushbenchError('PB_BACKEND_UNREACHABLE', (err as Error).message);
    }
    return { registry: client, broker: client };
  }
  let registry: PushRegistry;
  try {
    registry = await createRegistry(
      choice.registryRedisUrl ?? choice.redisUrl,
      choice.redisPrefix ? { keyPrefix: choice.redisPrefix } : {},
    );
  } catch (err) {
    throw asBackendUnreachable(err);
  }
  try {
    return {
      registry,
      broker: await createBroker(
        choice.redisUrl,
        choice.redisPrefix ? { keyPrefix: choice.redisPrefix } : {},
      ),
    };
  } catch (err) {
    await registry.close();
    throw asBackendUnreachable(err);
  }
}

/**
 * A factory's rejection as it ends `serve`: a usage error as it is, anything
 * else (Redis unreachable, too old) as `PB_BACKEND_UNREACHABLE`.
 */
function asBackendUnreachable(err: unknown): PushbenchError {
  if (err instanceof PushbenchError && err.code === 'PB_USAGE') return err;
  return new PushbenchError('PB_BACKEND_UNREACHABLE', (err as Error).message);
}
