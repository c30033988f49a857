/**
 * Process exit codes, the one table the README documents. CI scripts gate on these.
 */
export const ExitCode = {
  /** Every gate passed. */
  Pass: 0,
  /** pushbench itself failed (a bug, a crashed worker, a server that would not start). */
  Internal: 1,
  /** A bad flag, scenario or gate expression: nothing ran, or the run could not start. */
  Usage: 2,
  /** The run completed and at least one gate failed. */
  GateFailed: 3,
  /** The run completed but too few samples to decide a statistical gate. */
  Inconclusive: 4,
  /** The load generator saturated: its own delay would be blamed on the server. */
  Invalid: 5,
  /** A load agent on another host was lost mid-run: no partial result is given. */
  AgentLost: 6,
  /** Stopped by SIGINT (Ctrl-C), after removing what the run made: no result is given. */
  Interrupted: 130,
  /** Stopped by SIGTERM, after removing what the run made: no result is given. */
  Terminated: 143,
} as const;

/** One of the values of {@link ExitCode}. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
