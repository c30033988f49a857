import type { Broker, RoomHistory } from './broker.js';
import type { DeviceConnection } from './connections.js';
import { encodeRoomFrame, type RoomPosition } from './protocol.js';
import { encodeTextFrame } from './ws-server.js';

/** Room settings. */
export interface RoomOptions {
  /** Rooms one connection may join. */
  maxRoomsPerConnection: number;
  /** Messages kept per room for `dump` and recovery. */
  historyLength: number;
  /** An idle room's history expires after this. */
  historyTtlMs: number;
}

/** What a subscribe answers. */
export type SubscribeResult =
  | { ok: false; code: 'room_cap'; error: string }
  | { ok: true; history: RoomHistory | undefined; recovered: boolean | undefined };

/**
 * Rooms (Pubby): any number of subscriptions per connection up to a cap; a
 * publish appends to the room's bounded history (offset + epoch) and fans out
 * to every node through the broker; each node encodes a message once, as a
 * WebSocket frame, and writes that same buffer to all its local subscribers.
 */
export class RoomHub {
  private readonly local = new Map<string, Set<DeviceConnection>>();

  constructor(
    private readonly broker: Broker,
    private readonly options: RoomOptions,
    /** Sends a protocol frame: a string, or a buffer from `encodeTextFrame` for fan-out. */
    private readonly send: (conn: DeviceConnection, frame: string | Buffer) => void,
    private readonly onFanOut: (room: string, recipients: number) => void,
  ) {}

  private channel(room: string): string {
    return `room:${room}`;
  }

  /** Subscribes a connection; with `dump` or `since`, also reads the history it asked for. */
  async subscribe(
    conn: DeviceConnection,
    room: string,
    dump: boolean,
    since: RoomPosition | undefined,
  ): Promise<SubscribeResult> {
    conn.rooms ??= new Set();
    if (!conn.rooms.has(room) && conn.rooms.size >= this.options.maxRoomsPerConnection) {
      return {
        ok: false,
        code: 'room_cap',
        error: `a connection may join at most ${this.options.maxRoomsPerConnection} rooms`,
      };
    }
    // Counted before any await, so concurrent subscribes cannot slip past the cap.
    conn.rooms.add(room);
    let members = this.local.get(room);
    if (!members) {
      members = new Set();
      this.local.set(room, members);
      members.add(conn);
      // First local subscriber: this node starts receiving the room's fan-out.
      await this.broker.subscribe(this.channel(room), (data) => this.deliver(room, data));
    }
    members.add(conn);
    if (!dump && !since) return { ok: true, history: undefined, recovered: undefined };
    const history = await this.broker.history(room, since);
    return { ok: true, history, recovered: since ? history.complete : undefined };
  }

  /** Removes one subscription. */
  unsubscribe(conn: DeviceConnection, room: string): void {
    conn.rooms?.delete(room);
    const members = this.local.get(room);
    if (!members) return;
    members.delete(conn);
    if (members.size === 0) {
      this.local.delete(room);
      this.broker.unsubscribe(this.channel(room)).catch(() => {});
    }
  }

  /** Removes every subscription of a closed connection. */
  leaveAll(conn: DeviceConnection): void {
    if (!conn.rooms) return;
    for (const room of [...conn.rooms]) this.unsubscribe(conn, room);
  }

  /** Publishes a message (serialised JSON) to a room on every node; returns its position. */
  async publish(room: string, messageJson: string): Promise<{ offset: number; epoch: string }> {
    const position = await this.broker.appendHistory(room, messageJson, {
      maxLength: this.options.historyLength,
      ttlMs: this.options.historyTtlMs,
    });
    await this.broker.publish(
      this.channel(room),
      `${position.offset}\n${position.epoch}\n${messageJson}`,
    );
    return position;
  }

  /** Local subscribers of a room (for metrics and tests). */
  subscribers(room: string): number {
    return this.local.get(room)?.size ?? 0;
  }

  private deliver(room: string, data: string): void {
    const members = this.local.get(room);
    if (!members || members.size === 0) return;
    const first = data.indexOf('\n');
    const second = data.indexOf('\n', first + 1);
    if (first < 0 || second < 0) return;
    const offset = Number(data.slice(0, first));
    const epoch = data.slice(first + 1, second);
    // Framed and WebSocket-encoded once; the same buffer goes to every local subscriber.
    const frame = encodeTextFrame(encodeRoomFrame(room, offset, epoch, data.slice(second + 1)));
    for (const conn of members) this.send(conn, frame);
    this.onFanOut(room, members.size);
  }
}
