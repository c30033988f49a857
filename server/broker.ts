/**
 * The broker: what nodes share besides the registry. Pub/sub channels (each
 * node's inbox, room fan-out, presence), bounded room history with offsets and
 * an epoch, and the indirect-push queue. This file holds the interface, the
 * settings both backends fill from one defaults table, and the argument checks
 * they share; the backends are `broker-memory.ts` (one process; the default) and
 * `broker-redis.ts` (pub/sub, lists and Streams in Redis, for clusters), and
 * `backends.ts` alone picks between them.
 */

/** A message in a room's history. `offset` increases by one per message within an epoch. */
export interface RoomMessage {
  offset: number;
  /** The serialised message exactly as published (JSON text). */
  data: string;
}

/** What a history read returns. */
export interface RoomHistory {
  /**
   * Identifies one continuous history of the room. It changes when the history is
   * lost (Redis restarted, the room expired); offsets from another epoch mean nothing.
   */
  epoch: string;
  /** Offset of the newest message (0 when the room has none). */
  offset: number;
  /** Messages after the requested offset (or the whole kept history), oldest first. */
  messages: RoomMessage[];
  /**
   * True when `messages` is everything after the requested offset; false when the
   * bounded history no longer reaches back that far (or the epoch differs).
   */
  complete: boolean;
}

/** A queued indirect push. */
export interface QueuedMessage {
  /** Queue-assigned id (a Redis Stream id, or a counter). */
  id: string;
  /** The message as enqueued (JSON text). */
  data: string;
  /** How many times it has been delivered to a consumer, this one included. */
  attempts: number;
}

/** Receives messages published on a channel. */
export type ChannelHandler = (data: string) => void;

/**
 * The shared fabric between nodes. Every method may reject with
 * `BrokerUnavailableError` (core/errors.ts) when the backend cannot be reached.
 */
export interface Broker {
  /** Publishes to every subscriber of `channel` on every node (at most once, best effort). */
  publish(channel: string, data: string): Promise<void>;
  /** Subscribes this process to `channel`; resolves once the subscription is active. */
  subscribe(channel: string, handler: ChannelHandler): Promise<void>;
  /** Drops this process's subscription (all handlers) to `channel`. */
  unsubscribe(channel: string): Promise<void>;

  /**
   * Appends to a room's history, keeping the newest `maxLength` messages, and returns
   * the new message's offset and the room's epoch. Offsets are assigned atomically,
   * so concurrent publishers on different nodes never share one.
   */
  appendHistory(
    room: string,
    data: string,
    opts: { maxLength: number; ttlMs: number },
  ): Promise<{ offset: number; epoch: string }>;
  /**
   * Reads a room's history: everything kept when `since` is undefined, else the
   * messages after `since.offset` if `since.epoch` is the current epoch.
   */
  history(room: string, since?: { offset: number; epoch: string }): Promise<RoomHistory>;

  /** Adds a message to the indirect-push queue; returns its id. */
  enqueue(data: string): Promise<string>;
  /**
   * Said at a node's start when the backend would lose queued messages on a
   * restart (Redis without an append-only file); undefined when it would not,
   * or cannot tell.
   */
  readonly persistenceWarning?: string | undefined;
  /**
   * Calls `listener` when the backend is found to have lost the queue it held (Redis
   * came back without its data: the consumer group was gone), once per loss across
   * every node sharing it: the node that recreates the queue is told.
   */
  onQueueLost?(listener: () => void): void;
  /**
   * Takes up to `count` messages for `consumer`: new ones, and ones delivered to a
   * consumer before but not acknowledged within `retryAfterMs` (so a crashed
   * processor's messages are retried). Waits up to `blockMs` when there are none.
   */
  consume(
    consumer: string,
    opts: { count: number; blockMs: number; retryAfterMs: number },
  ): Promise<QueuedMessage[]>;
  /** Marks a message done (delivered, or dead-lettered). */
  ack(id: string): Promise<void>;
  /** Records a message that could not be delivered, with why, and acknowledges it. */
  deadLetter(message: QueuedMessage, reason: string): Promise<void>;
  /** Messages waiting or in flight, and dead letters kept. */
  queueDepth(): Promise<{ pending: number; deadLetters: number }>;
  /** Newest dead letters, newest first. */
  deadLetters(
    limit: number,
  ): Promise<{ id: string; data: string; reason: string; attempts: number }[]>;

  close(): Promise<void>;

  /**
   * Present only on a broker whose state lives in this process (the memory
   * backend), which other nodes can reach only through this node's hub: another
   * broker over the same channels, histories and queue, with subscriptions of its
   * own, so the hub's `unsubscribe` and `close` leave this one's alone.
   */
  share?(): Broker;
}

/**
 * Settings of a broker; each says which backend reads it and its default
 * ({@link brokerDefaults}). Zero values are not allowed: every number is a
 * positive integer.
 */
export interface BrokerOptions {
  /** Redis: prefix of every key and channel name. Default `pushbench:`. */
  keyPrefix?: string;
  /** Redis: a command with no reply after this long fails with `BrokerUnavailableError`. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** Redis: how long to wait for a TCP connection. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Redis: the consumer group of the indirect-push queue. Default `processors`. */
  queueGroup?: string;
  /**
   * Both: how long a room with no message in its epoch (its epoch was created by a
   * `history()` read) lives after its last read; an append sets the room's TTL to
   * the append's own `ttlMs`. Default 300,000 ms.
   */
  emptyRoomTtlMs?: number;
  /** Both: the queue holds at most this many messages (waiting + in flight); over it `enqueue` rejects with QueueFullError and nothing accepted is dropped. Default 1,000,000. */
  maxQueueLength?: number;
  /** Both: dead letters kept, newest first. Default 10,000. */
  maxDeadLetters?: number;
  /** Memory: the millisecond clock that room TTLs and queue retries are judged by. Default `performance.now`. */
  nowMs?: () => number;
}

/** Defaults for {@link BrokerOptions}, the one table both backends fill from. */
export const brokerDefaults = {
  keyPrefix: 'pushbench:',
  commandTimeoutMs: 2000,
  connectTimeoutMs: 2000,
  queueGroup: 'processors',
  emptyRoomTtlMs: 300_000,
  maxQueueLength: 1_000_000,
  maxDeadLetters: 10_000,
} as const;

/** Throws a `RangeError` unless `value` is an integer >= `min`. */
export function checkInteger(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
}

/** Checks `appendHistory` options: `maxLength` and `ttlMs` are positive integers. */
export function checkAppendOptions(opts: { maxLength: number; ttlMs: number }): void {
  checkInteger('history maxLength', opts.maxLength, 1);
  checkInteger('history ttlMs', opts.ttlMs, 1);
}

/** Checks a `history` resume point: a non-negative integer offset. */
export function checkSince(since: { offset: number; epoch: string } | undefined): void {
  if (since !== undefined) checkInteger('history since.offset', since.offset, 0);
}

/** Checks `consume` options: `count` >= 1, `blockMs` and `retryAfterMs` >= 0. */
export function checkConsumeOptions(
  consumer: string,
  opts: { count: number; blockMs: number; retryAfterMs: number },
): void {
  if (consumer === '') throw new RangeError('consumer name must not be empty');
  checkInteger('consume count', opts.count, 1);
  checkInteger('consume blockMs', opts.blockMs, 0);
  checkInteger('consume retryAfterMs', opts.retryAfterMs, 0);
}
