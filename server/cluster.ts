import { NodeUnreachableError } from '../core/errors.js';
import type { Broker } from './broker.js';

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

interface Envelope {
  kind: 'req' | 'rep';
  rid: number;
  from: string;
  req?: NodeRequest;
  rep?: NodeReply;
}

/**
 * Node-to-node requests over the broker: every node subscribes to its inbox
 * channel `node:<id>`; a request carries a request id and the sender's id, the
 * reply comes back on the sender's inbox. Pushy's "send to that node and get a
 * status back", with the broker (in-process memory, or Redis pub/sub) as wire.
 */
export class NodeLink {
  private nextRid = 1;
  private readonly pending = new Map<
    number,
    { resolve: (r: NodeReply) => void; timer: NodeJS.Timeout }
  >();

  constructor(
    private readonly broker: Broker,
    private readonly nodeId: string,
    private readonly handle: (req: NodeRequest) => Promise<NodeReply>,
  ) {}

  private inbox(nodeId: string): string {
    return `node:${nodeId}`;
  }

  /** Subscribes to this node's inbox. */
  async start(): Promise<void> {
    await this.broker.subscribe(this.inbox(this.nodeId), (data) => this.onEnvelope(data));
  }

  /** Unsubscribes and fails every request still waiting. */
  async stop(): Promise<void> {
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve({ outcome: 'node_unreachable' });
      this.pending.delete(rid);
    }
    await this.broker.unsubscribe(this.inbox(this.nodeId)).catch(() => {});
  }

  /** Asks `nodeId` to carry out `req`; rejects with {@link NodeUnreachableError} after `timeoutMs`. */
  request(nodeId: string, req: NodeRequest, timeoutMs: number): Promise<NodeReply> {
    const rid = this.nextRid++;
    return new Promise<NodeReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new NodeUnreachableError(nodeId, timeoutMs));
      }, timeoutMs);
      this.pending.set(rid, { resolve, timer });
      const env: Envelope = { kind: 'req', rid, from: this.nodeId, req };
      this.broker.publish(this.inbox(nodeId), JSON.stringify(env)).catch((err: unknown) => {
        clearTimeout(timer);
        this.pending.delete(rid);
        reject(err);
      });
    });
  }

  private onEnvelope(data: string): void {
    let env: Envelope;
    try {
      env = JSON.parse(data) as Envelope;
    } catch {
      return;
    }
    if (env.kind === 'rep' && env.rep) {
      const p = this.pending.get(env.rid);
      if (!p) return; // answered after its timeout: the caller already reported it
      clearTimeout(p.timer);
      this.pending.delete(env.rid);
      p.resolve(env.rep);
      return;
    }
    if (env.kind === 'req' && env.req) {
      const reply = (rep: NodeReply) => {
        const out: Envelope = { kind: 'rep', rid: env.rid, from: this.nodeId, rep };
        this.broker.publish(this.inbox(env.from), JSON.stringify(out)).catch(() => {});
      };
      this.handle(env.req).then(reply, () => reply({ outcome: 'error' }));
    }
  }
}
