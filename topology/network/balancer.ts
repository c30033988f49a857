import { connect, createServer, type Server, type Socket } from 'node:net';
import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import type { Rng } from '../../core/rng.js';
import type { TokenBucket } from '../../server/rate-limit.js';
import { HealthState, probeHealthz } from './health.js';
import { TimeHeap } from './heap.js';
import { type Link, readWhileWaiting, resetSocket } from './link.js';
import {
  type BackendSample,
  type BackendSpec,
  type BalancerAlgorithm,
  type HealthCheckSpec,
  REDISPATCHES,
} from './types.js';

/** Selection weight floor: a backend at the very start of its slow start is still comparable. */
const MIN_WEIGHT = 0.05;
/** How often devices queued for a connect slot are checked against the queue timeout. */
const QUEUE_SWEEP_MS = 100;
/** Bytes a held connection may send before it is admitted (its upgrade request); then it is paused. */
const HELD_BUFFER_BYTES = 64 * 1024;

function nowMs(): number {
  return monoNowUs() / 1000;
}

/** Settings of one region balancer. */
export interface RegionBalancerOptions {
  name: string;
  host: string;
  algorithm: BalancerAlgorithm;
  slowStartMs: number;
  health: HealthCheckSpec;
  /** With every backend failing its checks, pick among all of them (not removed) instead of none. */
  failOpen?: boolean;
  /** Retry a connect its node refuses on another node ({@link REDISPATCHES} at most) instead of resetting the device. */
  redispatch?: boolean;
  /**
   * Connects a node may have unanswered (handed to it, its first bytes not yet
   * back); past them devices wait here in arrival order. Undefined: no cap.
   */
  maxConnecting?: number;
  /** With `maxConnecting`: a device that waits longer than this for a connect slot is reset (ms). */
  queueTimeoutMs?: number;
  /** Seconds after arrival at which a held connection is re-checked. */
  synRetriesS: readonly number[];
  rng: Rng;
}

/**
 * The faults on one node that are not about its link's bytes: the network
 * sets them from its fault table.
 */
export interface NodeAdmission {
  /** Conntrack table size, or null for unlimited. */
  conntrackTable: number | null;
  /** Token buckets a new connection to this node must pass (node-scoped admission-rate faults). */
  buckets: TokenBucket[];
}

/** A connection waiting for a conntrack entry: accepted, never answered. */
interface Held {
  socket: Socket;
  backend: Backend;
  arrivalMs: number;
  /** Index in the retry offsets of the next re-check. */
  retry: number;
  chunks: Buffer[];
  gone: boolean;
  /** Removes the holding listeners. */
  detach: () => void;
}

/** A device waiting for one of its node's connect slots (`maxConnecting`). */
interface Queued {
  socket: Socket;
  /** When it was queued (ms, monotonic), for the queue timeout. */
  atMs: number;
  chunks: Buffer[];
  /** A redispatch's nodes that refused it. */
  tried: string[];
  /** Removes its listeners. */
  detach: () => void;
}

/** One node behind a region balancer. */
export class Backend {
  host: string;
  port: number;
  /** Its process on this machine, when the run started it here (health checks judge starvation by it). */
  pid: number | undefined;
  /** Connections assigned since it was added. */
  accepted = 0;
  removed = false;
  /** When its slow-start ramp began, or null when it has none (or it has not entered rotation yet). */
  rampFromMs: number | null = null;
  /** Whether it ramps when it enters rotation (added after the balancer started). */
  readonly rampsOnEntry: boolean;
  readonly health: HealthState;
  readonly held = new Set<Held>();
  conntrackTimedOut = 0;
  /** Smooth weighted round-robin state. */
  currentWeight = 0;
  /** Connections carried by relays (relay mode) and not yet reported finished. */
  carried = 0;
  /** Connects to it under way before their relay starts (with redispatch). */
  connecting = 0;
  /** Connects it refused that went to another node, since start (with redispatch). */
  redispatches = 0;
  /** Connects handed to it, unanswered yet (with `maxConnecting`). */
  unanswered = 0;
  /** Devices waiting for one of its connect slots, in arrival order (with `maxConnecting`). */
  readonly queued = new Set<Queued>();
  /** Devices that left while they waited for a connect slot, since start (relay mode: reported by the relays). */
  queueAbandoned = 0;
  /** Devices reset after waiting `queueTimeoutMs` for a connect slot, since start (relay mode: reported by the relays). */
  queueTimedOut = 0;

  constructor(
    readonly nodeId: string,
    spec: BackendSpec,
    readonly link: Link,
    readonly admission: NodeAdmission,
    rampsOnEntry: boolean,
    assumeHealthy: boolean,
  ) {
    this.host = spec.host;
    this.port = spec.port;
    this.pid = spec.pid;
    this.rampsOnEntry = rampsOnEntry;
    this.health = new HealthState(assumeHealthy, !assumeHealthy);
  }

  /** Established proxied connections: its conntrack entries (relayed here, or by relays). */
  get connections(): number {
    return this.link.relays.size + this.carried + this.connecting;
  }

  get inRotation(): boolean {
    return !this.removed && this.health.healthy;
  }

  /** Slow-start weight in [0, 1] at `atMs`. */
  weight(atMs: number, slowStartMs: number): number {
    if (this.rampFromMs === null || slowStartMs <= 0) return 1;
    return Math.min(1, Math.max(0, (atMs - this.rampFromMs) / slowStartMs));
  }
}

/**
 * One region's L4 TCP balancer: accepts devices, picks a backend per new
 * connection, health-checks its backends, and applies conntrack and admission
 * faults before relaying bytes over the backend's {@link Link}.
 */
export class RegionBalancer {
  /** Counters since start. */
  noBackend = 0;
  admissionRejected = 0;
  resets = 0;
  /** Region-scoped admission-rate buckets; every new connection must pass each. */
  regionBuckets: TokenBucket[] = [];
  private readonly backends = new Map<string, Backend>();
  private readonly server: Server;
  private readonly heldQueue = new TimeHeap<Held>();
  private heldTimer: NodeJS.Timeout | undefined;
  private heldTimerAtMs = Number.POSITIVE_INFINITY;
  private healthTimer: NodeJS.Timeout | undefined;
  /** Resets queued devices past the queue timeout, while any is queued. */
  private queueSweeper: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;

  constructor(readonly options: RegionBalancerOptions) {
    // Half-open sockets: a device's FIN is relayed on its own, not turned into a full close.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) =>
      this.handleConnection(socket),
    );
  }

  get name(): string {
    return this.options.name;
  }

  /** Listens on host:port (0 = ephemeral) and resolves with the bound port. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new PushbenchError(
            err.code === 'EADDRINUSE' ? 'PB_PORT_IN_USE' : 'PB_INTERNAL',
            `region ${this.name}: cannot listen on ${this.options.host}:${port}: ${err.message}`,
          ),
        ),
      );
      // A herd's SYNs wait in the accept queue (capped by net.core.somaxconn), not in retransmits.
      this.server.listen({ port, host: this.options.host, backlog: 65_535 }, () => {
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  /** Runs a first round of checks, then starts the periodic ones; later backends ramp in. */
  async start(): Promise<void> {
    await this.checkAll();
    this.started = true;
    this.healthTimer = setInterval(() => void this.checkAll(), this.options.health.intervalMs);
  }

  /**
   * Adds a backend, or gives an existing node id its new address (a restart):
   * its health starts over, pending unless `assumeHealthy`.
   */
  addBackend(
    spec: BackendSpec,
    link: (nodeId: string) => { link: Link; admission: NodeAdmission },
    assumeHealthy: boolean,
  ): Backend {
    const existing = this.backends.get(spec.nodeId);
    if (existing) {
      existing.host = spec.host;
      existing.port = spec.port;
      existing.pid = spec.pid;
      existing.removed = false;
      existing.health.restart(assumeHealthy);
      existing.rampFromMs = null;
      this.enteredRotation(existing);
      return existing;
    }
    const parts = link(spec.nodeId);
    const backend = new Backend(
      spec.nodeId,
      spec,
      parts.link,
      parts.admission,
      this.started,
      assumeHealthy,
    );
    this.backends.set(spec.nodeId, backend);
    this.enteredRotation(backend);
    return backend;
  }

  /** Takes a backend out of rotation now; its connections keep flowing until they close. */
  removeBackend(nodeId: string): void {
    const backend = this.backends.get(nodeId);
    if (!backend) return;
    backend.removed = true;
    // Held connections were aimed at a node that is gone; they vanish like their SYNs.
    for (const held of backend.held) this.dropHeld(held);
  }

  /** Every backend, removed ones included while they exist. */
  list(): Backend[] {
    return [...this.backends.values()];
  }

  /** Looks up a backend by node id. */
  get(nodeId: string): Backend | undefined {
    return this.backends.get(nodeId);
  }

  /** A backend in rotation picked at random, for a probe through this region; none when empty. */
  probeTarget(): Backend | undefined {
    const candidates = this.list().filter((b) => b.inRotation);
    return candidates[this.options.rng.int(candidates.length)];
  }

  /** Takes one new device connection: admission, backend choice, conntrack, then relay. */
  handleConnection(socket: Socket): void {
    const atMs = nowMs();
    const choice = this.choose(atMs);
    if (choice === 'reset') resetSocket(socket);
    else if (choice === 'close') socket.destroy();
    else if (this.hasRoom(choice)) this.admit(socket, choice, []);
    else this.hold(socket, choice, atMs);
  }

  /**
   * The decision for one new connection, with nothing done to a socket: its
   * backend (counted as accepted), or `reset` (refused by admission) or `close`
   * (no backend in rotation, or the balancer is closed). Relay mode carries
   * the connection elsewhere on this answer (relays.ts). `tried`: a
   * redispatch's nodes that refused it, not picked again; none left is a reset.
   */
  choose(atMs: number, tried: readonly string[] = []): Backend | 'reset' | 'close' {
    if (this.closed) return 'close';
    for (const bucket of this.regionBuckets) {
      if (!bucket.take(atMs)) {
        this.admissionRejected++;
        return 'reset';
      }
    }
    const backend = this.pick(atMs, tried);
    if (!backend) {
      if (tried.length > 0) return 'reset';
      this.noBackend++;
      return 'close';
    }
    for (const bucket of backend.admission.buckets) {
      if (!bucket.take(atMs)) {
        this.admissionRejected++;
        return 'reset';
      }
    }
    backend.accepted++;
    return backend;
  }

  /** Its listening socket, for relay mode to share with the relays. */
  get listener(): Server {
    return this.server;
  }

  /** Health-checks every backend not already being checked. */
  async checkAll(): Promise<void> {
    const spec = this.options.health;
    const checks: Promise<void>[] = [];
    for (const backend of this.backends.values()) {
      if (backend.health.checking) continue;
      backend.health.checking = true;
      checks.push(
        probeHealthz(backend.host, backend.port, backend.link, spec.timeoutMs, {
          pid: backend.pid,
        }).then((check) => {
          backend.health.checking = false;
          if (this.closed) return;
          if (backend.health.record(check, spec) && backend.health.healthy) {
            this.enteredRotation(backend);
          }
        }),
      );
    }
    await Promise.all(checks);
  }

  /** Resets every connection through `backend`; returns how many. */
  reset(backend: Backend): number {
    const n = backend.link.resetAll();
    this.resets += n;
    return n;
  }

  /** One backend's sample. */
  sampleBackend(backend: Backend, atMs: number): BackendSample {
    return {
      nodeId: backend.nodeId,
      region: this.name,
      connections: backend.connections,
      accepted: backend.accepted,
      healthy: backend.health.healthy,
      inRotation: backend.inRotation || (!backend.removed && this.failingOpen()),
      weight: backend.weight(atMs, this.options.slowStartMs),
      conntrackHeld: backend.held.size,
      conntrackTimedOut: backend.conntrackTimedOut,
      healthChangedAtMs: backend.health.changedAtMs,
      checksStarved: backend.health.starved,
      ...(this.options.redispatch && { redispatches: backend.redispatches }),
      ...(this.options.maxConnecting !== undefined && {
        queueAbandoned: backend.queueAbandoned,
        queueTimedOut: backend.queueTimedOut,
      }),
    };
  }

  /** Whether it fails open now: asked to, and no backend passes its checks. */
  private failingOpen(): boolean {
    if (!this.options.failOpen) return false;
    for (const b of this.backends.values()) if (b.inRotation) return false;
    return true;
  }

  /** Stops listening, checking and holding, and drops every connection. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.heldTimer) clearTimeout(this.heldTimer);
    if (this.queueSweeper) clearInterval(this.queueSweeper);
    for (const backend of this.backends.values()) {
      for (const held of backend.held) this.dropHeld(held);
      for (const q of backend.queued) {
        q.detach();
        q.socket.destroy();
      }
      backend.queued.clear();
      backend.link.close();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private enteredRotation(backend: Backend): void {
    if (
      backend.inRotation &&
      backend.rampsOnEntry &&
      backend.rampFromMs === null &&
      this.options.slowStartMs > 0
    ) {
      backend.rampFromMs = nowMs();
    }
  }

  private pick(atMs: number, tried: readonly string[]): Backend | undefined {
    const candidates: Backend[] = [];
    const untried = (b: Backend) => tried.length === 0 || !tried.includes(b.nodeId);
    for (const b of this.backends.values()) if (b.inRotation && untried(b)) candidates.push(b);
    if (candidates.length === 0 && this.failingOpen()) {
      // Failing open: every check failing says more about the checks than the nodes.
      for (const b of this.backends.values()) if (!b.removed && untried(b)) candidates.push(b);
    }
    if (candidates.length === 0) return undefined;
    const slowStartMs = this.options.slowStartMs;
    const weight = (b: Backend) => Math.max(MIN_WEIGHT, b.weight(atMs, slowStartMs));
    // Least-loaded by connections per unit of weight; held connections count (the balancer has them).
    const load = (b: Backend) => (b.connections + b.held.size + b.queued.size) / weight(b);
    switch (this.options.algorithm) {
      case 'round-robin': {
        // Smooth weighted round-robin (as nginx): with equal weights, plain rotation in order.
        let total = 0;
        let best: Backend | undefined;
        for (const b of candidates) {
          const w = weight(b);
          total += w;
          b.currentWeight += w;
          if (!best || b.currentWeight > best.currentWeight) best = b;
        }
        best!.currentWeight -= total;
        return best;
      }
      case 'least-connections': {
        let best = candidates[0]!;
        for (const b of candidates) if (load(b) < load(best)) best = b;
        return best;
      }
      case 'random': {
        let total = 0;
        for (const b of candidates) total += weight(b);
        let r = this.options.rng.next() * total;
        for (const b of candidates) {
          r -= weight(b);
          if (r < 0) return b;
        }
        return candidates[candidates.length - 1];
      }
      case 'power-of-two': {
        const rng = this.options.rng;
        const a = candidates[rng.int(candidates.length)]!;
        if (candidates.length === 1) return a;
        let i = rng.int(candidates.length - 1);
        if (candidates[i] === a) i = candidates.length - 1;
        const b = candidates[i]!;
        return load(b) < load(a) ? b : a;
      }
    }
  }

  private hasRoom(backend: Backend): boolean {
    const table = backend.admission.conntrackTable;
    return table === null || backend.connections < table;
  }

  /**
   * Connects to the node and relays; a refused connection closes the device's
   * socket, or with redispatch goes to another node.
   */
  private admit(socket: Socket, backend: Backend, early: Buffer[], tried: string[] = []): void {
    const max = this.options.maxConnecting;
    if (max !== undefined) {
      if (backend.unanswered >= max) {
        this.queue(socket, backend, early, tried);
        return;
      }
      backend.unanswered++;
    }
    if (this.options.redispatch) {
      this.connectFirst(socket, backend, early, tried);
      return;
    }
    const node = connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    this.holdSlot(backend, node);
    node.setNoDelay(true);
    socket.setNoDelay(true);
    const relay = backend.link.relay(socket, node);
    for (const chunk of early) relay.fromClient(chunk);
    socket.resume();
  }

  /**
   * Redispatch: the node's connection is made before any byte is relayed, so
   * a refusal can go to another node (its bytes wait in the device's socket
   * meanwhile). The connect counts on its node while under way.
   */
  private connectFirst(socket: Socket, backend: Backend, early: Buffer[], tried: string[]): void {
    socket.on('error', () => {});
    backend.connecting++;
    const node = connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    this.holdSlot(backend, node);
    const refused = () => {
      backend.connecting--;
      node.destroy();
      if (socket.destroyed || this.closed) return;
      tried.push(backend.nodeId);
      const next = tried.length > REDISPATCHES ? 'reset' : this.choose(nowMs(), tried);
      if (typeof next === 'string') {
        if (next === 'reset') resetSocket(socket);
        else socket.destroy();
        return;
      }
      backend.redispatches++;
      if (this.hasRoom(next)) this.admit(socket, next, early, tried);
      else this.hold(socket, next, nowMs(), early);
    };
    node.once('error', refused);
    node.once('connect', () => {
      backend.connecting--;
      node.off('error', refused);
      if (socket.destroyed) {
        node.destroy();
        return;
      }
      node.setNoDelay(true);
      socket.setNoDelay(true);
      const relay = backend.link.relay(socket, node);
      for (const chunk of early) relay.fromClient(chunk);
      socket.resume();
    });
  }

  /**
   * With `maxConnecting`: holds one of the node's connect slots until the node
   * answers (its first bytes) or the connection ends; then the next queued
   * device still waiting takes it.
   */
  private holdSlot(backend: Backend, node: Socket): void {
    if (this.options.maxConnecting === undefined) return;
    let held = true;
    const free = () => {
      if (!held) return;
      held = false;
      node.off('data', free);
      backend.unanswered--;
      if (this.closed) return;
      for (const next of backend.queued) {
        backend.queued.delete(next);
        next.detach();
        if (next.socket.destroyed) {
          // Gone this very turn (its close not yet emitted).
          backend.queueAbandoned++;
          continue;
        }
        this.admit(next.socket, backend, next.chunks, next.tried);
        return;
      }
    };
    node.on('data', free);
    node.once('close', free);
  }

  /**
   * Queues a device for a connect slot of its node. Its bytes are read so that
   * one giving up (FIN) is dropped here, never carried to the node; they are
   * forwarded when its turn comes.
   */
  private queue(socket: Socket, backend: Backend, early: Buffer[], tried: string[]): void {
    const q: Queued = { socket, atMs: nowMs(), chunks: [...early], tried, detach: () => {} };
    socket.on('error', () => {});
    const stop = readWhileWaiting(socket, q.chunks, HELD_BUFFER_BYTES, () => {
      q.detach();
      backend.queued.delete(q);
      backend.queueAbandoned++;
      socket.destroy();
    });
    q.detach = () => {
      stop();
      // Its bytes wait in the socket until its relay reads them (admit resumes it).
      socket.pause();
    };
    backend.queued.add(q);
    if (this.queueSweeper === undefined && this.options.queueTimeoutMs !== undefined)
      this.queueSweeper = setInterval(() => this.sweepQueues(), QUEUE_SWEEP_MS);
  }

  /** Resets the queued devices that waited past the queue timeout (the oldest first). */
  private sweepQueues(): void {
    const timeoutMs = this.options.queueTimeoutMs ?? Number.POSITIVE_INFINITY;
    const now = nowMs();
    let queued = 0;
    for (const backend of this.backends.values()) {
      for (const q of backend.queued) {
        if (now - q.atMs < timeoutMs) break;
        backend.queued.delete(q);
        q.detach();
        backend.queueTimedOut++;
        resetSocket(q.socket);
      }
      queued += backend.queued.size;
    }
    if (queued === 0 || this.closed) {
      clearInterval(this.queueSweeper);
      this.queueSweeper = undefined;
    }
  }

  /**
   * Holds a connection the node's conntrack table has no room for: no answer,
   * no close. Its bytes are read into a small buffer only so that a device
   * giving up (FIN) is noticed; they are forwarded if it is admitted.
   */
  private hold(socket: Socket, backend: Backend, atMs: number, early: Buffer[] = []): void {
    const held: Held = {
      socket,
      backend,
      arrivalMs: atMs,
      retry: 0,
      chunks: [...early],
      gone: false,
      detach: () => {},
    };
    backend.held.add(held);
    socket.on('error', () => {});
    held.detach = readWhileWaiting(socket, held.chunks, HELD_BUFFER_BYTES, () =>
      this.dropHeld(held),
    );
    this.scheduleHeld(held);
  }

  private scheduleHeld(held: Held): void {
    const offsetS = this.options.synRetriesS[held.retry];
    if (offsetS === undefined) {
      held.backend.conntrackTimedOut++;
      this.dropHeld(held);
      return;
    }
    const atMs = held.arrivalMs + offsetS * 1000;
    this.heldQueue.push(atMs, held);
    if (atMs < this.heldTimerAtMs) this.armHeld(atMs);
  }

  private armHeld(atMs: number): void {
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.heldTimerAtMs = atMs;
    this.heldTimer = setTimeout(() => this.retryHeld(), Math.max(0, atMs - nowMs()));
  }

  /** The SYN retries that are due: admit where there is room, else wait for the next offset. */
  private retryHeld(): void {
    this.heldTimer = undefined;
    this.heldTimerAtMs = Number.POSITIVE_INFINITY;
    const now = nowMs() + 0.5;
    for (;;) {
      const at = this.heldQueue.peekAtMs();
      if (at === undefined) return;
      if (at > now) {
        this.armHeld(at);
        return;
      }
      const held = this.heldQueue.pop()!;
      if (held.gone) continue;
      if (!held.backend.removed && this.hasRoom(held.backend)) {
        this.release(held);
        this.admit(held.socket, held.backend, held.chunks);
      } else {
        held.retry++;
        this.scheduleHeld(held);
      }
    }
  }

  /** Stops holding: the connection is admitted or dropped. */
  private release(held: Held): void {
    held.gone = true;
    held.backend.held.delete(held);
    held.detach();
  }

  private dropHeld(held: Held): void {
    if (held.gone) return;
    this.release(held);
    held.socket.destroy();
  }
}
