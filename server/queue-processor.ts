import type { Broker, QueuedMessage } from './broker.js';
import { isValidMessageId, isValidName } from './protocol.js';

/** What the processor needs from its node: route one message like a direct push. */
export type Route = (deviceId: string, id: string, payloadJson: string) => Promise<string>;

/** Processor settings. */
export interface QueueOptions {
  /** Deliveries attempted before a message is dead-lettered. Default 5. */
  maxAttempts: number;
  /** A taken message not acknowledged within this is retried. Default 2 s. */
  retryAfterMs: number;
  /** Messages taken per round. Default 100. */
  batch: number;
}

/** The body of one queued message: `{"device": id, "payload": <JSON>, "id"?: string}`. */
export interface QueueBody {
  device: string;
  id: string | undefined;
  payloadJson: string;
}

/** Parses one queued message body, or says what is wrong with it. */
export function parseQueueBody(value: unknown): QueueBody | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'message is not an object';
  const m = value as Record<string, unknown>;
  if (!isValidName(m.device)) return 'message needs "device": a device id';
  if (!('payload' in m) || m.payload === undefined) return 'message needs a payload';
  if (m.id !== undefined && !isValidMessageId(m.id))
    return 'message "id" must be 1-128 printable characters';
  return { device: m.device, id: m.id, payloadJson: JSON.stringify(m.payload) };
}

/**
 * How long one consume waits on the broker for a message before asking again.
 * An enqueue answers a waiting consume at once, so this is only what an idle
 * node pays: one round trip to the datastore per wait, per process (at 200 ms,
 * 14 workers and their hub spent 186 ms of CPU a second doing nothing; at
 * 1,000 ms, 97 ms).
 */
const CONSUME_BLOCK_MS = 1000;

/**
 * The indirect-push message processor (Pushy's queue -> processor -> node):
 * takes messages from the broker's queue, looks the device up and forwards
 * like a direct push, acknowledges what was delivered, leaves the rest for a
 * retry, and dead-letters a message after `maxAttempts` or when it is
 * malformed. Best effort, as in Pushy: a device offline for all attempts misses it.
 */
export class QueueProcessor {
  private running = false;
  private loop: Promise<void> | undefined;
  /** Outcome counts since start: delivered, retried, dead_lettered, and by route outcome. */
  readonly counts: Record<string, number> = {};

  constructor(
    private readonly broker: Broker,
    private readonly consumer: string,
    private readonly route: Route,
    private readonly options: QueueOptions,
  ) {}

  private count(key: string): void {
    this.counts[key] = (this.counts[key] ?? 0) + 1;
  }

  /** Starts the consume loop. */
  start(): void {
    if (this.running) return;
    this.running = true;
    // After stop(), a loop may still wait on the broker: the new one starts once it is out.
    const previous = this.loop ?? Promise.resolve();
    this.loop = previous.then(() => this.run());
  }

  /**
   * Stops: at once while waiting for messages (a batch taken after this is left
   * unacknowledged, and the broker hands it to another consumer after
   * `retryAfterMs`), else once the batch in hand is done.
   */
  async stop(): Promise<void> {
    this.running = false;
    if (!this.waiting) await this.loop;
  }

  /** True while the loop waits on the broker for messages. */
  private waiting = false;

  private async run(): Promise<void> {
    while (this.running) {
      let batch: QueuedMessage[];
      try {
        this.waiting = true;
        batch = await this.broker.consume(this.consumer, {
          count: this.options.batch,
          blockMs: CONSUME_BLOCK_MS,
          retryAfterMs: this.options.retryAfterMs,
        });
      } catch {
        // Stopped meanwhile (a closing hub rejects what waits): nothing to count.
        if (!this.running) break;
        // The broker is down: back off and try again; messages wait in the queue.
        this.count('broker_unavailable');
        await new Promise((r) => setTimeout(r, 500));
        continue;
      } finally {
        this.waiting = false;
      }
      if (!this.running) break;
      await Promise.all(batch.map((m) => this.process(m)));
    }
  }

  /** Handles one message; exposed for tests. */
  async process(message: QueuedMessage): Promise<void> {
    let parsed: QueueBody | string;
    try {
      parsed = parseQueueBody(JSON.parse(message.data));
    } catch {
      parsed = 'message is not JSON';
    }
    if (typeof parsed === 'string') {
      this.count('dead_lettered');
      await this.broker.deadLetter(message, `malformed: ${parsed}`).catch(() => {});
      return;
    }
    const outcome = await this.route(
      parsed.device,
      parsed.id ?? `q-${message.id}`,
      parsed.payloadJson,
    ).catch(() => 'error');
    this.count(outcome);
    if (outcome === 'delivered') {
      await this.broker.ack(message.id).catch(() => {});
      return;
    }
    if (message.attempts >= this.options.maxAttempts) {
      this.count('dead_lettered');
      await this.broker
        .deadLetter(message, `${outcome} after ${message.attempts} attempts`)
        .catch(() => {});
      return;
    }
    // Not acknowledged: the broker hands it out again after retryAfterMs.
    this.count('retried');
  }
}
