import { PushbenchError } from '../core/errors.js';
import type { Broker } from './broker.js';

/**
 * Settings for {@link createBroker}; each says which backend reads it and its
 * default. Zero values are not allowed: every number is a positive integer.
 */
export interface CreateBrokerOptions {
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
  /** Both: the queue keeps at most about this many messages; the oldest go first. Default 1,000,000. */
  maxQueueLength?: number;
  /** Both: dead letters kept, newest first. Default 10,000. */
  maxDeadLetters?: number;
  /** Memory: the millisecond clock that room TTLs and queue retries are judged by. Default `performance.now`. */
  nowMs?: () => number;
}

/** Defaults for {@link CreateBrokerOptions}, the one table both backends fill from. */
export const brokerDefaults = {
  keyPrefix: 'pushbench:',
  commandTimeoutMs: 2000,
  connectTimeoutMs: 2000,
  queueGroup: 'processors',
  emptyRoomTtlMs: 300_000,
  maxQueueLength: 1_000_000,
  maxDeadLetters: 10_000,
} as const;

/**
 * Opens the broker a node is configured for: in-memory (one process) when `url`
 * is undefined, Redis for `redis://` or `rediss://` URLs (it connects, PINGs and
 * checks the server version before resolving). Rejects with `PB_USAGE` for
 * another scheme and with `BrokerUnavailableError` ("cannot reach Redis at URL:
 * ECONNREFUSED") when Redis does not answer.
 */
export async function createBroker(
  url?: string,
  options: CreateBrokerOptions = {},
): Promise<Broker> {
  if (url === undefined) {
    // Loaded on demand so a memory-only node never loads ioredis.
    const { MemoryBroker } = await import('./broker-memory.js');
    return new MemoryBroker(options);
  }
  if (!/^rediss?:\/\//.test(url)) {
    throw new PushbenchError(
      'PB_USAGE',
      `the broker URL must be redis:// or rediss://, got '${redactUrl(url)}'; e.g. redis://127.0.0.1:6379`,
    );
  }
  const { RedisBroker } = await import('./broker-redis.js');
  return RedisBroker.connect({ ...options, url });
}

/** `url` with any password replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

// Argument checks shared by the backends. They belong beside the interface in
// broker.ts; they live here only because that file is not this component's to edit.

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
