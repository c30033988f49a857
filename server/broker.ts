/**
 * The broker: what nodes share besides the registry. Pub/sub channels (each
 * node's inbox, room fan-out, presence), bounded room history with offsets and
 * an epoch, and the indirect-push queue. One interface, two backends:
 * `broker-memory.ts` (one process; the default) and `broker-redis.ts`
 * (pub/sub, lists and Streams in Redis, for clusters).
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

/** Signals that the broker's backend cannot be reached; callers answer 503. */
export class BrokerUnavailableError extends Error {
  readonly code = 'PB_BROKER_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'BrokerUnavailableError';
  }
}

/** The shared fabric between nodes. Every method may reject with {@link BrokerUnavailableError}. */
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
}
