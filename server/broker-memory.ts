import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BrokerUnavailableError, QueueFullError } from '../core/errors.js';
import {
  type Broker,
  brokerDefaults,
  type ChannelHandler,
  checkAppendOptions,
  checkConsumeOptions,
  checkInteger,
  checkSince,
  type QueuedMessage,
  type RoomHistory,
  type RoomMessage,
} from './broker.js';

/** Settings of a {@link MemoryBroker}; defaults come from `brokerDefaults`. */
export interface MemoryBrokerOptions {
  /** The millisecond clock room TTLs and queue retries are judged by. Default `performance.now`. */
  nowMs?: () => number;
  /** How long a room with no message in its epoch lives after its last `history()` read. */
  emptyRoomTtlMs?: number;
  /** Messages waiting or in flight kept at most; beyond it the oldest waiting one is dropped. */
  maxQueueLength?: number;
  /** Dead letters kept (the newest). */
  maxDeadLetters?: number;
  /**
   * Another memory broker whose channels, room histories and queue this one shares,
   * as a second node shares one Redis: it gets its own subscriptions, so its
   * `unsubscribe` and `close` leave the other's alone. The other's settings apply.
   */
  shareWith?: MemoryBroker;
}

/**
 * One room's history: a ring buffer of the newest `capacity` messages. Offsets
 * are contiguous, so the oldest kept offset is `top - size + 1` and no offset is
 * stored per message.
 */
class RoomLog {
  /** Random per room creation, so a room that expired and came back is told apart. */
  readonly epoch = randomUUID();
  /** Offset of the newest message; 0 when none was appended. */
  top = 0;
  private buf: (string | undefined)[] = [];
  private start = 0;
  private size = 0;

  constructor(public expiresAtMs: number) {}

  append(data: string, maxLength: number): number {
    if (maxLength !== this.buf.length) this.resize(maxLength);
    const capacity = this.buf.length;
    if (this.size < capacity) {
      this.buf[(this.start + this.size) % capacity] = data;
      this.size++;
    } else {
      this.buf[this.start] = data;
      this.start = (this.start + 1) % capacity;
    }
    return ++this.top;
  }

  /** Messages with offset > `after`, oldest first; `after` must be >= oldest - 1. */
  read(after: number): RoomMessage[] {
    const oldest = this.oldest();
    const out: RoomMessage[] = [];
    const capacity = this.buf.length;
    for (let i = Math.max(0, after - oldest + 1); i < this.size; i++) {
      const data = this.buf[(this.start + i) % capacity];
      if (data !== undefined) out.push({ offset: oldest + i, data });
    }
    return out;
  }

  oldest(): number {
    return this.top - this.size + 1;
  }

  private resize(capacity: number): void {
    const keep = this.read(this.top - Math.min(this.size, capacity));
    this.buf = new Array<string | undefined>(capacity);
    for (let i = 0; i < keep.length; i++) this.buf[i] = keep[i]?.data;
    this.start = 0;
    this.size = keep.length;
  }
}

/** One broker instance's subscription to one channel. */
interface Subscription {
  readonly handlers: Set<ChannelHandler>;
  active: boolean;
}

interface InFlight {
  data: string;
  deliveredAtMs: number;
  attempts: number;
}

interface DeadLetter {
  id: string;
  data: string;
  reason: string;
  attempts: number;
}

/** A consume() call waiting for an enqueue. */
interface Waiter {
  readonly owner: MemoryBroker;
  readonly wake: () => void;
}

/** What brokers sharing one in-memory backend share: the "Redis" of one process. */
class MemoryBackend {
  readonly nowMs: () => number;
  readonly emptyRoomTtlMs: number;
  readonly maxQueueLength: number;
  readonly maxDeadLetters: number;

  /** channel -> the subscriptions of every broker instance. */
  readonly channels = new Map<string, Set<Subscription>>();
  /**
   * Rooms in order of their last TTL refresh (an append, or a read of a room with
   * no messages, moves the room to the end), so the first entries are the likeliest to have expired and a short sweep from the
   * front on each append keeps idle rooms from piling up without a timer.
   */
  readonly rooms = new Map<string, RoomLog>();

  private queueSeq = 0;
  /** Not yet delivered, in enqueue order. */
  readonly waiting = new Map<string, string>();
  /**
   * Delivered and not acknowledged, in order of last delivery (a redelivery moves
   * the entry to the end); with a clock that does not go back, the entries due
   * for a retry are a prefix of this map.
   */
  readonly inFlight = new Map<string, InFlight>();
  /** Oldest first; trimmed to `maxDeadLetters` in batches. */
  private dead: DeadLetter[] = [];
  readonly waiters = new Set<Waiter>();

  constructor(options: MemoryBrokerOptions) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.emptyRoomTtlMs = options.emptyRoomTtlMs ?? brokerDefaults.emptyRoomTtlMs;
    this.maxQueueLength = options.maxQueueLength ?? brokerDefaults.maxQueueLength;
    this.maxDeadLetters = options.maxDeadLetters ?? brokerDefaults.maxDeadLetters;
    checkInteger('emptyRoomTtlMs', this.emptyRoomTtlMs, 1);
    checkInteger('maxQueueLength', this.maxQueueLength, 1);
    checkInteger('maxDeadLetters', this.maxDeadLetters, 1);
  }

  /** The room's live log, forgetting it first if its TTL has passed. */
  room(name: string, nowMs: number): RoomLog | undefined {
    const log = this.rooms.get(name);
    if (log !== undefined && nowMs >= log.expiresAtMs) {
      this.rooms.delete(name);
      return undefined;
    }
    return log;
  }

  /** Forgets up to a few expired rooms at the front of the map. */
  sweepRooms(nowMs: number): void {
    let checked = 0;
    for (const [name, log] of this.rooms) {
      if (checked++ >= 4 || nowMs < log.expiresAtMs) return;
      this.rooms.delete(name);
    }
  }

  enqueue(data: string): string {
    // Full: refuse the newcomer; what was accepted stays until delivered or dead-lettered.
    if (this.waiting.size + this.inFlight.size >= this.maxQueueLength) {
      throw new QueueFullError(`the queue holds its maximum of ${this.maxQueueLength} messages`);
    }
    const id = String(++this.queueSeq);
    this.waiting.set(id, data);
    for (const waiter of this.waiters) {
      this.waiters.delete(waiter);
      waiter.wake();
      break;
    }
    return id;
  }

  /** Takes up to `count` messages: due retries first, then new ones. */
  take(count: number, retryAfterMs: number): QueuedMessage[] {
    const nowMs = this.nowMs();
    const due: string[] = [];
    for (const [id, f] of this.inFlight) {
      if (due.length >= count || nowMs - f.deliveredAtMs < retryAfterMs) break;
      due.push(id);
    }
    const out: QueuedMessage[] = [];
    for (const id of due) {
      const f = this.inFlight.get(id);
      if (f === undefined) continue;
      this.inFlight.delete(id);
      f.attempts++;
      f.deliveredAtMs = nowMs;
      this.inFlight.set(id, f);
      out.push({ id, data: f.data, attempts: f.attempts });
    }
    for (const [id, data] of this.waiting) {
      if (out.length >= count) break;
      this.waiting.delete(id);
      this.inFlight.set(id, { data, deliveredAtMs: nowMs, attempts: 1 });
      out.push({ id, data, attempts: 1 });
    }
    return out;
  }

  ack(id: string): void {
    this.inFlight.delete(id);
    this.waiting.delete(id);
  }

  addDeadLetter(entry: DeadLetter): void {
    this.dead.push(entry);
    // Trim in batches so each dead letter costs O(1) amortised.
    if (this.dead.length >= 2 * this.maxDeadLetters) {
      this.dead.splice(0, this.dead.length - this.maxDeadLetters);
    }
  }

  deadLetterCount(): number {
    return Math.min(this.dead.length, this.maxDeadLetters);
  }

  newestDeadLetters(limit: number): DeadLetter[] {
    const out: DeadLetter[] = [];
    const stop = Math.max(0, this.dead.length - Math.min(limit, this.maxDeadLetters));
    for (let i = this.dead.length - 1; i >= stop; i--) {
      const entry = this.dead[i];
      if (entry !== undefined) out.push({ ...entry });
    }
    return out;
  }
}

/**
 * The in-process broker, the default for a single node. Channels are sets of
 * handlers; messages are delivered on a later microtask, so `publish` never calls
 * a handler before it returns, and one publisher's messages on one channel arrive
 * in order. Room histories are ring buffers with an epoch per room lifetime; a
 * room's TTL is checked when it is touched (plus a short sweep per append), with
 * no timer per room or per message. The queue keeps delivery times and attempts
 * per in-flight message and finds due retries when `consume` is called.
 *
 * Several nodes in one process share a backend through `shareWith` (each keeps
 * its own subscriptions). Sharing one instance works too, but then one node's
 * `unsubscribe(channel)` drops every node's handlers on that channel.
 *
 * Handlers must not throw: an exception is rethrown on a microtask after the
 * other handlers ran (an uncaught exception, as an EventEmitter listener's is).
 */
export class MemoryBroker implements Broker {
  private readonly backend: MemoryBackend;
  private readonly subscriptions = new Map<string, Subscription>();
  private closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    this.backend = options.shareWith ? options.shareWith.backend : new MemoryBackend(options);
  }

  /** Another broker over this one's backend, with its own subscriptions (see {@link Broker.share}). */
  share(): Broker {
    return new MemoryBroker({ shareWith: this });
  }

  async publish(channel: string, data: string): Promise<void> {
    this.ensureOpen('publish');
    const subs = this.backend.channels.get(channel);
    if (subs === undefined || subs.size === 0) return;
    const targets = [...subs];
    queueMicrotask(() => deliver(targets, data));
  }

  async subscribe(channel: string, handler: ChannelHandler): Promise<void> {
    this.ensureOpen('subscribe');
    let sub = this.subscriptions.get(channel);
    if (sub === undefined) {
      sub = { handlers: new Set(), active: true };
      this.subscriptions.set(channel, sub);
      let subs = this.backend.channels.get(channel);
      if (subs === undefined) {
        subs = new Set();
        this.backend.channels.set(channel, subs);
      }
      subs.add(sub);
    }
    sub.handlers.add(handler);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.ensureOpen('unsubscribe');
    this.drop(channel);
  }

  async appendHistory(
    room: string,
    data: string,
    opts: { maxLength: number; ttlMs: number },
  ): Promise<{ offset: number; epoch: string }> {
    this.ensureOpen('appendHistory');
    checkAppendOptions(opts);
    const { backend } = this;
    const nowMs = backend.nowMs();
    let log = backend.room(room, nowMs);
    if (log === undefined) log = new RoomLog(0);
    else backend.rooms.delete(room); // re-inserted below: the map stays in append order
    log.expiresAtMs = nowMs + opts.ttlMs;
    backend.rooms.set(room, log);
    backend.sweepRooms(nowMs);
    return { offset: log.append(data, opts.maxLength), epoch: log.epoch };
  }

  async history(room: string, since?: { offset: number; epoch: string }): Promise<RoomHistory> {
    this.ensureOpen('history');
    checkSince(since);
    const { backend } = this;
    const nowMs = backend.nowMs();
    let log = backend.room(room, nowMs);
    if (log === undefined) {
      // Create the epoch now, so a client that read an empty room can resume
      // from offset 0 of this epoch once messages arrive.
      log = new RoomLog(nowMs + backend.emptyRoomTtlMs);
      backend.rooms.set(room, log);
    } else if (log.top === 0) {
      // A quiet room lives on while it is read (appends set their own TTL).
      log.expiresAtMs = nowMs + backend.emptyRoomTtlMs;
      backend.rooms.delete(room);
      backend.rooms.set(room, log);
    }
    const after = since === undefined ? 0 : since.offset;
    const resumable =
      (since === undefined || since.epoch === log.epoch) &&
      after <= log.top &&
      after >= log.oldest() - 1;
    return {
      epoch: log.epoch,
      offset: log.top,
      messages: log.read(resumable ? after : 0),
      complete: resumable,
    };
  }

  async enqueue(data: string): Promise<string> {
    this.ensureOpen('enqueue');
    return this.backend.enqueue(data);
  }

  async consume(
    consumer: string,
    opts: { count: number; blockMs: number; retryAfterMs: number },
  ): Promise<QueuedMessage[]> {
    this.ensureOpen('consume');
    checkConsumeOptions(consumer, opts);
    // Blocking is real waiting, so its deadline is on the real clock even when
    // `nowMs` (retries, TTLs) is a test's hand-driven one.
    const deadline = performance.now() + opts.blockMs;
    for (;;) {
      const taken = this.backend.take(opts.count, opts.retryAfterMs);
      if (taken.length > 0 || this.closed) return taken;
      const remainingMs = deadline - performance.now();
      if (remainingMs <= 0) return [];
      await this.waitForEnqueue(remainingMs);
    }
  }

  async ack(id: string): Promise<void> {
    this.ensureOpen('ack');
    this.backend.ack(id);
  }

  async deadLetter(message: QueuedMessage, reason: string): Promise<void> {
    this.ensureOpen('deadLetter');
    this.backend.ack(message.id);
    this.backend.addDeadLetter({
      id: message.id,
      data: message.data,
      reason,
      attempts: message.attempts,
    });
  }

  async queueDepth(): Promise<{ pending: number; deadLetters: number }> {
    this.ensureOpen('queueDepth');
    const { backend } = this;
    return {
      pending: backend.waiting.size + backend.inFlight.size,
      deadLetters: backend.deadLetterCount(),
    };
  }

  async deadLetters(
    limit: number,
  ): Promise<{ id: string; data: string; reason: string; attempts: number }[]> {
    this.ensureOpen('deadLetters');
    checkInteger('deadLetters limit', limit, 0);
    return this.backend.newestDeadLetters(limit);
  }

  /** Drops this instance's subscriptions and ends its blocked `consume` calls (they resolve `[]`). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const channel of [...this.subscriptions.keys()]) this.drop(channel);
    for (const waiter of this.backend.waiters) {
      if (waiter.owner !== this) continue;
      this.backend.waiters.delete(waiter);
      waiter.wake();
    }
  }

  private drop(channel: string): void {
    const sub = this.subscriptions.get(channel);
    if (sub === undefined) return;
    sub.active = false;
    this.subscriptions.delete(channel);
    const subs = this.backend.channels.get(channel);
    subs?.delete(sub);
    if (subs?.size === 0) this.backend.channels.delete(channel);
  }

  /** Resolves on the next enqueue (if this waiter is first in line), on close, or after `ms`. */
  private waitForEnqueue(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.backend.waiters.delete(waiter);
        resolve();
      }, ms);
      const waiter: Waiter = {
        owner: this,
        wake: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.backend.waiters.add(waiter);
    });
  }

  private ensureOpen(what: string): void {
    if (this.closed) {
      throw new BrokerUnavailableError(`${what}() called on a closed memory broker`);
    }
  }
}

/** Runs every still-active handler; a throwing handler does not starve the rest. */
function deliver(targets: Subscription[], data: string): void {
  let failure: { error: unknown } | undefined;
  for (const sub of targets) {
    // Unsubscribed between publish and delivery: as after a Redis UNSUBSCRIBE, nothing more arrives.
    if (!sub.active) continue;
    for (const handler of [...sub.handlers]) {
      try {
        handler(data);
      } catch (error) {
        failure ??= { error };
      }
    }
  }
  if (failure !== undefined) throw failure.error;
}
