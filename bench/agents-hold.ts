/**
 * The same hold run twice on this box: once with the fleet on the
 * coordinator's host (load agent processes beside it, as always), once with
 * the fleet on N load agents, each in a network namespace of its own (a host
 * on a kernel fabric, with one source address per ~2,048 devices so that
 * binding stays cheap), joined over the fabric. Prints the verdicts, held
 * counts from both ends and the merged percentiles side by side, and the
 * agents' clocks and join-channel traffic. Both runs share the same two
 * cores: this shows that spreading the fleet over hosts changes nothing in
 * the result, not that it is faster. Needs root.
 *
 *   node --import tsx bench/agents-hold.ts [devices=100000] [agents=4] [connectRate=2000]
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Report } from '../reports/report.js';
import { ip } from '../topology/kernel/commands.js';
import { KernelFabric } from '../topology/kernel/fabric.js';

const devices = Number(process.argv[2] ?? 100_000);
const agentCount = Number(process.argv[3] ?? 4);
const connectRate = Number(process.argv[4] ?? 2000);
const BIN = [join(process.cwd(), 'dist/bin/pushbench.js')];
const TOKEN = 'agents-hold-bench';

function runArgs(out: string): string[] {
  return [
    ...BIN,
    'run',
    'hold',
    '--devices',
    String(devices),
    '--connect-rate',
    String(connectRate),
    '--out',
    out,
  ];
}

function read(out: string): Report {
  return JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
}

function row(name: string, r: Report, wallS: number): string {
  const l = r.latency;
  const ms = (x: number) => `${x.toFixed(2)}`;
  return [
    name.padEnd(22),
    `${r.verdict.toUpperCase()} (${r.exitCode})`.padEnd(14),
    `${r.devices.heldAtEnd}/${r.devices.heldAtServer ?? '-'}`.padEnd(16),
    `${ms(l.connect.p50)} / ${ms(l.connect.p99)}`.padEnd(20),
    `${ms(l.push.p50)} / ${ms(l.push.p99)}`.padEnd(18),
    `${r.delivery.delivered}/${r.delivery.accepted}`.padEnd(12),
    `${wallS.toFixed(0)} s`,
  ].join(' ');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-agents-hold-'));
  console.log(
    `hold ${devices.toLocaleString('en-US')} devices at ${connectRate}/s: one host vs ${agentCount} agent hosts (network namespaces), same box`,
  );
  const t0 = performance.now();
  const local = await execa(process.execPath, runArgs(join(dir, 'local')), {
    reject: false,
    all: true,
  });
  const localS = (performance.now() - t0) / 1000;
  console.log(`local run exit ${local.exitCode}`);
  await new Promise((r) => setTimeout(r, 5000));

  const fabric = await KernelFabric.create();
  try {
    const hosts = [];
    // Bound sockets: about 2,048 per source address (bind slows as an address's ports
    // fill: loadgen/placement.ts DEVICES_PER_ADDRESS), so each host gets enough addresses.
    const perHost = Math.ceil(devices / agentCount / 2048);
    for (let k = 0; k < agentCount; k++) {
      const host = await fabric.addHost(`agent-${k + 1}`);
      const addresses = [host.address];
      for (let j = 1; j < perHost; j++) {
        const extra = host.address.replace(/^(\d+\.\d+)\.0\.(\d+)$/, `$1.${100 + j}.$2`);
        await ip(['-n', host.namespace, 'addr', 'add', `${extra}/16`, 'dev', 'eth0']);
        addresses.push(extra);
      }
      hosts.push({ host, addresses });
    }
    const port = 7400 + (process.pid % 500);
    const out = join(dir, 'agents');
    const t1 = performance.now();
    const run = execa(
      process.execPath,
      [
        ...runArgs(out),
        '--agents',
        String(agentCount),
        '--listen',
        `${fabric.rootAddress}:${port}`,
        '--agent-token',
        TOKEN,
      ],
      { reject: false, all: true },
    );
    await new Promise((r) => setTimeout(r, 1500));
    const agents: ResultPromise[] = hosts.map(({ host, addresses }, k) =>
      execa(
        'ip',
        [
          'netns',
          'exec',
          host.namespace,
          process.execPath,
          ...BIN,
          'agent',
          '--join',
          `ws://${fabric.rootAddress}:${port}`,
          '--token',
          TOKEN,
          '--name',
          `a${k + 1}`,
          '--source-addresses',
          addresses.join(','),
        ],
        { reject: false, all: true },
      ),
    );
    const distributed = await run;
    const agentsS = (performance.now() - t1) / 1000;
    await Promise.all(agents);
    console.log(`agents run exit ${distributed.exitCode}`);
    console.log('');
    console.log(
      `${'run'.padEnd(22)} ${'verdict'.padEnd(14)} ${'held fleet/node'.padEnd(16)} ${'connect p50/p99 ms'.padEnd(20)} ${'push p50/p99 ms'.padEnd(18)} ${'delivered'.padEnd(12)} wall`,
    );
    const a = read(join(dir, 'local'));
    const b = read(out);
    console.log(row('one host', a, localS));
    console.log(row(`${agentCount} agent hosts`, b, agentsS));
    for (const [name, r] of [
      ['one host', a],
      [`${agentCount} agent hosts`, b],
    ] as const) {
      const ci = r.latency.push.ci;
      if (ci) console.log(`  ${name}: push p99 95% CI ${JSON.stringify(ci.p99)}`);
      if (!r.generator.valid) console.log(`  ${name}: ${r.generator.reasons.slice(-2).join('; ')}`);
    }
    console.log('');
    for (const ag of b.generator.agents ?? []) {
      const ch = ag.channel;
      console.log(
        `  agent ${ag.name} ${ag.address}: ${ag.devices} devices, clock ${(ag.clock!.offsetUs / 1000).toFixed(3)} ms ± ${(ag.clock!.worstUncertaintyUs / 1000).toFixed(3)} ms, RSS ${((ag.resources?.rssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB, CPU ${ag.resources?.cpuSeconds ?? '-'} s, channel ${(ch.bytesIn / 1024 / ch.seconds).toFixed(1)} KiB/s in, ${(ch.bytesOut / 1024 / ch.seconds).toFixed(1)} KiB/s out over ${ch.seconds} s`,
      );
    }
    console.log(
      `  worst clock uncertainty: ± ${((b.generator.clockUncertaintyUs ?? 0) / 1000).toFixed(3)} ms`,
    );
  } finally {
    await fabric.destroy();
  }
}

await main();
