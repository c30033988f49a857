import { formatCount, formatMs } from '../../core/units.js';
import type { RunPhase, TimelinePoint } from '../../loadgen/coordinator.js';

/** Receives run events; the CLI's progress display is one of these. */
export interface RunListener {
  phase?(phase: RunPhase): void;
  interval?(point: TimelinePoint): void;
  /** A one-line notice (node started, results written). */
  notice?(text: string): void;
}

/**
 * A live progress line on stderr. On a TTY it rewrites one line each interval;
 * otherwise it prints nothing (scripts and CI read the summary and report.json).
 */
export function progressListener(stream: NodeJS.WriteStream = process.stderr): RunListener {
  if (!stream.isTTY) return {};
  const clear = () => stream.write('\r\x1b[2K');
  return {
    phase(p: RunPhase) {
      if (p === 'done') clear();
    },
    interval(pt) {
      clear();
      const p99 = pt.pushP99Ms === null ? '-' : formatMs(pt.pushP99Ms);
      stream.write(
        `${String(pt.t.toFixed(0)).padStart(4)}s ${pt.phase.padEnd(10)} conns ${formatCount(pt.open)}` +
          `  +${formatCount(pt.connectAttempts)}/s  push ${formatCount(pt.accepted)}/s` +
          `  recv ${formatCount(pt.received)}/s  p99 ${p99}` +
          (pt.connectFailures > 0 ? `  connect failures ${pt.connectFailures}` : '') +
          (pt.disconnects > 0 ? `  drops ${pt.disconnects}` : ''),
      );
    },
    notice(text) {
      clear();
      stream.write(`${text}\n`);
    },
  };
}
