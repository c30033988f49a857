/**
 * The WebSocket close codes pushbench uses, in one table that says for each
 * whether a device should reconnect, as centrifuge's `disconnect.go` does: the
 * RFC 6455 codes (§7.4.1) the lean socket, the lean client and the node send or
 * report, and the device protocol's own 4xxx codes. {@link CloseCode} and
 * {@link retryableCloseCodes} derive from it, and docs/protocol.md's "Close
 * codes" table is checked against it (test/core/close-codes.test.ts). It lives
 * in core/ so that both server/ and loadgen/ read it.
 */

/** One row of {@link closeCodeTable}. */
export interface CloseCodeRow {
  /** The code as it appears in a close frame, or as reported locally (1005, 1006). */
  readonly code: number;
  /** The key of {@link CloseCode}, and the name docs/protocol.md shows. */
  readonly name: string;
  /**
   * Whether a device whose connection ended with this code, without its asking,
   * should reconnect (with backoff). False means retrying would repeat the close:
   * something must change first.
   */
  readonly reconnect: boolean;
}

/** Every close code pushbench sends or reports, in code order. */
export const closeCodeTable = [
  /** Normal closure, e.g. the client asked to close. */
  { code: 1000, name: 'Normal', reconnect: true },
  /** The node is draining or shutting down; another node will answer. */
  { code: 1001, name: 'GoingAway', reconnect: true },
  /** Frame-level protocol violation (e.g. an unmasked client frame). */
  { code: 1002, name: 'ProtocolError', reconnect: false },
  /** A binary frame: the device protocol is JSON text only. */
  { code: 1003, name: 'UnsupportedData', reconnect: false },
  /** Reported for a close frame without a code; never sent (RFC 6455 §7.4.1). The node always sends one. */
  { code: 1005, name: 'NoStatus', reconnect: false },
  /** Reported when the connection ended without a close frame; never sent. */
  { code: 1006, name: 'Abnormal', reconnect: true },
  /** Text (or a close reason) that is not valid UTF-8. */
  { code: 1007, name: 'InvalidPayload', reconnect: false },
  /** Text that is not a protocol frame (not JSON, not an object, no type). */
  { code: 1008, name: 'PolicyViolation', reconnect: false },
  /** A message larger than the receiver accepts. */
  { code: 1009, name: 'MessageTooBig', reconnect: false },
  /** The node failed internally. */
  { code: 1011, name: 'InternalError', reconnect: true },
  /** Another connection of the same device replaced this one: do not reconnect this socket. */
  { code: 4001, name: 'Replaced', reconnect: false },
  /** The connection reached its maximum lifetime (after a goaway); reconnecting rebalances nodes. */
  { code: 4002, name: 'Lifetime', reconnect: true },
  /** The device read too slowly and its send buffer overflowed. */
  { code: 4008, name: 'SlowConsumer', reconnect: true },
] as const satisfies readonly CloseCodeRow[];

type Row = (typeof closeCodeTable)[number];

/** The name of a row of {@link closeCodeTable}, e.g. `GoingAway`. */
export type CloseCodeName = Row['name'];

/** Close codes by name, e.g. `CloseCode.GoingAway` is 1001; derived from {@link closeCodeTable}. */
export const CloseCode: { readonly [R in Row as R['name']]: R['code'] } = Object.freeze(
  // fromEntries loses the key/value pairing; the mapped type above restores it.
  Object.fromEntries(closeCodeTable.map((row) => [row.name, row.code])) as {
    [R in Row as R['name']]: R['code'];
  },
);

/** The codes after which a device should reconnect: the table's rows with `reconnect`. */
export const retryableCloseCodes: ReadonlySet<number> = new Set(
  closeCodeTable.filter((row) => row.reconnect).map((row) => row.code),
);
