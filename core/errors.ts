/**
 * The one error family pushbench throws on purpose, as undici's `lib/core/errors.js`:
 * a base class, one subclass per condition a caller tells apart by type, and one
 * table of stable codes. A code never changes meaning once released; tests and
 * scripts may match on it.
 */
import { ExitCode, type ExitCodeValue } from './exit-codes.js';

/**
 * Every stable error code and the exit code it ends a CLI command with. The
 * runtime conditions (`*_UNAVAILABLE`, `*_UNREACHABLE`, `WS_ERR_NOT_OPEN`) are
 * answered where they happen (HTTP 503, a send callback) and end no command by
 * themselves; one that does escaped a handler, so it counts as pushbench failing.
 */
const errorCodes = {
  PB_USAGE: ExitCode.Usage,
  PB_BAD_SCENARIO: ExitCode.Usage,
  PB_UNKNOWN_SCENARIO: ExitCode.Usage,
  PB_BAD_GATE: ExitCode.Usage,
  PB_BAD_DURATION: ExitCode.Usage,
  PB_PORT_IN_USE: ExitCode.Usage,
  PB_LIMIT: ExitCode.Usage,
  PB_SERVER_START: ExitCode.Internal,
  PB_BACKEND_UNREACHABLE: ExitCode.Usage,
  PB_WORKER_FAILED: ExitCode.Internal,
  /** A load agent on another host left the run before it ended. */
  PB_AGENT_LOST: ExitCode.AgentLost,
  /** Fewer load agents joined than `--agents` asked for, in time. */
  PB_AGENTS_MISSING: ExitCode.Usage,
  PB_INTERNAL: ExitCode.Internal,
  /** {@link BrokerUnavailableError}. */
  PB_BROKER_UNAVAILABLE: ExitCode.Internal,
  /** {@link RegistryUnavailableError}. */
  PB_REGISTRY_UNAVAILABLE: ExitCode.Internal,
  /** {@link NodeUnreachableError}. */
  PB_NODE_UNREACHABLE: ExitCode.Internal,
  /** {@link QueueFullError}. */
  PB_QUEUE_FULL: ExitCode.Internal,
  /** {@link WsNotOpenError}; named like `ws`'s codes, as the frame parser's are. */
  WS_ERR_NOT_OPEN: ExitCode.Internal,
} as const satisfies Record<string, ExitCodeValue>;

/** A stable error code: a key of the one code table. */
export type ErrorCode = keyof typeof errorCodes;

/** True when `value` is one of the stable codes of the table. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

/**
 * The base of the family. The message is a single line stating the fact, the
 * offending value and what to do; `code` is stable.
 */
export class PushbenchError extends Error {
  /** Stable machine-readable code, e.g. `PB_BAD_GATE`. */
  readonly code: ErrorCode;
  /** Every problem found, when validation collected more than one. */
  readonly problems: readonly string[];

  constructor(
    code: ErrorCode,
    message: string,
    problems: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PushbenchError';
    this.code = code;
    this.problems = problems;
  }

  /** The exit code the CLI uses when this error ends a command. */
  get exitCode(): ExitCodeValue {
    return errorCodes[this.code];
  }
}

/**
 * The broker's backend (Redis, or the cluster hub) cannot be reached or did not
 * answer in time; callers answer 503 and may retry later.
 */
export class BrokerUnavailableError extends PushbenchError {
  declare readonly code: 'PB_BROKER_UNAVAILABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super('PB_BROKER_UNAVAILABLE', message, [], options);
    this.name = 'BrokerUnavailableError';
  }
}

/**
 * The registry's backend (Redis, or the cluster hub) is down, unreachable or too
 * slow. A runtime condition, not a usage error: an HTTP caller maps it to 503 and
 * a node may retry later.
 */
export class RegistryUnavailableError extends PushbenchError {
  declare readonly code: 'PB_REGISTRY_UNAVAILABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super('PB_REGISTRY_UNAVAILABLE', message, [], options);
    this.name = 'RegistryUnavailableError';
  }
}

/**
 * The indirect-push queue holds its maximum: a new message is refused (HTTP 503
 * `queue_full`) rather than dropping one already accepted.
 */
export class QueueFullError extends PushbenchError {
  declare readonly code: 'PB_QUEUE_FULL';
  /** Ids of a batch's messages queued before the one refused (the node fills it in). */
  queued: string[] = [];

  constructor(message: string) {
    super('PB_QUEUE_FULL', message);
    this.name = 'QueueFullError';
  }
}

/** Another node did not answer a node-to-node request in time: it is down, partitioned or overloaded. */
export class NodeUnreachableError extends PushbenchError {
  declare readonly code: 'PB_NODE_UNREACHABLE';

  /** `timeoutMs`: how long it waited; a string: why it stopped waiting sooner. */
  constructor(nodeId: string, timeoutMs: number | string) {
    super(
      'PB_NODE_UNREACHABLE',
      typeof timeoutMs === 'string'
        ? `node ${nodeId} is unreachable: ${timeoutMs}`
        : `node ${nodeId} did not answer within ${timeoutMs}ms`,
    );
    this.name = 'NodeUnreachableError';
  }
}

/**
 * `send` was called on a WebSocket that is closing or closed (`readyState` 2 or
 * 3); handed to the send callback, as `ws` does, rather than thrown.
 */
export class WsNotOpenError extends PushbenchError {
  declare readonly code: 'WS_ERR_NOT_OPEN';

  constructor(readyState: number) {
    super(
      'WS_ERR_NOT_OPEN',
      `WebSocket is not open: readyState ${readyState}; check readyState before sending`,
    );
    this.name = 'WsNotOpenError';
  }
}

/**
 * What survives of a {@link PushbenchError} that crossed a thread: its name,
 * message and code, but not its prototype (so not `instanceof`, `exitCode` or
 * the subclass).
 */
export interface PushbenchErrorLike {
  readonly name: string;
  readonly message: string;
  readonly code: ErrorCode;
}

/**
 * True when `err` is a {@link PushbenchError}, or was one before it crossed a
 * thread. Node hands a worker thread's uncaught error to the `Worker`'s `'error'`
 * event with its own properties but a plain `Error` prototype, so such a clone is
 * recognised by its `code` being one of the table's. A structured clone
 * (`postMessage`, `structuredClone`) keeps only name, message and stack and drops
 * `code` too: nothing can recognise that, so send `{ code, message }` instead.
 */
export function isPushbenchError(err: unknown): err is PushbenchErrorLike {
  if (err instanceof PushbenchError) return true;
  return err instanceof Error && isErrorCode((err as { code?: unknown }).code);
}
