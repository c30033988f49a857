import type { RunPhase, TimelinePoint } from '../../core/result.js';
import { formatCount, formatMs } from '../../core/units.js';

/** Receives run events; the CLI's progress display is one of these. */
export interface RunListener {
  phase?(phase: RunPhase): void;
  interval?(point: TimelinePoint): void;
  /** A one-line notice (node started, results written). */
  notice?(text: string): void;
}

function line(pt: TimelinePoint): string {
  const p99 = pt.pushP99Ms === null ? '-' : formatMs(pt.pushP99Ms);
  return (
    `${String(pt.t.toFixed(0)).padStart(4)}s ${pt.phase.padEnd(10)} conns ${formatCount(pt.open)}` +
    `  +${formatCount(pt.connectAttempts)}/s  push ${formatCount(pt.accepted)}/s` +
    `  recv ${formatCount(pt.received)}/s  p99 ${p99}` +
    (pt.connectFailures > 0 ? `  connect failures ${pt.connectFailures}` : '') +
    (pt.disconnects > 0 ? `  drops ${pt.disconnects}` : '')
  );
}

/**
 * Progress on stderr. On a TTY one line is rewritten every interval; without a
 * TTY (CI logs) a plain line is printed every `plainEverySec` seconds and at
 * each phase change, so a log shows the run moving without flooding it.
 * `--json` runs use no listener at all.
 */
export function progressListener(
  stream: NodeJS.WriteStream = process.stderr,
  plainEverySec = 5,
): RunListener {
  if (!stream.isTTY) {
    let lastPrinted = Number.NEGATIVE_INFINITY;
    return {
      phase(p: RunPhase) {
        stream.write(`phase ${p}\n`);
      },
      interval(pt) {
        if (pt.t - lastPrinted < plainEverySec) return;
        lastPrinted = pt.t;
        stream.write(`${line(pt)}\n`);
      },
      notice(text) {
        stream.write(`${text}\n`);
      },
    };
  }
  const clear = () => stream.write('\r\x1b[2K');
  return {
    phase(p: RunPhase) {
      if (p === 'done') clear();
    },
    interval(pt) {
      clear();
      stream.write(line(pt));
    },
    notice(text) {
      clear();
      stream.write(`${text}\n`);
    },
  };
}
