import { NodeUnreachableError } from '../core/errors.js';
import type { Broker } from './broker.js';
import { type PeerEnvelope, PeerLinks, toEnvelope } from './peer-link.js';

/** A request one node asks another to carry out for a device it holds. */
export type NodeRequest =
  | {
      t: 'push';
      deviceId: string;
      id: string;
      payloadJson: string;
      wantAck: boolean;
      ackTimeoutMs: number;
    }
  | { t: 'd2d'; deviceId: string; from: string; id: string; payloadJson: string }
  /** The device connected again elsewhere: close this (older) connection if it is still the one. */
  | { t: 'replace'; deviceId: string; connId: string };

/** The holding node's answer. `outcome` is the same word the HTTP API and d2d_status use. */
export interface NodeReply {
  outcome: string;
}

/**
 * Node-to-node requests: Pushy's "send to that node and get a status back".
 * Directly, over the holder's peer link (peer-link.ts), when the registry
 * entry names one; else over the broker: every node subscribes to its inbox
 * channel `node:<id>`, a request carries a request id and the sender's id, and
 * the reply comes back on the sender's inbox (in-process memory, or Redis
 * pub/sub, or the hub, as wire).
 */
export class NodeLink {
  private nextRid = 1;
  private readonly pending = new Map<
    number,
    {
      resolve: (r: NodeReply) => void;
      reject: (err: Error) => void;
      timer: NodeJS.Timeout;
      nodeId: string;
      peer: string | undefined;
    }
  >();
  private readonly peers: PeerLinks | undefined;

  /** With `apiKey` (a string, even empty), requests go over peer links where the entry names one. */
  constructor(
    private readonly broker: Broker,
    private readonly nodeId: string,
    private readonly handle: (req: NodeRequest) => Promise<NodeReply>,
    apiKey?: string,
  ) {
    this.peers =
      apiKey === undefined
        ? undefined
        : new PeerLinks(
            apiKey,
            (env) => this.onReply(env),
            (address) => this.onPeerLost(address),
          );
  }

  /** Carries out a request that came over this process's peer port, and answers it there. */
  serve(env: PeerEnvelope, reply: (rep: PeerEnvelope) => void): void {
    if (env.kind !== 'req' || !env.req) return;
    const answer = (rep: NodeReply) => reply({ kind: 'rep', rid: env.rid, from: this.nodeId, rep });
    this.handle(env.req).then(answer, () => answer({ outcome: 'error' }));
  }

  private inbox(nodeId: string): string {
    return `node:${nodeId}`;
  }

  /** Subscribes to this node's inbox. */
  async start(): Promise<void> {
    await this.broker.subscribe(this.inbox(this.nodeId), (data) => this.onEnvelope(data));
  }

  /** Unsubscribes and fails every request still waiting. */
  async stop(): Promise<void> {
    this.peers?.close();
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve({ outcome: 'node_unreachable' });
      this.pending.delete(rid);
    }
    await this.broker.unsubscribe(this.inbox(this.nodeId)).catch(() => {});
  }

  /**
   * Asks `nodeId` to carry out `req`: at its peer link `peer` when given, else
   * through the broker. Rejects with {@link NodeUnreachableError} after
   * `timeoutMs`, or as soon as the peer link closes with the request in it.
   */
  request(nodeId: string, req: NodeRequest, timeoutMs: number, peer?: string): Promise<NodeReply> {
    const rid = this.nextRid++;
    const via = this.peers !== undefined ? peer : undefined;
    return new Promise<NodeReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new NodeUnreachableError(nodeId, timeoutMs));
      }, timeoutMs);
      this.pending.set(rid, { resolve, reject, timer, nodeId, peer: via });
      const env: PeerEnvelope = { kind: 'req', rid, from: this.nodeId, req };
      if (via !== undefined) {
        this.peers!.send(via, env);
        return;
      }
      this.broker.publish(this.inbox(nodeId), JSON.stringify(env)).catch((err: unknown) => {
        clearTimeout(timer);
        this.pending.delete(rid);
        reject(err);
      });
    });
  }

  private onReply(env: PeerEnvelope): void {
    if (env.kind !== 'rep' || !env.rep) return;
    const p = this.pending.get(env.rid);
    if (!p) return; // answered after its timeout: the caller already reported it
    clearTimeout(p.timer);
    this.pending.delete(env.rid);
    p.resolve(env.rep);
  }

  /** The link to `address` closed: what was waiting on it will never be answered there. */
  private onPeerLost(address: string): void {
    for (const [rid, p] of this.pending) {
      if (p.peer !== address) continue;
      clearTimeout(p.timer);
      this.pending.delete(rid);
      p.reject(new NodeUnreachableError(p.nodeId, `its peer link at ${address} closed`));
    }
  }

  private onEnvelope(data: string): void {
    let env: PeerEnvelope | undefined;
    try {
      env = toEnvelope(JSON.parse(data));
    } catch {
      return;
    }
    if (env === undefined) return;
    if (env.kind === 'rep') {
      this.onReply(env);
      return;
    }
    const from = env.from;
    this.serve(env, (rep) => {
      this.broker.publish(this.inbox(from), JSON.stringify(rep)).catch(() => {});
    });
  }
}
