/**
 * Load agents on other hosts, with real separate network stacks: each agent
 * runs in a network namespace of its own (a host on a kernel fabric, the
 * primitive of the kernel network engine) and joins the coordinator across a
 * veth; the devices cross the same link to the node, which listens on the
 * coordinator's address on that fabric. One agent runs in a time namespace of
 * its own as well, its monotonic clock seconds ahead. Needs root (CI here is
 * root and runs them); elsewhere they skip, saying why.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLatencyHistogram,
  decodeHistogram,
  summarize,
} from '../../core/measure/histogram.js';
import type { Report } from '../../reports/report.js';
import { ip } from '../../topology/kernel/commands.js';
import { KernelFabric, type KernelHost } from '../../topology/kernel/fabric.js';
import { ensureCommand } from '../setup/debian.js';

const isRoot = process.getuid?.() === 0;
const BIN = ['--import', 'tsx', 'bin/pushbench.ts'];
const TOKEN = 'e2e-agents-token';

/** What a finished command printed, both streams. */
function text(r: { all?: unknown }): string {
  return String(r.all ?? '');
}

/** A free TCP port on `host`. */
async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(!isRoot)('load agents on other hosts (root: namespaces as hosts)', () => {
  let fabric: KernelFabric;
  const hosts: KernelHost[] = [];

  beforeAll(async () => {
    fabric = await KernelFabric.create();
    for (const name of ['agent-1', 'agent-2', 'agent-3']) hosts.push(await fabric.addHost(name));
  });
  afterAll(async () => {
    await fabric?.destroy();
  });

  /** `pushbench agent` on `host`, optionally with its monotonic clock `skewS` seconds ahead. */
  function agent(host: KernelHost, url: string, name: string, skewS = 0): ResultPromise {
    const node = [
      process.execPath,
      ...BIN,
      'agent',
      '--join',
      url,
      '--token',
      TOKEN,
      '--name',
      name,
    ];
    const command = skewS === 0 ? node : ['unshare', '-T', '--monotonic', String(skewS), ...node];
    return execa('ip', ['netns', 'exec', host.namespace, ...command], {
      reject: false,
      all: true,
      env: { NO_COLOR: '1' },
    });
  }

  /**
   * Once `run` says it publishes (and a second more), kills every process on
   * `host` at once with SIGKILL: the agent's whole process tree dies mid-run.
   */
  async function killWhenPublishing(run: ResultPromise, host: KernelHost): Promise<void> {
    let progress = '';
    run.all?.on('data', (chunk: Buffer) => {
      progress += chunk.toString('utf8');
    });
    for (let i = 0; i < 400 && !progress.includes('phase publishing'); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const { stdout } = await execa('ip', ['netns', 'pids', host.namespace]);
    for (const pid of stdout.split('\n').filter(Boolean)) {
      await execa('kill', ['-9', pid], { reject: false });
    }
  }

  /**
   * `pushbench run FILE --agents N`, listening on a free port of the fabric,
   * its scenario and results in a fresh folder: the run, the join URL, the
   * folder and the results folder.
   */
  async function coordinator(
    scenario: { name: string } & Record<string, unknown>,
    agents: number,
    extra: string[] = [],
  ): Promise<{ run: ResultPromise; url: string; dir: string; out: string }> {
    const dir = mkdtempSync(join(tmpdir(), `pb-${scenario.name}-`));
    const out = join(dir, 'out');
    const port = await freePort(fabric.rootAddress);
    const file = join(dir, 'scenario.json');
    writeFileSync(file, JSON.stringify(scenario));
    const run = execa(
      process.execPath,
      [
        ...BIN,
        'run',
        file,
        '--agents',
        String(agents),
        '--listen',
        `${fabric.rootAddress}:${port}`,
        '--agent-token',
        TOKEN,
        '--agents-timeout',
        '60s',
        '--out',
        out,
        ...extra,
      ],
      { reject: false, all: true, env: { NO_COLOR: '1' } },
    );
    return { run, url: `ws://${fabric.rootAddress}:${port}`, dir, out };
  }

  it("30,000 devices over 3 agent hosts, one clock 5 s ahead: one merged result on the coordinator's clock, gates on it", async () => {
    const { run, url, dir, out } = await coordinator(
      {
        name: 'agents-30k',
        topology: { nodes: 1, heartbeatInterval: '30s' },
        // 1,000/s: what is tested is the agents, not the node. At 3,000/s the one
        // multi-process node could not keep up on this 2-core box on a slow day (72-93 %
        // held at the end); at 1,500/s the agents took 0.75-1.2 cores of the two, the
        // node's workers (nice +10) got 0.6 and connects queued for seconds (p50
        // 2.4-3.6 s, some timing out at 10 s). The devices CI once lost here (FAIL, exit
        // 3) were the node's own doing: the 30 s interval with the old fixed 30 s
        // timeout closed ~850 healthy connections at their first check; the timeout is
        // now 3 intervals (core/ws/heartbeat.ts).
        devices: { count: 30_000, connectRate: 1000 },
        traffic: { direct: { rate: 600 } },
        duration: '6s',
        gates: ['delivery >= 99.9%', 'p99(push) < 1s', 'connections.held >= 100%'],
      },
      3,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const agents = [
      agent(hosts[0]!, url, 'a1'),
      agent(hosts[1]!, url, 'a2', 5),
      agent(hosts[2]!, url, 'a3'),
    ];
    const result = await run;
    const exits = await Promise.all(agents);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
    const context = `${text(result)}\n${exits.map(text).join('\n')}`;
    // The run's verdict: pass, or invalid where two cores could not carry it (said why).
    expect([0, 5], context).toContain(result.exitCode);
    console.log(context);
    expect(
      report.gates.map((g) => g.verdict),
      context,
    ).toEqual(['pass', 'pass', 'pass']);
    for (const e of exits) expect(e.exitCode, text(e)).toBe(0);

    // Both ends agree on every device, held by three hosts.
    expect(report.devices.requested).toBe(30_000);
    expect(report.devices.heldAtEnd).toBe(30_000);
    expect(report.devices.heldAtServer).toBe(30_000);
    const records = report.generator.agents ?? [];
    expect(records.map((a) => a.name).sort()).toEqual(['a1', 'a2', 'a3']);
    expect(records.reduce((n, a) => n + a.devices, 0)).toBe(30_000);
    expect(new Set(records.map((a) => a.address))).toEqual(new Set(hosts.map((h) => h.address)));
    for (const a of records) {
      expect(a.lost).toBeNull();
      expect(a.refused).toBe(0);
      expect(a.resources?.processes).toBeGreaterThan(0);
      // Its shards' self-check, summed up per agent.
      expect(a.health?.shards).toBeGreaterThan(0);
      expect(a.health?.lagP99Ms).toBeGreaterThanOrEqual(0);
    }

    // The skewed agent's offset is the skew, within its stated uncertainty (plus
    // the moment between the two namespaces' clock reads, well under a ms).
    const skewed = records.find((a) => a.name === 'a2')!;
    expect(Math.abs(skewed.clock!.offsetUs + 5e6)).toBeLessThan(
      skewed.clock!.worstUncertaintyUs + 1000,
    );
    const straight = records.find((a) => a.name === 'a1')!;
    expect(Math.abs(straight.clock!.offsetUs)).toBeLessThan(
      straight.clock!.worstUncertaintyUs + 1000,
    );
    expect(report.generator.clockUncertaintyUs).toBeGreaterThan(0);
    // The merged histograms are the sum of the agents' own: counts and percentiles.
    for (const series of ['push', 'connect']) {
      const sum = createLatencyHistogram();
      for (const a of records) sum.add(decodeHistogram(a.histograms![series]!));
      const merged = decodeHistogram(report.histograms[series]!);
      expect(sum.totalCount).toBe(merged.totalCount);
      expect(summarize(sum).p99).toBe(report.latency[series]!.p99);
      expect(summarize(sum).max).toBe(report.latency[series]!.max);
    }
    // Latency from the scheduled send, on one time base: seconds of skew left nowhere.
    // A skew not taken out would move every sample of a2 by 5 s against the others
    // (up, or down to nothing), so its median must sit with theirs. Absolute bounds do
    // not tell skew from a saturated box: on the AMD box one agent's connect p50 was
    // 1.26 s and a connect took 8.7 s (SYNs retransmitted), with the skew correct.
    const medianOf = (name: string, series: string) =>
      summarize(decodeHistogram(records.find((a) => a.name === name)!.histograms![series]!)).p50;
    for (const series of ['push', 'connect']) {
      for (const other of ['a1', 'a3']) {
        const gap = Math.abs(medianOf('a2', series)! - medianOf(other, series)!);
        expect(gap, `${series} p50 of a2 against ${other}`).toBeLessThan(2500);
      }
    }
    expect(report.delivery.lost).toBe(0);
    // The summary lists the agents and says how far off latency can be.
    expect(result.all).toMatch(
      /latency measured on agents is on the coordinator's clock, within ± /,
    );
    rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('an agent killed mid-run ends the run with exit 6, naming it, and leaves nothing running', async () => {
    const { run, url, dir } = await coordinator(
      {
        name: 'agents-kill',
        topology: { nodes: 1 },
        devices: { count: 2000, connectRate: 1000 },
        traffic: { direct: { rate: 100 } },
        duration: '10s',
      },
      2,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const keeper = agent(hosts[0]!, url, 'keeper');
    const victim = agent(hosts[1]!, url, 'victim');
    await killWhenPublishing(run, hosts[1]!);
    const result = await run;
    rmSync(dir, { recursive: true, force: true });
    expect(result.exitCode, text(result)).toBe(6);
    expect(text(result)).toMatch(
      /load agent victim \(10\.\d+\.\d+\.\d+, 1000 devices\) was lost: its connection closed/,
    );
    expect((await keeper).exitCode).toBe(0);
    expect((await victim).exitCode).not.toBe(0);
    // The run's node went with it.
    const { stdout } = await execa('pgrep', ['-f', `pushbench.*serve.*${fabric.rootAddress}`], {
      reject: false,
    });
    expect(stdout).toBe('');
    expect(await ip(['netns', 'pids', hosts[0]!.namespace])).toBe('');
  }, 120_000);

  it('--agents-tolerate: a lost agent within the share lets the run finish, saying so; its devices held by nobody', async () => {
    const { run, url, dir, out } = await coordinator(
      {
        name: 'agents-tolerate',
        topology: { nodes: 1 },
        // 450/s, not 1,500/s: nine processes start at once on two cores here, and at
        // 1,500/s the device threads began their first attempts 52-75 ms late at p99
        // (INVALID, exit 5, in CI). The test is about the lost agent, not the ramp.
        devices: { count: 900, connectRate: 450 },
        traffic: { direct: { rate: 100 } },
        duration: '6s',
        gates: ['connections.heldAtServer >= 60%'],
      },
      3,
      ['--agents-tolerate', '40%'],
    );
    await new Promise((r) => setTimeout(r, 1500));
    const agents = [
      agent(hosts[0]!, url, 't1'),
      agent(hosts[1]!, url, 'gone'),
      agent(hosts[2]!, url, 't3'),
    ];
    await killWhenPublishing(run, hosts[1]!);
    const result = await run;
    await Promise.all(agents);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
    rmSync(dir, { recursive: true, force: true });
    // The run finished and its own gates decided: pass (2 of 3 agents' devices held), or
    // invalid where nine processes starting at once on two cores could not keep their
    // schedule (said why); never exit 6, the lost agent's.
    expect([0, 5], text(result)).toContain(result.exitCode);
    expect(
      report.gates.map((g) => g.verdict),
      text(result),
    ).toEqual(['pass']);
    const gone = report.generator.agents?.find((a) => a.name === 'gone');
    expect(gone?.lost).toMatch(/its connection closed .*\(tolerated: --agents-tolerate\)/);
    expect(report.generator.warnings?.join('\n')).toMatch(/load agent gone .* was lost mid-run/);
    expect(report.devices.requested).toBe(900);
    expect(report.devices.heldAtEnd).toBe(900 - gone!.devices);
    expect(report.devices.heldAtServer).toBe(900 - gone!.devices);
    expect(report.devices.lossesByCause.agent_lost).toBe(gone!.devices);
  }, 120_000);

  it('--ssh starts an agent on a host through its sshd (checking its version first) and stops it at the end', async () => {
    await ensureCommand('sshd', 'openssh-server');
    const host = hosts[2]!;
    const dir = mkdtempSync(join(tmpdir(), 'pb-agents-ssh-'));
    for (const key of ['host_key', 'client_key']) {
      await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, key)]);
    }
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        'Port 2222',
        `ListenAddress ${host.address}`,
        `HostKey ${join(dir, 'host_key')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        `PidFile ${join(dir, 'sshd.pid')}`,
        '',
      ].join('\n'),
    );
    // sshd's privilege separation directory (Debian's service would make it).
    await execa('mkdir', ['-p', '/run/sshd']);
    const sshd = execa(
      'ip',
      [
        'netns',
        'exec',
        host.namespace,
        '/usr/sbin/sshd',
        '-D',
        '-e',
        '-f',
        join(dir, 'sshd_config'),
      ],
      { reject: false, all: true },
    );
    try {
      for (let i = 0; i < 100; i++) {
        const up = await new Promise<boolean>((resolve) => {
          const s = connect(2222, host.address, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
        if (up) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const ssh = [
        '--ssh',
        `root@${host.address}:2222`,
        '--ssh-option',
        `IdentityFile=${join(dir, 'client_key')}`,
        '--ssh-option',
        `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
        '--ssh-option',
        'StrictHostKeyChecking=no',
      ];
      const scenario = {
        name: 'agents-ssh',
        topology: { nodes: 1 },
        devices: { count: 200, connectRate: 400 },
        traffic: { direct: { rate: 50 } },
        duration: '3s',
        gates: ['connections.held >= 100%'],
      };
      const file = join(dir, 'scenario.json');
      writeFileSync(file, JSON.stringify(scenario));
      const listen = ['--listen', `${fabric.rootAddress}:${await freePort(fabric.rootAddress)}`];
      /** The run with its agent started through sshd by `sshCommand`. */
      const runOverSsh = (sshCommand: string, ...more: string[]) =>
        execa(
          process.execPath,
          [
            ...BIN,
            'run',
            file,
            ...listen,
            ...ssh,
            '--ssh-command',
            sshCommand,
            '--agent-token',
            TOKEN,
            ...more,
          ],
          { reject: false, all: true, env: { NO_COLOR: '1' } },
        );

      // Another version on the host: refused before anything starts, naming the host.
      const other = await runOverSsh('echo 9.9.9 #');
      expect(other.exitCode, text(other)).toBe(2);
      expect(text(other)).toMatch(
        new RegExp(
          `--ssh root@${host.address.replaceAll('.', '\\.')} runs pushbench 9\\.9\\.9, this coordinator`,
        ),
      );

      const r = await runOverSsh(
        `cd ${process.cwd()} && ${process.execPath} --import tsx bin/pushbench.ts`,
        '--out',
        join(dir, 'out'),
      );
      expect([0, 5], text(r)).toContain(r.exitCode);
      const report = JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8')) as Report;
      expect(report.gates.map((g) => g.verdict)).toEqual(['pass']);
      const [record] = report.generator.agents ?? [];
      expect(record?.name).toBe(host.address);
      expect(record?.address).toBe(host.address);
      expect(record?.devices).toBe(200);
      expect(report.devices.heldAtServer).toBe(200);
      // The agent left with the run: only sshd is left on the host.
      const left = (await ip(['netns', 'pids', host.namespace])).split('\n').filter(Boolean);
      expect(left).toEqual([String(sshd.pid)]);
    } finally {
      sshd.kill('SIGTERM');
      await sshd;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
