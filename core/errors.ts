import { ExitCode, type ExitCodeValue } from './exit-codes.js';

/**
 * Stable error codes. A code never changes meaning once released; tests and
 * scripts may match on it.
 */
export type ErrorCode =
  | 'PB_USAGE'
  | 'PB_BAD_SCENARIO'
  | 'PB_UNKNOWN_SCENARIO'
  | 'PB_BAD_GATE'
  | 'PB_BAD_DURATION'
  | 'PB_PORT_IN_USE'
  | 'PB_LIMIT'
  | 'PB_SERVER_START'
  | 'PB_BACKEND_UNREACHABLE'
  | 'PB_WORKER_FAILED'
  | 'PB_INTERNAL';

/** Which exit code each error code maps to when it ends a CLI command. */
const exitCodeOf: Record<ErrorCode, ExitCodeValue> = {
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
  PB_INTERNAL: ExitCode.Internal,
};

/**
 * The one error family pushbench throws on purpose. The message is a single line
 * stating the fact, the offending value and what to do; `code` is stable.
 */
export class PushbenchError extends Error {
  /** Stable machine-readable code, e.g. `PB_BAD_GATE`. */
  readonly code: ErrorCode;
  /** Every problem found, when validation collected more than one. */
  readonly problems: readonly string[];

  constructor(code: ErrorCode, message: string, problems: readonly string[] = []) {
    super(message);
    this.name = 'PushbenchError';
    this.code = code;
    this.problems = problems;
  }

  /** The exit code the CLI uses when this error ends a command. */
  get exitCode(): ExitCodeValue {
    return exitCodeOf[this.code];
  }
}

/** True when `err` is a {@link PushbenchError}, including one cloned across a thread. */
export function isPushbenchError(err: unknown): err is PushbenchError {
  return err instanceof PushbenchError;
}
