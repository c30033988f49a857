/**
 * `run --agents … --ssh user@host1,user@host2`: starts one load agent per
 * host over ssh (the OpenSSH client, batch mode: keys or an agent, never a
 * password prompt), after checking that each host runs the same pushbench,
 * and stops them at the end. The token travels on ssh's stdin, never on a
 * command line a remote `ps` would show. A host that cannot be reached, runs
 * another version, or whose agent exits before the run starts fails the run
 * before it starts (exit 2), naming the host and what it said.
 */
import { execa, type ResultPromise } from 'execa';
import { PushbenchError } from '../../core/errors.js';

/** One ssh destination: `user@host` or `user@host:port`. */
export interface SshTarget {
  /** `user@host` (or `host`), as ssh takes it. */
  destination: string;
  port: number | undefined;
  /** The agent's name in the run: the host part, made safe. */
  name: string;
}

/** Settings of {@link launchOverSsh}. */
export interface SshLaunchOptions {
  /** The run's join URL and token. */
  url: string;
  token: string;
  /** The remote command that runs pushbench (a shell word list), default `pushbench`. */
  command: string;
  /** Extra `-o` options for ssh (e.g. `IdentityFile=…`). */
  options: string[];
  /** This pushbench's version: the remote one must say the same. */
  version: string;
  log?: (line: string) => void;
}

/** `user@host[:port]`; neither part may start with `-` (ssh would take it for an option). */
const DESTINATION =
  /^(?:([A-Za-z0-9._][A-Za-z0-9._-]{0,63})@)?([A-Za-z0-9.][A-Za-z0-9.-]{0,252})(?::(\d{1,5}))?$/;

/** `--ssh`'s list, checked; throws `PB_USAGE` naming a bad entry. */
export function parseSshTargets(list: string): SshTarget[] {
  const targets = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const m = DESTINATION.exec(entry);
      const port = m?.[3] === undefined ? undefined : Number(m[3]);
      if (!m || (port !== undefined && !(port >= 1 && port <= 65_535))) {
        throw new PushbenchError(
          'PB_USAGE',
          `--ssh entries are user@host or user@host:port, comma-separated; got "${entry}"`,
        );
      }
      return {
        destination: m[1] === undefined ? m[2]! : `${m[1]}@${m[2]}`,
        port,
        name: m[2]!.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64),
      };
    });
  if (targets.length === 0) throw new PushbenchError('PB_USAGE', '--ssh needs at least one host');
  const names = new Set<string>();
  for (const t of targets) {
    // Two agents on one host get the port in their name.
    if (names.has(t.name)) t.name = `${t.name}-${t.port ?? 22}`.slice(0, 64);
    if (names.has(t.name)) {
      throw new PushbenchError('PB_USAGE', `--ssh names ${t.destination} twice`);
    }
    names.add(t.name);
  }
  return targets;
}

/** A shell word, single-quoted for the remote shell. */
function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function sshArgs(t: SshTarget, options: string[]): string[] {
  return [
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    ...options.flatMap((o) => ['-o', o]),
    ...(t.port !== undefined ? ['-p', String(t.port)] : []),
    t.destination,
  ];
}

/** Agents started over ssh: wait for them to leave, or stop them. */
export interface SshAgents {
  /** Rejects, naming the host, when an agent's ssh ends with an error before `stop`. */
  failed: Promise<never>;
  /** Waits up to 10 s for each agent to leave on its own (the run ended it), then ends its ssh. */
  stop(): Promise<void>;
}

/**
 * Checks every host's pushbench version, then starts one agent per host.
 * Throws `PB_USAGE` naming the host that cannot be reached or runs another
 * version.
 */
export async function launchOverSsh(targets: SshTarget[], o: SshLaunchOptions): Promise<SshAgents> {
  await Promise.all(
    targets.map(async (t) => {
      const r = await execa('ssh', [...sshArgs(t, o.options), `${o.command} --version`], {
        reject: false,
        stdin: 'ignore',
        timeout: 30_000,
      });
      const said = `${r.stdout}`.trim();
      if (r.exitCode !== 0) {
        const why = `${r.stderr}`.trim().split('\n').pop() || `exit ${r.exitCode}`;
        throw new PushbenchError(
          'PB_USAGE',
          `--ssh ${t.destination}: \`${o.command} --version\` failed: ${why}`,
        );
      }
      if (said !== o.version) {
        throw new PushbenchError(
          'PB_USAGE',
          `--ssh ${t.destination} runs pushbench ${said.slice(0, 40)}, this coordinator ${o.version}: install the same version there`,
        );
      }
    }),
  );
  let stopping = false;
  const procs: Array<{ t: SshTarget; proc: ResultPromise }> = targets.map((t) => {
    // The token comes on stdin: `read` takes it, and no command line shows it.
    const remote = `read -r PUSHBENCH_AGENT_TOKEN && export PUSHBENCH_AGENT_TOKEN && ${o.command} agent --join ${quote(o.url)} --name ${quote(t.name)}`;
    const proc = execa('ssh', [...sshArgs(t, o.options), remote], {
      reject: false,
      input: `${o.token}\n`,
      all: true,
      buffer: { all: true },
    });
    o.log?.(`started an agent on ${t.destination} over ssh (${t.name})`);
    return { t, proc };
  });
  const failed = new Promise<never>((_, reject) => {
    for (const { t, proc } of procs) {
      void proc.then((r) => {
        if (stopping || r.exitCode === 0) return;
        const last = `${r.all ?? ''}`.trim().split('\n').pop() ?? '';
        reject(
          new PushbenchError(
            'PB_USAGE',
            `the agent on ${t.destination} (over ssh) exited with code ${r.exitCode}: ${last || 'no output'}`,
          ),
        );
      });
    }
  });
  failed.catch(() => {});
  return {
    failed,
    async stop() {
      stopping = true;
      await Promise.all(
        procs.map(async ({ proc }) => {
          const timer = setTimeout(() => proc.kill('SIGTERM'), 10_000);
          await proc;
          clearTimeout(timer);
        }),
      );
    },
  };
}
