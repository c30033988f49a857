/**
 * Direct links between nodes: Pushy's "look the device up in the registry,
 * then send the message directly to that Pushy". Each node process listens on
 * a peer port of its own (`host:0`, exclusive, so each worker of a
 * multi-process node has one) and writes `host:port` into the registry entry
 * of every device it holds (`RegistryEntry.peer`). A node carrying a request
 * for a device held elsewhere opens, once, a WebSocket to the holder's peer
 * address and sends the request there; the answers come back on it. Without
 * the broker or the hub in the path, a push forwarded between nodes costs one
 * hop, and a partition between two nodes cuts what it should.
 *
 * Wire (JSON text frames; one message, or an array of them, per frame,
 * coalesced per turn of the event loop as the hub's are):
 * - `GET /peer` upgrade with `Authorization: Bearer <api key>`; 401 otherwise,
 *   404 for any other path or plain request.
 * - caller -> holder `{"kind":"req","rid":n,"from":"<node>","req":{...}}`
 *   (cluster.ts `NodeRequest`), holder -> caller
 *   `{"kind":"rep","rid":n,"from":"<node>","rep":{"outcome":"..."}}`.
 * - A frame that is not JSON, or holds anything but those, closes the link
 *   with 1008 `not a peer message`; the requests in flight on it fail as
 *   `node_unreachable`, nothing else is touched.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { type RawData, WebSocketServer } from 'ws';
import { CloseCode } from '../core/ws/close-codes.js';
import type { NodeReply, NodeRequest } from './cluster.js';
import { Outbox } from './hub.js';

/** One message between nodes, as on the broker's inboxes (cluster.ts). */
export interface PeerEnvelope {
  kind: 'req' | 'rep';
  rid: number;
  from: string;
  req?: NodeRequest;
  rep?: NodeReply;
}

const str = (v: unknown): v is string => typeof v === 'string';

function isNodeRequest(v: unknown): v is NodeRequest {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  switch (r.t) {
    case 'push':
      return (
        str(r.deviceId) &&
        str(r.id) &&
        str(r.payloadJson) &&
        typeof r.wantAck === 'boolean' &&
        typeof r.ackTimeoutMs === 'number' &&
        Number.isFinite(r.ackTimeoutMs) &&
        r.ackTimeoutMs >= 0
      );
    case 'd2d':
      return str(r.deviceId) && str(r.from) && str(r.id) && str(r.payloadJson);
    case 'replace':
      return str(r.deviceId) && str(r.connId);
    default:
      return false;
  }
}

/** A well-formed envelope, or undefined. Used for the broker's inboxes too. */
export function toEnvelope(v: unknown): PeerEnvelope | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const e = v as Record<string, unknown>;
  if (!Number.isSafeInteger(e.rid) || !str(e.from)) return undefined;
  if (e.kind === 'req' && isNodeRequest(e.req)) return e as unknown as PeerEnvelope;
  if (
    e.kind === 'rep' &&
    typeof e.rep === 'object' &&
    e.rep !== null &&
    str((e.rep as Record<string, unknown>).outcome)
  ) {
    return e as unknown as PeerEnvelope;
  }
  return undefined;
}

/** The envelopes of one frame; undefined if it holds anything else. */
function parseFrame(data: RawData): PeerEnvelope[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(data.toString());
  } catch {
    return undefined;
  }
  const list = Array.isArray(v) ? v : [v];
  const out: PeerEnvelope[] = [];
  for (const item of list) {
    const env = toEnvelope(item);
    if (env === undefined) return undefined;
    out.push(env);
  }
  return out.length > 0 ? out : undefined;
}

const NOT_PEER = 'not a peer message';
const MAX_FRAME = 16 * 1024 * 1024;

/** Whether `host` names one address another host can reach (not `0.0.0.0`, `::`). */
export function isConcreteHost(host: string): boolean {
  return host !== '' && host !== '0.0.0.0' && host !== '::' && host !== '[::]';
}

/** The port a node process takes requests from its peers on. */
export class PeerServer {
  private readonly http: Server;
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_FRAME,
  });
  private readonly sockets = new Set<WebSocket>();

  /** `serve` carries out one request and answers it (any number at once). */
  constructor(
    private readonly apiKey: string,
    private readonly serve: (env: PeerEnvelope, reply: (rep: PeerEnvelope) => void) => void,
  ) {
    this.http = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"error":"not_found"}\n');
    });
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (_err, socket) => socket.destroy());
  }

  /** Listens on a free port of `host` of its own; resolves with `host:port`. */
  async listen(host: string): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen({ host, port: 0, exclusive: true }, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const address = this.http.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    return `${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  }

  /** Stops listening and closes every peer's link to this process. */
  close(): void {
    for (const ws of this.sockets) ws.terminate();
    this.http.close();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, text: string, error: string) => {
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":"${error}"}\n`,
      );
    };
    socket.on('error', () => socket.destroy());
    if (new URL(req.url ?? '/', 'http://peer').pathname !== '/peer') {
      refuse(404, 'Not Found', 'not_found');
      return;
    }
    const header = req.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
    const expected = Buffer.from(this.apiKey);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      refuse(401, 'Unauthorized', 'unauthorized');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.sockets.add(ws);
      const outbox = new Outbox((frame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(frame);
      });
      const reply = (rep: PeerEnvelope) => outbox.push(JSON.stringify(rep));
      ws.on('message', (data) => {
        const envs = parseFrame(data);
        if (envs === undefined || envs.some((e) => e.kind !== 'req')) {
          ws.close(CloseCode.PolicyViolation, NOT_PEER);
          return;
        }
        for (const env of envs) this.serve(env, reply);
      });
      ws.on('error', () => ws.terminate());
      ws.on('close', () => this.sockets.delete(ws));
    });
  }
}

/** This process's links to its peers' ports, one per address, opened when first needed. */
export class PeerLinks {
  private readonly links = new Map<string, { ws: WebSocket; outbox: Outbox; waiting: string[] }>();

  /**
   * `onReply` gets each answer; `onLost` is told when the link to an address
   * closes, so the requests in flight on it can fail at once.
   */
  constructor(
    private readonly apiKey: string,
    private readonly onReply: (env: PeerEnvelope) => void,
    private readonly onLost: (address: string) => void,
    /** How long a link may take to open. */
    private readonly openTimeoutMs = 5000,
  ) {}

  /** Sends one request envelope to the process at `address` (`host:port`). */
  send(address: string, env: PeerEnvelope): void {
    let link = this.links.get(address);
    if (link === undefined) link = this.open(address);
    const json = JSON.stringify(env);
    if (link.ws.readyState === WebSocket.OPEN) link.outbox.push(json);
    else link.waiting.push(json);
  }

  /** Closes every link. */
  close(): void {
    for (const [address, link] of this.links) {
      this.links.delete(address);
      link.ws.terminate();
    }
  }

  private open(address: string) {
    const ws = new WebSocket(`ws://${address}/peer`, {
      headers: { authorization: `Bearer ${this.apiKey}` },
      perMessageDeflate: false,
      maxPayload: MAX_FRAME,
      handshakeTimeout: this.openTimeoutMs,
    });
    const link = {
      ws,
      outbox: new Outbox((frame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(frame);
      }),
      waiting: [] as string[],
    };
    this.links.set(address, link);
    ws.on('open', () => {
      for (const json of link.waiting.splice(0)) link.outbox.push(json);
    });
    ws.on('message', (data) => {
      const envs = parseFrame(data);
      if (envs === undefined || envs.some((e) => e.kind !== 'rep')) {
        ws.close(CloseCode.PolicyViolation, NOT_PEER);
        return;
      }
      for (const env of envs) this.onReply(env);
    });
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      if (this.links.get(address) !== link) return;
      this.links.delete(address);
      this.onLost(address);
    });
    return link;
  }
}
