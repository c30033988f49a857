import type { Socket } from 'node:net';
import { monoNowUs } from '../../core/clock.js';
import type { Rng } from '../../core/rng.js';
import { TimeHeap } from './heap.js';

/**
 * The faults on one backend's link right now. The network mutates this object
 * in place, and every relay reads it on each chunk, so a change applies to
 * existing connections at once.
 */
export interface LinkFaults {
  /** Added one-way delay of each chunk, or null for none. */
  latency: { delayMs: number; jitterMs: number } | null;
  /** Nothing passes either way, and closes are held back. */
  blackholed: boolean;
}

/** Queued bytes per direction above which the source is paused until the queue drains. */
const QUEUE_HIGH_BYTES = 256 * 1024;

/** A delayed chunk, or a delayed FIN when `chunk` is null. */
interface Pending {
  dir: Direction;
  chunk: Buffer | null;
}

function nowMs(): number {
  return monoNowUs() / 1000;
}

/**
 * One backend's link between the balancer and the node: its faults, its relays
 * (one per proxied connection) and one delay queue with one timer shared by
 * every relay on it. With no latency a chunk is written straight through and no
 * timer exists.
 */
export class Link {
  /** Proxied connections currently on this link (their count is the node's conntrack entries). */
  readonly relays = new Set<Relay>();
  private readonly queue = new TimeHeap<Pending>();
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(
    readonly faults: LinkFaults,
    private readonly rng: Rng,
  ) {}

  /** One sampled one-way delay: `delayMs ± uniform(jitterMs)`, never negative; 0 without latency. */
  sampleDelayMs(): number {
    const latency = this.faults.latency;
    if (!latency) return 0;
    const jitter = latency.jitterMs > 0 ? (this.rng.next() * 2 - 1) * latency.jitterMs : 0;
    return Math.max(0, latency.delayMs + jitter);
  }

  /** Starts relaying between an accepted client socket and a node socket; it leaves `relays` once both are closed. */
  relay(client: Socket, node: Socket): Relay {
    const relay = new Relay(this, client, node);
    this.relays.add(relay);
    return relay;
  }

  /** Re-applies the faults to every relay: called after they change (a heal lets held-back closes through). */
  faultsChanged(): void {
    for (const relay of this.relays) relay.settle();
  }

  /** Resets every connection on the link (RST both ways). Returns how many. */
  resetAll(): number {
    const n = this.relays.size;
    for (const relay of [...this.relays]) relay.reset();
    return n;
  }

  /** Drops every connection and the queue; the link is not used again. */
  close(): void {
    for (const relay of [...this.relays]) relay.destroy();
    this.queue.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Queues `chunk` (null = FIN) of `dir` for release at `atMs` on the host clock. */
  enqueue(atMs: number, dir: Direction, chunk: Buffer | null): void {
    this.queue.push(atMs, { dir, chunk });
    if (atMs < this.timerAtMs) this.arm(atMs);
  }

  private arm(atMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(() => this.release(), Math.max(0, atMs - nowMs()));
  }

  private release(): void {
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    // Half a millisecond of slack: setTimeout rounds to whole milliseconds.
    const now = nowMs() + 0.5;
    for (;;) {
      const at = this.queue.peekAtMs();
      if (at === undefined) return;
      if (at > now) {
        this.arm(at);
        return;
      }
      const item = this.queue.pop()!;
      item.dir.released(item.chunk);
    }
  }
}

/**
 * One direction of a relay (client -> node or node -> client). Release times
 * within a direction never decrease, which keeps its bytes in order whatever
 * the jitter.
 */
class Direction {
  /** Release time of the last queued item. */
  private lastReleaseMs = 0;
  /** Items (chunks and FIN) in the link queue. */
  private queuedItems = 0;
  private queuedBytes = 0;
  private queueFull = false;
  private waitingDrain = false;
  /** The source sent FIN. */
  finReceived = false;
  /** The FIN went into the delay queue (or straight to the destination). */
  private finForwarded = false;
  /** The source closed without a FIN (reset, error): the destination must be torn down. */
  aborted = false;

  constructor(
    private readonly link: Link,
    readonly from: Socket,
    readonly to: Socket,
  ) {}

  /** A chunk arrived from the source. */
  data(chunk: Buffer): void {
    const faults = this.link.faults;
    if (faults.blackholed) return;
    if (!faults.latency && this.queuedItems === 0) {
      this.write(chunk);
      return;
    }
    this.push(chunk);
    if (this.queuedBytes > QUEUE_HIGH_BYTES && !this.queueFull) {
      this.queueFull = true;
      this.from.pause();
    }
  }

  /** Forwards the source's FIN when nothing blocks it: not blackholed, not yet sent. */
  settle(): void {
    if (!this.finReceived || this.finForwarded || this.link.faults.blackholed) return;
    this.finForwarded = true;
    if (!this.link.faults.latency && this.queuedItems === 0) this.endDestination();
    else this.push(null);
  }

  /** The destination can take more. */
  drained(): void {
    this.waitingDrain = false;
    this.resumeIfClear();
  }

  /** The link queue hands back an item whose time has come. */
  released(chunk: Buffer | null): void {
    this.queuedItems--;
    if (chunk === null) {
      // A partition that began while the FIN was in flight swallows it; it goes again at heal.
      if (this.link.faults.blackholed) this.finForwarded = false;
      else this.endDestination();
      return;
    }
    this.queuedBytes -= chunk.length;
    // A partition that began while the chunk was in flight loses it.
    if (!this.link.faults.blackholed) this.write(chunk);
    if (this.queueFull && this.queuedBytes <= QUEUE_HIGH_BYTES / 2) {
      this.queueFull = false;
      this.resumeIfClear();
    }
  }

  private push(chunk: Buffer | null): void {
    const atMs = Math.max(this.lastReleaseMs, nowMs() + this.link.sampleDelayMs());
    this.lastReleaseMs = atMs;
    this.queuedItems++;
    if (chunk) this.queuedBytes += chunk.length;
    this.link.enqueue(atMs, this, chunk);
  }

  private write(chunk: Buffer): void {
    if (this.to.destroyed || this.to.writableEnded) return;
    if (!this.to.write(chunk) && !this.waitingDrain) {
      this.waitingDrain = true;
      this.from.pause();
    }
  }

  private endDestination(): void {
    if (!this.to.destroyed && !this.to.writableEnded) this.to.end();
  }

  private resumeIfClear(): void {
    if (!this.waitingDrain && !this.queueFull && !this.from.destroyed) this.from.resume();
  }
}

/**
 * One proxied connection: a client socket and a node socket joined by two
 * directions. Both sockets are half-open capable so a FIN travels on its own;
 * a close without FIN (reset, error) tears the other side down.
 */
export class Relay {
  private readonly up: Direction;
  private readonly down: Direction;
  private clientClosed = false;
  private nodeClosed = false;
  private finished = false;

  constructor(
    private readonly link: Link,
    private readonly client: Socket,
    private readonly node: Socket,
  ) {
    this.up = new Direction(link, client, node);
    this.down = new Direction(link, node, client);
    client.on('data', (chunk: Buffer) => this.up.data(chunk));
    node.on('data', (chunk: Buffer) => this.down.data(chunk));
    client.on('end', () => {
      this.up.finReceived = true;
      this.up.settle();
    });
    node.on('end', () => {
      this.down.finReceived = true;
      this.down.settle();
    });
    client.on('drain', () => this.down.drained());
    node.on('drain', () => this.up.drained());
    // Errors end in 'close'; without a listener they would crash the process.
    client.on('error', () => {});
    node.on('error', () => {});
    client.on('close', () => {
      this.clientClosed = true;
      if (!this.up.finReceived) this.up.aborted = true;
      this.settle();
    });
    node.on('close', () => {
      this.nodeClosed = true;
      if (!this.down.finReceived) this.down.aborted = true;
      this.settle();
    });
  }

  /** Relays bytes the client sent before the relay existed (while it was held). */
  fromClient(chunk: Buffer): void {
    this.up.data(chunk);
  }

  /** Lets through whatever the current faults allow: FINs, and teardown after an abort. */
  settle(): void {
    if (!this.link.faults.blackholed) {
      if (this.up.aborted && !this.node.destroyed) this.node.destroy();
      if (this.down.aborted && !this.client.destroyed) this.client.destroy();
      this.up.settle();
      this.down.settle();
    }
    if (this.clientClosed && this.nodeClosed && !this.finished) {
      this.finished = true;
      this.link.relays.delete(this);
    }
  }

  /** Resets both sockets at once (RST, not FIN). */
  reset(): void {
    resetSocket(this.client);
    resetSocket(this.node);
  }

  /** Destroys both sockets (FIN where possible). */
  destroy(): void {
    this.client.destroy();
    this.node.destroy();
  }
}

/**
 * Reads a device that waits for its node (at a relay, or held or queued at a
 * balancer) into `chunks`, pausing it past `maxBytes`, so that its FIN or close
 * is seen at once (`gone`). Returns what stops the reading; the socket is left
 * as it is (paused past `maxBytes`).
 */
export function readWhileWaiting(
  socket: Socket,
  chunks: Buffer[],
  maxBytes: number,
  gone: () => void,
): () => void {
  let bytes = chunks.reduce((n, c) => n + c.length, 0);
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes > maxBytes) socket.pause();
  };
  socket.on('data', onData);
  socket.on('end', gone);
  socket.on('close', gone);
  return () => {
    socket.off('data', onData);
    socket.off('end', gone);
    socket.off('close', gone);
  };
}

/** Closes a socket with RST; a socket still connecting or already gone is just destroyed. */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
