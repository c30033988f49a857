import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { PushbenchError } from '../core/errors.js';
import { ConnectionTable, type DeviceConnection } from './connections.js';
import { HeartbeatSweep } from './lifecycle.js';
import { NodeMetrics } from './metrics.js';
import { CloseCode, encodePushFrame, parseDeviceFrame } from './protocol.js';
import { createPushApi, type PushOutcome } from './push-api.js';
import { type DeviceClaims, verifyToken } from './token.js';

/** Settings of one reference node; {@link nodeDefaults} fills what is left out. */
export interface NodeOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  host: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port: number;
  /** HMAC secret that device tokens are signed with. Required. */
  secret: string;
  /** Bearer key for the HTTP API. Required. */
  apiKey: string;
  /** Name of this node in metrics and generated message ids. Default `node-1`. */
  nodeId: string;
  /** Heartbeat sweep (and ping) period. Default 10 s. */
  heartbeatIntervalMs: number;
  /** Silence after which a connection is closed. Default 30 s. */
  heartbeatTimeoutMs: number;
  /** Largest HTTP body. Default 64 KiB. */
  maxBodyBytes: number;
  /** Largest frame a device may send. Default 16 KiB. */
  maxFrameBytes: number;
  /** Bound on one connection's unsent bytes; pushes past it are refused (503) and counted. Default 1 MiB. */
  maxBufferedBytes: number;
}

/** Defaults for every optional node setting. */
export const nodeDefaults: Omit<NodeOptions, 'secret' | 'apiKey'> = {
  host: '127.0.0.1',
  port: 0,
  nodeId: 'node-1',
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 30_000,
  maxBodyBytes: 64 * 1024,
  maxFrameBytes: 16 * 1024,
  maxBufferedBytes: 1024 * 1024,
};

/** Where a started node listens. */
export interface NodeAddress {
  host: string;
  port: number;
  /** `ws://HOST:PORT/ws` */
  wsUrl: string;
  /** `http://HOST:PORT` */
  httpUrl: string;
}

const kConn = Symbol('pushbench.connection');
type TaggedSocket = WebSocket & { [kConn]?: DeviceConnection; [kNode]?: PushNode };
const kNode = Symbol('pushbench.node');

function monoMs(): number {
  return performance.now();
}

function refuseUpgrade(socket: Duplex, status: number, reason: string, error: string): void {
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

// Shared handlers: one function per event for every connection, not a closure each.
function onMessage(this: TaggedSocket, data: RawData, isBinary: boolean): void {
  const conn = this[kConn];
  const node = this[kNode];
  if (!conn || !node) return;
  conn.lastSeenMs = monoMs();
  if (isBinary) {
    node.metrics.badFrames++;
    this.close(CloseCode.UnsupportedData, 'binary frames are not part of the protocol');
    return;
  }
  const parsed = parseDeviceFrame(data.toString());
  if (!parsed.ok) {
    node.metrics.badFrames++;
    this.close(CloseCode.PolicyViolation, parsed.error);
    return;
  }
  switch (parsed.frame.type) {
    case 'ack':
      node.metrics.acks++;
      break;
  }
}

function onPong(this: TaggedSocket): void {
  const conn = this[kConn];
  if (conn) conn.lastSeenMs = monoMs();
}

function onError(this: TaggedSocket): void {
  // ws reports frame-level violations (unmasked frame, bad UTF-8, oversize) here and
  // has already sent the matching close code (1002/1007/1009); we only count them.
  // Without a listener the error would crash the node for every other device.
  const node = this[kNode];
  if (node) node.metrics.badFrames++;
}

function onClose(this: TaggedSocket): void {
  const conn = this[kConn];
  const node = this[kNode];
  if (!conn || !node) return;
  node.metrics.disconnectsTotal++;
  node.heartbeat.remove(conn);
  node.connections.deleteIfCurrent(conn);
  node.metrics.connections = node.connections.size;
}

/**
 * One reference push node: WebSocket endpoint for devices, HTTP API for
 * services, heartbeat sweep. It stands alone; the harness runs it as a separate
 * process and talks to it only over its sockets.
 */
export class PushNode {
  /** Counters served on `GET /metrics`. */
  readonly metrics = new NodeMetrics();
  /** Devices connected to this node. */
  readonly connections = new ConnectionTable();
  private readonly options: NodeOptions;
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  /** The heartbeat sweep (internal; shared handlers reach it). */
  readonly heartbeat: HeartbeatSweep;
  private messageSeq = 0;
  private readonly startedAtMs = Date.now();

  constructor(options: Partial<NodeOptions> & Pick<NodeOptions, 'secret' | 'apiKey'>) {
    this.options = { ...nodeDefaults, ...options };
    if (!this.options.secret)
      throw new PushbenchError('PB_USAGE', 'the node needs a token secret (--secret)');
    if (!this.options.apiKey)
      throw new PushbenchError('PB_USAGE', 'the node needs an API key (--api-key)');
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      // Per-message deflate costs tens of KB per connection at scale: off.
      perMessageDeflate: false,
      maxPayload: this.options.maxFrameBytes,
    });
    this.http = createServer(
      createPushApi(this, { apiKey: this.options.apiKey, maxBodyBytes: this.options.maxBodyBytes }),
    );
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.heartbeat = new HeartbeatSweep(
      this.metrics,
      { intervalMs: this.options.heartbeatIntervalMs, timeoutMs: this.options.heartbeatTimeoutMs },
      monoMs,
    );
  }

  /** Binds the port and starts the heartbeat; rejects with `PB_PORT_IN_USE` if taken. */
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
      this.http.listen(port, host, () => {
        this.http.off('error', onListenError);
        resolve();
      });
    });
    const address = this.http.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    this.heartbeat.start();
    const shownHost = host.includes(':') ? `[${host}]` : host;
    return {
      host,
      port: address.port,
      wsUrl: `ws://${shownHost}:${address.port}/ws`,
      httpUrl: `http://${shownHost}:${address.port}`,
    };
  }

  /** Closes every device with 1001 (going away), then the listener. */
  async stop(): Promise<void> {
    this.heartbeat.stop();
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
  }

  /** Runs one heartbeat pass now (tests use it instead of waiting). */
  sweepHeartbeats(): void {
    this.heartbeat.sweepAll();
  }

  /** Facts for `GET /metrics`. */
  describe(): Record<string, unknown> {
    return { nodeId: this.options.nodeId, uptimeMs: Date.now() - this.startedAtMs };
  }

  /** Writes a push to a device connected here. */
  deliver(
    deviceId: string,
    messageId: string | undefined,
    payloadJson: string,
  ): Promise<{ outcome: PushOutcome; id: string }> {
    const id = messageId ?? `${this.options.nodeId}-${++this.messageSeq}`;
    const conn = this.connections.get(deviceId);
    if (!conn || conn.ws.readyState !== WebSocket.OPEN) {
      this.metrics.pushesNotConnected++;
      return Promise.resolve({ outcome: 'not_connected', id });
    }
    // ws.send never blocks, so a slow device would grow our memory without bound.
    if (conn.ws.bufferedAmount > this.options.maxBufferedBytes) {
      this.metrics.pushesDropped++;
      return Promise.resolve({ outcome: 'overloaded', id });
    }
    return new Promise((resolve) => {
      conn.ws.send(encodePushFrame(id, payloadJson), (err) => {
        if (err) {
          this.metrics.pushesNotConnected++;
          resolve({ outcome: 'not_connected', id });
        } else {
          this.metrics.pushesDelivered++;
          resolve({ outcome: 'delivered', id });
        }
      });
    });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://node');
    if (url.pathname !== '/ws') {
      NodeMetrics.bump(this.metrics.upgradesRefused, 404);
      refuseUpgrade(socket, 404, 'Not Found', 'no_such_route');
      return;
    }
    const check = verifyToken(url.searchParams.get('token'), this.options.secret);
    if (!check.ok) {
      NodeMetrics.bump(this.metrics.upgradesRefused, 401);
      refuseUpgrade(socket, 401, 'Unauthorized', `token_${check.problem}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, check.claims));
  }

  private onConnection(ws: WebSocket, claims: DeviceClaims): void {
    const now = monoMs();
    const conn: DeviceConnection = {
      ws,
      deviceId: claims.deviceId,
      accountId: claims.accountId,
      lastSeenMs: now,
      connectedAtMs: now,
    };
    const tagged = ws as TaggedSocket;
    tagged[kConn] = conn;
    tagged[kNode] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onError);
    ws.on('close', onClose);
    this.metrics.connectsTotal++;
    this.heartbeat.add(conn);
    const previous = this.connections.put(conn);
    if (previous) {
      this.metrics.replaced++;
      previous.ws.close(CloseCode.Replaced, 'replaced by a newer connection');
    }
    this.metrics.connections = this.connections.size;
  }
}

/** Starts a node and resolves with it and its address; the caller stops it. */
export async function startNode(
  options: Partial<NodeOptions> & Pick<NodeOptions, 'secret' | 'apiKey'>,
): Promise<{ node: PushNode; address: NodeAddress }> {
  const node = new PushNode(options);
  const address = await node.start();
  return { node, address };
}
