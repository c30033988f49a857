/**
 * The Artillery peer: writes a test script for Artillery's WebSocket engine and
 * a CSV payload of device tokens, then spawns `artillery run`. One arrival
 * phase at the connect rate for N / rate seconds gives N virtual users; each
 * connects with the next token, sends the subscribe frame and then thinks for a
 * day, holding its socket until the driver stops the process. Artillery splits
 * the phase and the payload rows over its local workers, so no token is used
 * twice. Artillery starts connecting on its own: the driver takes its baseline
 * from the last sample before the server sees a connection.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What the Artillery run needs. */
export interface ArtilleryRun {
  /** The `artillery` executable from {@link installArtillery}. */
  bin: string;
  /** `ws://host:port/ws`. */
  url: string;
  tokens: string[];
  rateHz: number;
  room: string;
  /** A scratch folder for the script, the payload and the tool's output. */
  dir: string;
}

/** Writes the script and payload into `run.dir` and starts Artillery in its own process group; output goes to `artillery.log`. */
export function startArtillery(run: ArtilleryRun): ChildProcess {
  const payload = join(run.dir, 'tokens.csv');
  writeFileSync(payload, `${run.tokens.join('\n')}\n`);
  const durationS = Math.max(1, Math.round(run.tokens.length / run.rateHz));
  const subscribe = JSON.stringify({ type: 'subscribe', room: run.room });
  // JSON is valid YAML: no indentation or quoting to get wrong.
  const script = {
    config: {
      target: run.url,
      phases: [{ duration: durationS, arrivalRate: run.rateHz, name: 'connect' }],
      payload: { path: payload, fields: ['token'], order: 'sequence', skipHeader: false },
    },
    scenarios: [
      {
        name: 'hold',
        engine: 'ws',
        flow: [{ connect: `${run.url}?token={{ token }}` }, { send: subscribe }, { think: 86_400 }],
      },
    ],
  };
  const scriptPath = join(run.dir, 'artillery.yml');
  writeFileSync(scriptPath, JSON.stringify(script, null, 2));
  const log = openSync(join(run.dir, 'artillery.log'), 'a');
  return spawn(run.bin, ['run', scriptPath], {
    cwd: run.dir,
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ARTILLERY_DISABLE_TELEMETRY: 'true', NO_COLOR: '1' },
  });
}

/**
 * Artillery's error counters summed over the periods it has reported so far
 * (`errors.ETIMEDOUT: 12`, `vusers.failed: 12`), or the end of its output when
 * it reported none.
 */
export function artilleryErrors(dir: string): string {
  let text: string;
  try {
    text = readFileSync(join(dir, 'artillery.log'), 'utf8');
  } catch {
    return '';
  }
  const sums = new Map<string, number>();
  for (const m of text.matchAll(/^(errors\.\S+|vusers\.failed):\s*\.*\s*(\d+)\s*$/gm))
    sums.set(m[1]!, (sums.get(m[1]!) ?? 0) + Number(m[2]));
  if (sums.size > 0) return [...sums].map(([k, v]) => `${k} ${v}`).join(', ');
  return text.slice(-300).trim().replace(/\s+/g, ' ');
}
