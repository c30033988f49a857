/**
 * The pushbench message inside a push: the publisher puts its message number
 * and scheduled send time in the payload; devices read them back.
 */

/** The payload pushbench's publisher sends. */
export interface BenchPayload {
  /** Message number, 0..sent-1, the ledger's key. */
  seq: number;
  /** Scheduled send time, host-monotonic µs. */
  t: number;
  /** Padding to reach the scenario's payload size. */
  pad?: string;
}

/** Reads `{type:"push", payload:{seq, t}}` from a frame; undefined if it is not one. */
export function readPushFrame(text: string): { seq: number; sentAtUs: number } | undefined {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof frame !== 'object' || frame === null) return undefined;
  const { type, payload } = frame as { type?: unknown; payload?: unknown };
  if (type !== 'push' || typeof payload !== 'object' || payload === null) return undefined;
  const { seq, t } = payload as { seq?: unknown; t?: unknown };
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || typeof t !== 'number') {
    return undefined;
  }
  return { seq, sentAtUs: t };
}
