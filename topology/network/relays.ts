/**
 * Hand-off mode of the network (the kernel engine's builtin balancer): the
 * network process is only the decision point. Its balancers accept each
 * device, pick a node exactly as they always do, and hand the accepted socket
 * (paused, nothing read) to one of several relay processes (relay-process.ts),
 * which carry the bytes. The network process holds no socket of a device once
 * it is handed off, so one process's open-file limit no longer caps the
 * region: each relay holds up to (RLIMIT_NOFILE − 200) / 2 connections, and
 * there are as many relays as the devices need.
 *
 * Per-node connection counts stay exact but for one IPC hop: a connection is
 * counted on its node when it is handed off, and uncounted when its relay
 * reports it finished (coalesced per event-loop turn of the relay). So
 * least-connections and power-of-two see every assignment at once and every
 * close within about a millisecond.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Socket } from 'node:net';
import { entryBeside } from '../../core/runtime.js';
import type { CarryMessage, ClosedMessage } from './relay-process.js';

/** Descriptors a relay keeps for itself (IPC, stdio, the heap's files). */
const RELAY_RESERVED_FILES = 200;

/** Connections one relay carries under an open-file limit (two descriptors each). */
export function relayCapacity(openFiles: number | null): number {
  if (openFiles === null) return 1_000_000;
  return Math.max(1, Math.floor((openFiles - RELAY_RESERVED_FILES) / 2));
}

/** Relays `devices` connections need under an open-file limit. */
export function relaysFor(devices: number, openFiles: number | null): number {
  return Math.max(1, Math.ceil(devices / relayCapacity(openFiles)));
}

interface RelayChild {
  child: ChildProcess;
  live: number;
}

/** The relay processes of one network, and the per-node counts they report. */
export class RelayPool {
  private readonly relays: RelayChild[] = [];
  private stopped = false;

  private constructor(private readonly closed: (nodeId: string, n: number) => void) {}

  /** Forks `count` relays; `closed` hears of finished connections per node. */
  static async start(
    count: number,
    closed: (nodeId: string, n: number) => void,
  ): Promise<RelayPool> {
    const pool = new RelayPool(closed);
    const entry = entryBeside(import.meta.url, './relay-process', { leanHeap: true });
    for (let i = 0; i < count; i++) {
      const child = fork(entry.path, [], {
        execArgv: entry.execArgv,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      const relay: RelayChild = { child, live: 0 };
      child.on('message', (m: ClosedMessage) => {
        if (m?.op !== 'closed' || typeof m.counts !== 'object') return;
        for (const [nodeId, n] of Object.entries(m.counts)) {
          relay.live -= n;
          pool.closed(nodeId, n);
        }
      });
      child.on('exit', (code, signal) => {
        if (!pool.stopped) {
          process.stderr.write(
            `relay ${i} exited (${signal ?? code}); its ${relay.live} connections are gone\n`,
          );
        }
      });
      pool.relays.push(relay);
    }
    // Each says `ready` once it listens for sockets.
    try {
      await Promise.all(
        pool.relays.map(
          (r, i) =>
            new Promise<void>((resolve, reject) => {
              const timer = setTimeout(
                () => reject(new Error(`relay ${i} did not start within 15 s`)),
                15_000,
              );
              r.child.on('message', (m: { op?: string }) => {
                if (m?.op !== 'ready') return;
                clearTimeout(timer);
                resolve();
              });
              r.child.once('exit', (code, signal) => {
                clearTimeout(timer);
                reject(new Error(`relay ${i} exited (${signal ?? code}) before it was ready`));
              });
            }),
        ),
      );
    } catch (err) {
      pool.stop();
      throw err;
    }
    return pool;
  }

  /** Connections the relays carry now. */
  get live(): number {
    let n = 0;
    for (const r of this.relays) n += r.live;
    return n;
  }

  /** Hands a paused, unread socket to the relay with the fewest connections, to carry to the node. */
  carry(socket: Socket, backend: { nodeId: string; host: string; port: number }): void {
    let best: RelayChild | undefined;
    for (const r of this.relays) {
      if (r.child.connected && (!best || r.live < best.live)) best = r;
    }
    if (!best) {
      socket.destroy();
      this.closed(backend.nodeId, 1);
      return;
    }
    best.live++;
    const message: CarryMessage = {
      op: 'carry',
      nodeId: backend.nodeId,
      host: backend.host,
      port: backend.port,
    };
    const relay = best;
    relay.child.send(message, socket, (err) => {
      if (!err) return;
      // Never reached the relay: the device's socket is dropped here and uncounted.
      relay.live--;
      socket.destroy();
      this.closed(backend.nodeId, 1);
    });
  }

  /** Stops every relay (their connections close with them). */
  stop(): void {
    this.stopped = true;
    for (const r of this.relays) {
      if (r.child.connected) r.child.disconnect();
      r.child.kill('SIGTERM');
    }
  }
}
