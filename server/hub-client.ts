import WebSocket from 'ws';
import {
  BrokerUnavailableError,
  QueueFullError,
  RegistryUnavailableError,
} from '../core/errors.js';
import { CloseCode } from '../core/ws/close-codes.js';
import type { Broker, ChannelHandler, QueuedMessage, RoomHistory } from './broker.js';
import { type hubMethods, Outbox } from './hub.js';
import type {
  PushRegistry,
  RefreshItem,
  RefreshResult,
  RegisteredDevice,
  RegistryEntry,
} from './registry.js';

type Target = keyof typeof hubMethods;

/**
 * A node's registry and broker when it joined a local cluster's hub (see
 * hub.ts): every call is forwarded over one WebSocket to the hub node, and
 * subscribed channels' messages come back on it. If the hub is unreachable,
 * calls fail fast with the Unavailable errors callers map to HTTP 503.
 */
export class HubClient implements PushRegistry, Broker {
  private ws: WebSocket | undefined;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; target: Target }
  >();
  private readonly handlers = new Map<string, Set<ChannelHandler>>();
  private closed = false;
  /** Requests of this turn of the event loop, sent as one frame (see hub.ts). */
  private readonly outbox = new Outbox((frame) => {
    // Closed since: onClose has already rejected these requests.
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(frame);
  });

  private constructor(
    private readonly url: string,
    private readonly apiKey: string,
    private readonly timeoutMs: number,
  ) {}

  /** Connects to a hub at `url` (`ws://host:port/internal/hub`); rejects with a one-line reason. */
  static async connect(url: string, apiKey: string, timeoutMs = 5000): Promise<HubClient> {
    const client = new HubClient(url, apiKey, timeoutMs);
    await client.open();
    return client;
  }

  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, {
        headers: { authorization: `Bearer ${this.apiKey}` },
        perMessageDeflate: false,
      });
      const fail = (err: Error) =>
        reject(
          new RegistryUnavailableError(
            `cannot reach the cluster hub at ${this.url}: ${err.message}`,
          ),
        );
      ws.once('error', fail);
      ws.once('unexpected-response', (_req, res) => {
        fail(new Error(`HTTP ${res.statusCode}`));
        res.destroy();
      });
      ws.once('open', () => {
        ws.off('error', fail);
        this.ws = ws;
        ws.on('message', (data) => this.onMessage(String(data)));
        ws.on('error', () => {});
        ws.on('close', () => this.onClose());
        resolve();
      });
    });
  }

  private onClose(): void {
    this.ws = undefined;
    for (const [id, p] of this.pending) {
      p.reject(this.unavailable(p.target, 'connection to the cluster hub closed'));
      this.pending.delete(id);
    }
    if (this.closed) return;
    // Reconnect in the background and restore subscriptions.
    setTimeout(() => {
      if (this.closed) return;
      this.open().then(
        async () => {
          for (const channel of this.handlers.keys())
            await this.call('broker', 'subscribe', [channel]).catch(() => {});
        },
        () => this.onClose(),
      );
    }, 1000).unref();
  }

  private unavailable(target: Target, message: string): Error {
    return target === 'registry'
      ? new RegistryUnavailableError(message)
      : new BrokerUnavailableError(message);
  }

  private onMessage(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (Array.isArray(parsed)) for (const one of parsed) this.onOne(one);
    else this.onOne(parsed);
  }

  private onOne(parsed: unknown): void {
    if (typeof parsed !== 'object' || parsed === null) return;
    const msg = parsed as {
      id?: number;
      result?: unknown;
      error?: string;
      code?: string;
      channel?: string;
      data?: string;
    };
    if (typeof msg.channel === 'string' && typeof msg.data === 'string') {
      for (const h of this.handlers.get(msg.channel) ?? []) h(msg.data);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.error !== undefined) {
      const err = msg.code?.endsWith('UNAVAILABLE')
        ? this.unavailable(p.target, msg.error)
        : msg.code === 'PB_QUEUE_FULL'
          ? new QueueFullError(msg.error)
          : new Error(msg.error);
      p.reject(err);
    } else {
      p.resolve(msg.result);
    }
  }

  private call<T>(
    target: Target,
    method: string,
    args: unknown[],
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(this.unavailable(target, `cluster hub ${this.url} is not connected`));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          this.unavailable(target, `cluster hub did not answer ${method} within ${timeoutMs}ms`),
        );
      }, timeoutMs);
      this.pending.set(id, {
        target,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.outbox.push(JSON.stringify({ id, target, method, args }));
    });
  }

  // --- PushRegistry -------------------------------------------------------------------

  async register(
    deviceId: string,
    entry: RegistryEntry,
    ttlMs: number,
  ): Promise<RegistryEntry | undefined> {
    return (
      (await this.call<RegistryEntry | null>('registry', 'register', [deviceId, entry, ttlMs])) ??
      undefined
    );
  }
  async lookup(deviceId: string): Promise<RegistryEntry | undefined> {
    return (await this.call<RegistryEntry | null>('registry', 'lookup', [deviceId])) ?? undefined;
  }
  refresh(items: readonly RefreshItem[], ttlMs: number): Promise<RefreshResult> {
    return this.call('registry', 'refresh', [items, ttlMs]);
  }
  unregister(deviceId: string, connId: string): Promise<boolean> {
    return this.call('registry', 'unregister', [deviceId, connId]);
  }
  accountDevices(accountId: string): Promise<RegisteredDevice[]> {
    return this.call('registry', 'accountDevices', [accountId]);
  }
  nodeDevices(nodeId: string): Promise<RegisteredDevice[]> {
    return this.call('registry', 'nodeDevices', [nodeId]);
  }

  // --- Broker -------------------------------------------------------------------------

  async publish(channel: string, data: string): Promise<void> {
    await this.call('broker', 'publish', [channel, data]);
  }
  async subscribe(channel: string, handler: ChannelHandler): Promise<void> {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      set.add(handler);
      await this.call('broker', 'subscribe', [channel]);
      return;
    }
    set.add(handler);
  }
  async unsubscribe(channel: string): Promise<void> {
    if (!this.handlers.delete(channel)) return;
    await this.call('broker', 'unsubscribe', [channel]);
  }
  appendHistory(
    room: string,
    data: string,
    opts: { maxLength: number; ttlMs: number },
  ): Promise<{ offset: number; epoch: string }> {
    return this.call('broker', 'appendHistory', [room, data, opts]);
  }
  history(room: string, since?: { offset: number; epoch: string }): Promise<RoomHistory> {
    return this.call('broker', 'history', since ? [room, since] : [room]);
  }
  enqueue(data: string): Promise<string> {
    return this.call('broker', 'enqueue', [data]);
  }
  consume(
    consumer: string,
    opts: { count: number; blockMs: number; retryAfterMs: number },
  ): Promise<QueuedMessage[]> {
    return this.call('broker', 'consume', [consumer, opts], this.timeoutMs + opts.blockMs);
  }
  async ack(id: string): Promise<void> {
    await this.call('broker', 'ack', [id]);
  }
  async deadLetter(message: QueuedMessage, reason: string): Promise<void> {
    await this.call('broker', 'deadLetter', [message, reason]);
  }
  queueDepth(): Promise<{ pending: number; deadLetters: number }> {
    return this.call('broker', 'queueDepth', []);
  }
  deadLetters(
    limit: number,
  ): Promise<{ id: string; data: string; reason: string; attempts: number }[]> {
    return this.call('broker', 'deadLetters', [limit]);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ws?.close(CloseCode.Normal, 'node stopping');
  }
}
