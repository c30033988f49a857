import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
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
 * Wire format, one JSON object per text frame:
 * - client -> hub `{"id": n, "target": "registry"|"broker", "method": name, "args": [...]}`
 * - hub -> client `{"id": n, "result": value}` or `{"id": n, "error": message, "code"?: code}`
 * - hub -> client `{"channel": name, "data": string}` for a subscribed channel
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

function parseRequest(data: RawData): HubRequest | undefined {
  try {
    const v = JSON.parse(data.toString()) as Partial<HubRequest>;
    if (
      typeof v.id === 'number' &&
      (v.target === 'registry' || v.target === 'broker') &&
      typeof v.method === 'string' &&
      Array.isArray(v.args) &&
      (hubMethods[v.target] as readonly string[]).includes(v.method)
    ) {
      return v as HubRequest;
    }
  } catch {
    // fall through
  }
  return undefined;
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
      ws.on('message', (data) => void this.onRequest(ws, data));
      ws.on('error', () => ws.terminate());
      ws.on('close', () => this.drop(ws));
    });
  }

  /** Closes every client connection. */
  close(): void {
    for (const ws of this.channelsOf.keys()) ws.close(1001, 'hub stopping');
  }

  private async onRequest(ws: WebSocket, data: RawData): Promise<void> {
    const req = parseRequest(data);
    if (!req) {
      ws.close(1008, 'not a hub request');
      return;
    }
    const reply = (body: Record<string, unknown>) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ id: req.id, ...body }));
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
    const frame = JSON.stringify({ channel, data });
    for (const ws of this.clientsOf.get(channel) ?? [])
      if (ws.readyState === ws.OPEN) ws.send(frame);
  }

  private drop(ws: WebSocket): void {
    for (const channel of this.channelsOf.get(ws) ?? []) void this.unsubscribe(ws, channel);
    this.channelsOf.delete(ws);
  }
}
