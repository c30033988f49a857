/**
 * The Tsung peer: writes a Tsung configuration (the `ts_websocket` plugin) and
 * a token file for its `file_server`, then spawns `tsung start`. Each session
 * takes the next token, connects to `/ws?token=...`, sends the subscribe frame
 * and thinks for a day. Tsung's launcher falls behind at slow arrival rates,
 * so the arrival phase asks for more than the connect rate (see
 * {@link TSUNG_ARRIVAL_FACTOR}) and is capped with `maxnumber`; the driver
 * reports the rate the server saw.
 * Tsung runs its clients in the controller VM, logs under the scratch folder,
 * and starts an `epmd` daemon that outlives it ({@link epmdPids} lets the
 * driver stop the one it started).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Tsung's arrival rate as a multiple of the wanted connect rate. Its launcher
 * sleeps an exponentially distributed, millisecond-truncated time between two
 * users and cannot hold a steady 1,000/s: asked for exactly 1,000/s it reached
 * 370-460/s on this machine; asked for 1,500/s it reached 1,400-2,000/s.
 */
export const TSUNG_ARRIVAL_FACTOR = 1.5;

/** What the Tsung run needs. */
export interface TsungRun {
  /** The `tsung` executable from {@link installTsung}. */
  bin: string;
  host: string;
  port: number;
  tokens: string[];
  rateHz: number;
  room: string;
  /** A scratch folder for the configuration, the tokens and Tsung's logs. */
  dir: string;
}

/** Escapes text for an XML attribute or element. */
function xml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** Writes the configuration and token file into `run.dir` and starts Tsung in its own process group. */
export function startTsung(run: TsungRun): ChildProcess {
  const n = run.tokens.length;
  const tokenFile = join(run.dir, 'tokens.csv');
  writeFileSync(tokenFile, `${run.tokens.join('\n')}\n`);
  const arrivalHz = Math.ceil(run.rateHz * TSUNG_ARRIVAL_FACTOR);
  // Long enough for the launcher to start all n even when it runs late; maxnumber stops it at n.
  const durationS = Math.ceil((2 * n) / run.rateHz) + 5;
  const subscribe = JSON.stringify({ type: 'subscribe', room: run.room });
  const config = `<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
<tsung loglevel="warning" version="1.0">
  <clients>
    <client host="localhost" use_controller_vm="true" maxusers="${n + 1000}"/>
  </clients>
  <servers>
    <server host="${xml(run.host)}" port="${run.port}" type="tcp"/>
  </servers>
  <load>
    <arrivalphase phase="1" duration="${durationS}" unit="second">
      <users maxnumber="${n}" arrivalrate="${arrivalHz}" unit="second"/>
    </arrivalphase>
  </load>
  <options>
    <option name="file_server" id="tokens" value="${xml(tokenFile)}"/>
  </options>
  <sessions>
    <session name="hold" probability="100" type="ts_websocket">
      <setdynvars sourcetype="file" fileid="tokens" delimiter=";" order="iter">
        <var name="token"/>
      </setdynvars>
      <request subst="true">
        <websocket type="connect" path="/ws?token=%%_token%%"></websocket>
      </request>
      <request>
        <websocket type="message" frame="text">${xml(subscribe)}</websocket>
      </request>
      <thinktime value="86400" random="false"/>
    </session>
  </sessions>
</tsung>
`;
  const configPath = join(run.dir, 'tsung.xml');
  writeFileSync(configPath, config);
  const log = openSync(join(run.dir, 'tsung.out'), 'a');
  return spawn(run.bin, ['-f', configPath, '-l', join(run.dir, 'log'), '-n', 'start'], {
    cwd: run.dir,
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, HOME: run.dir },
  });
}

/** Pids of running `epmd` processes (Erlang's port mapper daemon). */
export function epmdPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, 'utf8').trim() === 'epmd') pids.push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  return pids;
}

/**
 * Tsung's user and error counters from the newest `tsung.log` under `dir/log`,
 * or the end of its console output. Tsung dumps them every 10 s: gauges as
 * `stats: users <now> <max>`, counters as `stats: error_connect_timeout
 * <this interval> <total>`; this keeps `now` and `total`.
 */
export function tsungErrors(dir: string): string {
  const latest = new Map<string, string>();
  try {
    const runs = readdirSync(join(dir, 'log')).sort();
    const last = runs[runs.length - 1];
    const text = last ? readFileSync(join(dir, 'log', last, 'tsung.log'), 'utf8') : '';
    for (const m of text.matchAll(/^stats: (users|connected|error_\S+) (\S+) (\S+)$/gm))
      latest.set(m[1]!, m[1]!.startsWith('error_') ? m[3]! : m[2]!);
  } catch {
    // No log yet.
  }
  if (latest.size > 0) return [...latest].map(([k, v]) => `${k} ${v}`).join(', ');
  try {
    return readFileSync(join(dir, 'tsung.out'), 'utf8').slice(-300).trim().replace(/\s+/g, ' ');
  } catch {
    return '';
  }
}
