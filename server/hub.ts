import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { CloseCode } from '../core/ws/close-codes.js';
import type { Broker } from './broker.js';
import type { PushRegistry } from './registry.js';

/**
 * The embedded cluster hub: a node started without Redis shares its in-memory
 * registry and broker with other nodes over one WebSocket each
 * (`/internal/hub`, API key required). Nodes started with `--join` use
 * {@link HubClient} (hub-client.ts) as both their registry and broker, so a
 * local cluster routes pushes, rooms, presence and the queue across processes
 * with no external service. The hub is a single point of failure: for
 * production-like clusters, use Redis.
 *
 * Wire format, a JSON object per message, and a text frame holds one message
 * or a JSON array of them (both sides coalesce what they send in one turn of
 * the event loop into one frame: a node accepting a burst of devices makes two
 * registry and broker calls per device, and a frame each costs a write syscall
 * at both ends; a CPU profile of a 40,000-device hold put ~9 % of a node
 * worker's time in those calls):
 * - client -> hub `{"id": n, "target": "registry"|"broker", "method": name, "args": [...]}`
 * - hub -> client `{"id": n, "result": value}` or `{"id": n, "error": message, "code"?: code}`
 * - hub -> client `{"channel": name, "data": string}` for a subscribed channel
 * Requests are answered as each completes, not in order.
 */

/** The methods a client may call, per target; anything else is refused. */
export const hubMethods = {
  registry: ['register', 'lookup', 'refresh', 'unregister', 'accountDevices', 'nodeDevices'],
  broker: [
    'publish',
    'subscribe',
    'unsubscribe',
    'appendHistory',
    'history',
    'enqueue',
    'consume',
    'ack',
    'deadLetter',
    'queueDepth',
    'deadLetters',
  ],
} as const;

interface HubRequest {
  id: number;
  target: keyof typeof hubMethods;
  method: string;
  args: unknown[];
}

function isRequest(v: Partial<HubRequest> | null): v is HubRequest {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.id === 'number' &&
    (v.target === 'registry' || v.target === 'broker') &&
    typeof v.method === 'string' &&
    Array.isArray(v.args) &&
    (hubMethods[v.target] as readonly string[]).includes(v.method)
  );
}

/** The requests of one frame (one, or an array of them); undefined if any is not a hub request. */
function parseRequests(data: RawData): HubRequest[] | undefined {
  try {
    const v = JSON.parse(data.toString()) as unknown;
    const list = (Array.isArray(v) ? v : [v]) as Array<Partial<HubRequest> | null>;
    return list.length > 0 && list.every(isRequest) ? (list as HubRequest[]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Messages waiting to go out on one socket, sent as one frame at the end of
 * this turn of the event loop (see the wire format above).
 */
export class Outbox {
  private queued: string[] = [];
  private scheduled = false;

  /** `send` writes one frame; it is called only while messages are queued. */
  constructor(private readonly send: (frame: string) => void) {}

  /** Queues one message, already JSON. */
  push(json: string): void {
    this.queued.push(json);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends what is queued now. */
  flush(): void {
    this.scheduled = false;
    const batch = this.queued;
    if (batch.length === 0) return;
    this.queued = [];
    this.send(batch.length === 1 ? batch[0]! : `[${batch.join(',')}]`);
  }
}

/** Serves a node's registry and broker to the other nodes of a local cluster. */
export class Hub {
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 16 * 1024 * 1024,
  });
  /** Channels each client subscribed to, so a disconnect drops them. */
  private readonly channelsOf = new Map<WebSocket, Set<string>>();
  /** Clients per channel; the hub holds one broker subscription per channel. */
  private readonly clientsOf = new Map<string, Set<WebSocket>>();
  /** What goes out to each client, coalesced per turn of the event loop. */
  private readonly outboxOf = new Map<WebSocket, Outbox>();

  /**
   * `broker` must be the hub's own view of the node's broker (e.g. a
   * `MemoryBroker` made with `shareWith`), so the hub's subscriptions and the
   * node's never cancel each other.
   */
  constructor(
    private readonly registry: PushRegistry,
    private readonly broker: Broker,
  ) {}

  /** Completes an upgrade already authorised by the node. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.channelsOf.set(ws, new Set());
      this.outboxOf.set(
        ws,
        new Outbox((frame) => {
          if (ws.readyState === ws.OPEN) ws.send(frame);
        }),
      );
      ws.on('message', (data) => this.onFrame(ws, data));
      ws.on('error', () => ws.terminate());
      ws.on('close', () => this.drop(ws));
    });
  }

  /** Closes every client connection. */
  close(): void {
    for (const ws of this.channelsOf.keys()) ws.close(CloseCode.GoingAway, 'hub stopping');
  }

  private onFrame(ws: WebSocket, data: RawData): void {
    const requests = parseRequests(data);
    if (!requests) {
      ws.close(CloseCode.PolicyViolation, 'not a hub request');
      return;
    }
    for (const req of requests) void this.onRequest(ws, req);
  }

  private async onRequest(ws: WebSocket, req: HubRequest): Promise<void> {
    const reply = (body: Record<string, unknown>) => {
      this.outboxOf.get(ws)?.push(JSON.stringify({ id: req.id, ...body }));
    };
    try {
      let result: unknown;
      if (req.target === 'broker' && req.method === 'subscribe') {
        result = await this.subscribe(ws, String(req.args[0]));
      } else if (req.target === 'broker' && req.method === 'unsubscribe') {
        result = await this.unsubscribe(ws, String(req.args[0]));
      } else {
        const target = (req.target === 'registry'
          ? this.registry
          : this.broker) as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
        result = await target[req.method]?.(...req.args);
      }
      reply({ result: result ?? null });
    } catch (err) {
      reply({ error: (err as Error).message, code: (err as { code?: string }).code });
    }
  }

  private async subscribe(ws: WebSocket, channel: string): Promise<void> {
    this.channelsOf.get(ws)?.add(channel);
    let clients = this.clientsOf.get(channel);
    if (!clients) {
      clients = new Set();
      this.clientsOf.set(channel, clients);
      await this.broker.subscribe(channel, (data) => this.forward(channel, data));
    }
    clients.add(ws);
  }

  private async unsubscribe(ws: WebSocket, channel: string): Promise<void> {
    this.channelsOf.get(ws)?.delete(channel);
    const clients = this.clientsOf.get(channel);
    if (!clients) return;
    clients.delete(ws);
    if (clients.size === 0) {
      this.clientsOf.delete(channel);
      await this.broker.unsubscribe(channel);
    }
  }

  private forward(channel: string, data: string): void {
    const message = JSON.stringify({ channel, data });
    for (const ws of this.clientsOf.get(channel) ?? []) this.outboxOf.get(ws)?.push(message);
  }

  private drop(ws: WebSocket): void {
    for (const channel of this.channelsOf.get(ws) ?? []) void this.unsubscribe(ws, channel);
    this.channelsOf.delete(ws);
    this.outboxOf.delete(ws);
  }
}
