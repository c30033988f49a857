#!/usr/bin/env node
/**
 * The pushbench command line. It only parses arguments, calls the exported API
 * and sets `process.exitCode`; everything else lives in the library.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  checkModel,
  checkRun,
  colourFor,
  compareReports,
  ExitCode,
  formatCapacity,
  formatCapacityComparison,
  formatModelCheck,
  formatPlan,
  formatPreflight,
  isValidId,
  labelOf,
  listBuiltinScenarios,
  loadProfiles,
  loadScenario,
  machineLimits,
  PushbenchError,
  parseAssignment,
  parseD2dAllow,
  parseDurationMs,
  parseGates,
  parseMatrixAxis,
  parseReconnectSpec,
  planFleet,
  plannedRoutes,
  processLimits,
  progressListener,
  type RunOptions,
  readCapacityReport,
  readReport,
  renderComparisonText,
  renderSummary,
  rerender,
  resolveProfile,
  run,
  runMatrix,
  searchCapacity,
  serve,
  signToken,
  version,
  writeCapacityReport,
  writeComparison,
} from '../index.js';

function integer(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n)) {
      throw new InvalidArgumentError(`${name} must be a whole number, got "${value}"`);
    }
    return n;
  };
}

function number(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) {
      throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    }
    return n;
  };
}

function durationMs(name: string) {
  return (value: string): number => {
    try {
      return parseDurationMs(value, name);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

const program = new Command('pushbench')
  .description('Load-testing and chaos harness for WebSocket push systems')
  .version(version)
  .exitOverride()
  .configureOutput({
    outputError: (str, write) => write(`pushbench: ${str.replace(/^error: /, '')}`),
  });

program
  .command('run')
  .description('run a scenario (a built-in name or a .json/.js/.ts file) and gate on it')
  .argument('<scenario>', 'built-in name (see `pushbench list`) or path')
  .option('--devices <n>', 'devices to connect', integer('--devices'))
  .option('--rate <hz>', 'direct pushes per second', number('--rate'))
  .option('--duration <time>', 'how long to publish, e.g. 20s')
  .option('--workers <n>', 'device worker threads (default: one per core)', integer('--workers'))
  .option('--connect-rate <hz>', 'new connections per second', number('--connect-rate'))
  .option(
    '--gate <expr>',
    'gate, e.g. "p99(push) < 50ms" (repeatable; added to the scenario\'s)',
    collect,
  )
  .option('--seed <n>', 'seed for every random choice', integer('--seed'))
  .option(
    '--set <path=value>',
    'set any scenario field, e.g. devices.connectTimeout=5s (repeatable)',
    collect,
  )
  .option(
    '--matrix <field=a,b>',
    'run one variant per value (repeatable: every combination) and compare them',
    collect,
  )
  .option('--out <dir>', 'results folder (default results/<scenario>-<time>)')
  .option('--junit <file>', 'write a JUnit XML file, one testcase per gate')
  .option('--summary <file>', 'write a Markdown summary (for a CI job summary)')
  .option('--json', 'print report.json on stdout instead of the summary')
  .option(
    '--preflight',
    'only check what the run needs (files, ports, memory) against this machine and print where it would be placed',
  )
  .action(async (scenario: string, opts: Record<string, unknown>) => {
    const json = opts.json === true;
    if (opts.preflight === true) {
      const s = await loadScenario(scenario, {
        devices: opts.devices as number | undefined,
        workers: opts.workers as number | undefined,
        connectRate: opts.connectRate as number | undefined,
        set: Object.fromEntries(((opts.set as string[] | undefined) ?? []).map(parseAssignment)),
      });
      const checked = checkRun(s, plannedRoutes(s), machineLimits(processLimits()));
      process.stdout.write(`${formatPreflight(s, checked)}\n`);
      process.exitCode = checked.problems.length === 0 ? ExitCode.Pass : ExitCode.Usage;
      return;
    }
    const options: RunOptions = {
      devices: opts.devices as number | undefined,
      rate: opts.rate as number | undefined,
      duration: opts.duration as string | undefined,
      workers: opts.workers as number | undefined,
      connectRate: opts.connectRate as number | undefined,
      gates: opts.gate as string[] | undefined,
      seed: opts.seed as number | undefined,
      set: Object.fromEntries(((opts.set as string[] | undefined) ?? []).map(parseAssignment)),
      outDir: opts.out as string | undefined,
      junit: opts.junit as string | undefined,
      summary: opts.summary as string | undefined,
      listener: json ? {} : progressListener(process.stderr),
    };
    const axes = ((opts.matrix as string[] | undefined) ?? []).map(parseMatrixAxis);
    if (axes.length > 0) {
      if (options.junit) {
        throw new PushbenchError(
          'PB_USAGE',
          '--junit is per run; with --matrix use `pushbench report <variant dir> --junit FILE`',
        );
      }
      const name =
        typeof scenario === 'string'
          ? scenario.replace(/^.*[\\/]/, '').replace(/\.\w+$/, '')
          : 'run';
      const outDir =
        options.outDir ??
        `results/${name}-matrix-${new Date()
          .toISOString()
          .replace(/[-:]/g, '')
          .replace(/\.\d+Z$/, 'Z')}`;
      const result = await runMatrix(scenario, axes, { ...options, outDir });
      const files = await writeComparison(
        result.comparison,
        result.dir,
        options,
        result.variants.map((v) => v.report),
      );
      if (json) {
        process.stdout.write(`${JSON.stringify(result.comparison, null, 2)}\n`);
      } else {
        process.stdout.write(`${renderComparisonText(result.comparison)}\n`);
        process.stdout.write(`comparison: ${files.join(', ')}\n`);
      }
      process.exitCode = result.exitCode;
      return;
    }
    const result = await run(scenario, options);
    if (json) {
      process.stdout.write(`${JSON.stringify(result.report, null, 2)}\n`);
    } else {
      process.stdout.write(`${renderSummary(result.report, colourFor(process.stdout))}\n`);
      if (result.reportPath) process.stdout.write(`report: ${result.reportPath}\n`);
    }
    process.exitCode = result.report.exitCode;
  });

program
  .command('compare')
  .description(
    'put two or more reports side by side: deltas against the first, and the best per metric',
  )
  .argument('<reports...>', 'results folders or report.json files')
  .option('--out <dir>', 'also write comparison.json, comparison.md and comparison.html here')
  .option('--json', 'print the comparison as JSON')
  .action(async (paths: string[], opts: { out?: string; json?: boolean }) => {
    if (paths.length < 2)
      throw new PushbenchError('PB_USAGE', 'compare needs at least two reports');
    const loaded = [];
    for (const p of paths) loaded.push(await readReport(p));
    const labels = loaded.map((l) => labelOf(l.path));
    const unique = new Set(labels).size === labels.length ? labels : paths;
    const comparison = compareReports(
      loaded.map((l) => l.report),
      unique,
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(comparison, null, 2)}\n`);
    else process.stdout.write(`${renderComparisonText(comparison)}\n`);
    if (opts.out) {
      const files = await writeComparison(
        comparison,
        opts.out,
        {},
        loaded.map((l) => l.report),
      );
      if (!opts.json) process.stdout.write(`comparison: ${files.join(', ')}\n`);
    }
  });

program
  .command('capacity')
  .description(
    'find what one node of a profile holds within an SLO: connections, msgs/s, memory and CPU per load, herd absorption',
  )
  .addOption(
    new Option('--profile <name>', 'node profile (repeat to compare profiles side by side)')
      .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
      .makeOptionMandatory(),
  )
  .addOption(
    new Option('--slo <gate>', 'SLO every step must meet, e.g. "p99(push) < 50ms" (repeatable)')
      .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
      .makeOptionMandatory(),
  )
  .option(
    '--profiles <file>',
    'JSON file of profiles (name -> {cpu, memory, capacity, price, ...})',
  )
  .option('--start <n>', 'connections at the first step', integer('--start'), 1000)
  .option('--factor <x>', 'connections grow by this per step', number('--factor'), 2)
  .option(
    '--max-connections <n>',
    'never go past this many connections',
    integer('--max-connections'),
    16_000,
  )
  .option(
    '--rate-per-connection <hz>',
    'messages per second per connection at each step',
    number('--rate-per-connection'),
    0.5,
  )
  .option('--step-duration <time>', 'publishing time per step', durationMs('--step-duration'), 8000)
  .option(
    '--connect-rate <hz>',
    'connect rate while filling a step',
    number('--connect-rate'),
    2000,
  )
  .option('--refine <n>', 'bisection steps after the first failure', integer('--refine'), 2)
  .option('--no-herd', 'skip the connect (herd) absorption search')
  .option('--herd-slo <gate>', 'SLO of the herd steps', 'p99(connect) < 1s')
  .option(
    '--devices <n>',
    'with several profiles: nodes and cost for this many devices',
    integer('--devices'),
  )
  .option('--workers <n>', 'device worker threads', integer('--workers'))
  .option('--out <dir>', 'results folder (default results/capacity-<profile>-<time>)')
  .option('--json', 'print capacity.json on stdout instead of the summary')
  .action(async (opts: Record<string, unknown>) => {
    const profiles = await loadProfiles(opts.profiles as string | undefined);
    const names = opts.profile as string[];
    // Refuse every bad profile and SLO before the first step starts.
    const resolved = names.map((n) => resolveProfile(profiles, n));
    parseGates([...(opts.slo as string[]), opts.herdSlo as string]);
    const stamp = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z');
    const reports = [];
    for (const p of resolved) {
      const out = (opts.out as string | undefined)
        ? names.length > 1
          ? `${opts.out as string}/${p.name}`
          : (opts.out as string)
        : `results/capacity-${p.name}-${stamp}`;
      const report = await searchCapacity({
        profile: { name: p.name, input: p.input },
        slo: opts.slo as string[],
        start: opts.start as number,
        factor: opts.factor as number,
        maxConnections: opts.maxConnections as number,
        ratePerConnection: opts.ratePerConnection as number,
        stepDurationMs: opts.stepDuration as number,
        connectRate: opts.connectRate as number,
        refine: opts.refine as number,
        herd: opts.herd as boolean,
        herdSlo: opts.herdSlo as string,
        ...(opts.workers !== undefined && { workers: opts.workers as number }),
        outDir: out,
        notice: opts.json ? () => {} : (line) => process.stderr.write(`${line}\n`),
      });
      const files = writeCapacityReport(report, out);
      reports.push(report);
      if (!opts.json) {
        process.stdout.write(`${formatCapacity(report)}\nwrote: ${files.join(', ')}\n\n`);
      }
    }
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2)}\n`,
      );
    } else if (reports.length > 1) {
      process.stdout.write(
        `${formatCapacityComparison(reports, opts.devices as number | undefined)}\n`,
      );
    }
    process.exitCode = reports.every((r) => r.knee !== null) ? ExitCode.Pass : ExitCode.GateFailed;
  });

program
  .command('plan')
  .description(
    'nodes a fleet needs, from a capacity report, and a simulation of the herd when one node or a zone dies',
  )
  .requiredOption('--devices <n>', 'devices the fleet must hold', integer('--devices'))
  .requiredOption('--from <capacity.json>', 'capacity report of the node profile')
  .option(
    '--headroom <x>',
    'plan so the average node holds capacity / headroom',
    number('--headroom'),
    2,
  )
  .addOption(
    new Option('--balancer <algorithm>', 'balancer in front of the nodes')
      .choices(['round-robin', 'least-connections', 'random', 'power-of-two'])
      .default('least-connections'),
  )
  .option('--reconnect <policy:base:cap>', 'device reconnect policy', 'full-jitter:1s:60s')
  .option('--zone <k>', 'also simulate a zone of k nodes dying', integer('--zone'))
  .option(
    '--detect <time>',
    'until health checks take a dead node out',
    durationMs('--detect'),
    2000,
  )
  .option(
    '--absorption <hz>',
    "override the report's herd absorption (connects/s per node)",
    number('--absorption'),
  )
  .option('--json', 'print the plan as JSON')
  .action((opts: Record<string, unknown>) => {
    const report = readCapacityReport(opts.from as string);
    const absorption = (opts.absorption as number | undefined) ?? report.herd.absorptionPerSec;
    if (absorption === null || absorption === undefined) {
      throw new PushbenchError(
        'PB_USAGE',
        `${opts.from as string} has no herd absorption rate (run capacity without --no-herd, or give --absorption)`,
      );
    }
    const plan = planFleet({
      devices: opts.devices as number,
      capacity: {
        connectionsPerNode: report.knee!.connections,
        absorptionPerSec: absorption,
        price: report.price,
        profile: report.profile,
      },
      headroom: opts.headroom as number,
      balancer: opts.balancer as 'least-connections',
      reconnect: parseReconnectSpec(opts.reconnect as string),
      ...(opts.zone !== undefined && { zoneNodes: opts.zone as number }),
      detectMs: opts.detect as number,
    });
    if (opts.json) {
      // Per-second herd timelines can be long; they stay in the JSON for plotting.
      process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
    } else {
      process.stdout.write(`${formatPlan(plan)}\n`);
    }
    process.exitCode =
      plan.nodeLoss.cascade || plan.zoneLoss?.cascade ? ExitCode.GateFailed : ExitCode.Pass;
  });

program
  .command('model-check')
  .description(
    'run a node kill live and simulate the same herd; print both and their difference (peak reconnects, time to 99 %)',
  )
  .option('--nodes <n>', 'nodes', integer('--nodes'), 4)
  .option('--devices <n>', 'devices', integer('--devices'), 4000)
  .option('--reconnect <policy:base:cap>', 'device reconnect policy', 'full-jitter:500ms:5s')
  .addOption(
    new Option('--balancer <algorithm>', 'balancer algorithm')
      .choices(['round-robin', 'least-connections', 'random', 'power-of-two'])
      .default('least-connections'),
  )
  .option('--from <capacity.json>', "take the node's herd absorption rate from a capacity report")
  .option('--workers <n>', 'device worker threads', integer('--workers'))
  .option('--out <dir>', 'write the live run and model-check.json here')
  .option('--json', 'print model-check.json on stdout')
  .action(async (opts: Record<string, unknown>) => {
    const absorption = opts.from
      ? (readCapacityReport(opts.from as string).herd.absorptionPerSec ?? undefined)
      : undefined;
    const check = await checkModel({
      nodes: opts.nodes as number,
      devices: opts.devices as number,
      reconnect: opts.reconnect as string,
      balancer: opts.balancer as 'least-connections',
      ...(absorption !== undefined && { absorptionPerSec: absorption }),
      ...(opts.workers !== undefined && { workers: opts.workers as number }),
      ...(opts.out !== undefined && { outDir: `${opts.out as string}/live` }),
      notice: opts.json ? () => {} : (line) => process.stderr.write(`${line}\n`),
    });
    if (opts.out) {
      mkdirSync(opts.out as string, { recursive: true });
      writeFileSync(
        `${opts.out as string}/model-check.json`,
        `${JSON.stringify(check, null, 2)}\n`,
      );
    }
    process.stdout.write(
      opts.json ? `${JSON.stringify(check, null, 2)}\n` : `${formatModelCheck(check)}\n`,
    );
    process.exitCode =
      check.worstDifference !== null && check.worstDifference <= 0.15
        ? ExitCode.Pass
        : ExitCode.GateFailed;
  });

program
  .command('report')
  .description(
    'rebuild report.html, summary.txt, .hgrm and CI files from a results folder without rerunning',
  )
  .argument('<dir>', 'results folder (or its report.json)')
  .option('--junit <file>', 'write a JUnit XML file')
  .option('--summary <file>', 'write a Markdown summary')
  .option('--json', 'print report.json on stdout instead of the summary')
  .action(async (dir: string, opts: { junit?: string; summary?: string; json?: boolean }) => {
    const { report, files } = await rerender(dir, opts);
    if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(`${renderSummary(report, colourFor(process.stdout))}\n`);
      process.stdout.write(`wrote: ${files.join(', ')}\n`);
    }
    // The verdict is the recorded run's, so CI can gate on a re-rendered folder too.
    process.exitCode = report.exitCode;
  });

program
  .command('serve')
  .description('run one reference push node')
  .option('--host <host>', 'interface to bind', '127.0.0.1')
  .option('--port <port>', 'port (0 picks a free one)', integer('--port'), 8080)
  .addOption(
    new Option('--secret <secret>', 'HMAC secret for device tokens').env('PUSHBENCH_SECRET'),
  )
  .addOption(new Option('--api-key <key>', 'bearer key for the HTTP API').env('PUSHBENCH_API_KEY'))
  .option('--node-id <id>', 'name of this node', 'node-1')
  .option('--heartbeat-interval <time>', 'ping period', durationMs('--heartbeat-interval'), 10_000)
  .option(
    '--heartbeat-timeout <time>',
    'close after this much silence',
    durationMs('--heartbeat-timeout'),
    30_000,
  )
  .option('--max-body <bytes>', 'largest push body', integer('--max-body'), 64 * 1024)
  .option(
    '--processes <n>',
    "worker processes sharing the port (a node past one process's open-file limit)",
    integer('--processes'),
    1,
  )
  .option(
    '--join <url>',
    'join a local cluster: http://host:port of a node started without --redis',
  )
  .option('--redis-prefix <prefix>', 'prefix of every Redis key and channel (default pushbench:)')
  .addOption(
    new Option('--redis <url>', 'share registry, rooms and queue through Redis (a cluster)').env(
      'PUSHBENCH_REDIS',
    ),
  )
  .option(
    '--max-connections <n>',
    'capacity: connections this node holds (see --overload)',
    integer('--max-connections'),
  )
  .option(
    '--seed <n>',
    "seed of the node's own random choices (jitter), for replayable runs",
    integer('--seed'),
  )
  .addOption(
    new Option('--overload <mode>', 'at capacity: refuse upgrades (503), turn unhealthy, or crash')
      .choices(['refuse', 'unhealthy', 'crash'])
      .default('refuse'),
  )
  .option(
    '--admission-rate <hz>',
    'admit at most this many upgrades per second (429 past it)',
    number('--admission-rate'),
  )
  .option(
    '--max-lifetime <time>',
    'goaway after this connection age (minus jitter)',
    durationMs('--max-lifetime'),
    30 * 60_000,
  )
  .option(
    '--lifetime-jitter <time>',
    'random shortening of each lifetime',
    durationMs('--lifetime-jitter'),
    3 * 60_000,
  )
  .option(
    '--goaway-grace <time>',
    'forced close this long after a goaway',
    durationMs('--goaway-grace'),
    10_000,
  )
  .option(
    '--drain-window <time>',
    'spread a drain (SIGTERM, POST /v1/admin/drain) over this',
    durationMs('--drain-window'),
    30_000,
  )
  .addOption(
    new Option('--slow-consumer <policy>', 'past the send buffer bound')
      .choices(['drop', 'disconnect'])
      .default('drop'),
  )
  .option(
    '--push-rate <hz>',
    'direct pushes per second one device may receive (429 past it)',
    number('--push-rate'),
    100,
  )
  .option(
    '--d2d-rate <hz>',
    'device-to-device messages per second one device may send',
    number('--d2d-rate'),
    10,
  )
  .option('--d2d-allow <a=b,c>', 'let account a message accounts b and c (repeatable)', collect)
  .option('--max-rooms <n>', 'rooms one connection may join', integer('--max-rooms'), 100)
  .option('--room-history <n>', 'messages kept per room', integer('--room-history'), 100)
  .action(async (opts: Record<string, unknown>) => {
    if (typeof opts.secret !== 'string' || opts.secret === '') {
      throw new PushbenchError('PB_USAGE', 'serve needs --secret (or PUSHBENCH_SECRET)');
    }
    if (typeof opts.apiKey !== 'string' || opts.apiKey === '') {
      throw new PushbenchError('PB_USAGE', 'serve needs --api-key (or PUSHBENCH_API_KEY)');
    }
    const port = opts.port as number;
    if (port < 0 || port > 65535) {
      throw new PushbenchError('PB_USAGE', `--port must be 0-65535, got ${port}`);
    }
    for (const flag of ['pushRate', 'd2dRate', 'admissionRate'] as const) {
      const v = opts[flag] as number | undefined;
      if (v !== undefined && v <= 0)
        throw new PushbenchError(
          'PB_USAGE',
          `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be > 0, got ${v}`,
        );
    }
    const d2dAllow = (opts.d2dAllow as string[] | undefined) ?? [];
    try {
      parseD2dAllow(d2dAllow);
    } catch (err) {
      throw new PushbenchError('PB_USAGE', (err as Error).message);
    }
    const processes = opts.processes as number;
    if (processes < 1 || processes > 256) {
      throw new PushbenchError('PB_USAGE', `--processes must be 1-256, got ${processes}`);
    }
    process.exitCode = await serve(
      {
        processes,
        node: {
          host: opts.host as string,
          port,
          secret: opts.secret,
          apiKey: opts.apiKey,
          nodeId: opts.nodeId as string,
          heartbeatIntervalMs: opts.heartbeatInterval as number,
          heartbeatTimeoutMs: opts.heartbeatTimeout as number,
          maxBodyBytes: opts.maxBody as number,
          redisUrl: opts.redis as string | undefined,
          join: opts.join as string | undefined,
          redisPrefix: opts.redisPrefix as string | undefined,
          ...(opts.maxConnections !== undefined && {
            maxConnections: opts.maxConnections as number,
          }),
          overload: opts.overload as 'refuse' | 'unhealthy' | 'crash',
          seed: (opts.seed as number | undefined) ?? null,
          ...(opts.admissionRate !== undefined && {
            admissionRatePerSec: opts.admissionRate as number,
          }),
          maxLifetimeMs: opts.maxLifetime as number,
          lifetimeJitterMs: opts.lifetimeJitter as number,
          goawayGraceMs: opts.goawayGrace as number,
          drainWindowMs: opts.drainWindow as number,
          slowConsumer: opts.slowConsumer as 'drop' | 'disconnect',
          pushRatePerSec: opts.pushRate as number,
          d2dRatePerSec: opts.d2dRate as number,
          d2dAllow,
          maxRoomsPerConnection: opts.maxRooms as number,
          roomHistoryLength: opts.roomHistory as number,
        },
      },
      (line) => process.stdout.write(`${line}\n`),
    );
  });

program
  .command('token')
  .description('make a signed device token')
  .addOption(
    new Option('--secret <secret>', "HMAC secret (same as the node's)")
      .env('PUSHBENCH_SECRET')
      .makeOptionMandatory(),
  )
  .requiredOption('--device <id>', 'device id')
  .requiredOption('--account <id>', 'account id')
  .option('--ttl <time>', 'validity', durationMs('--ttl'), 3_600_000)
  .action((opts: { secret: string; device: string; account: string; ttl: number }) => {
    for (const [flag, id] of [
      ['--device', opts.device],
      ['--account', opts.account],
    ] as const) {
      if (!isValidId(id)) {
        throw new PushbenchError(
          'PB_USAGE',
          `${flag} "${id}" is not a valid id: use 1-128 of A-Z a-z 0-9 . _ : @ -`,
        );
      }
    }
    if (opts.ttl <= 0) throw new PushbenchError('PB_USAGE', '--ttl must be positive');
    process.stdout.write(
      `${signToken({ deviceId: opts.device, accountId: opts.account, expiresAtSec: Math.floor(Date.now() / 1000 + opts.ttl / 1000) }, opts.secret)}\n`,
    );
  });

program
  .command('list')
  .description('list the built-in scenarios')
  .action(() => {
    for (const s of listBuiltinScenarios())
      process.stdout.write(`${s.name.padEnd(16)}${s.description}\n`);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and --version "exit" with code 0; every other commander error is usage.
    process.exitCode = err.exitCode === 0 ? ExitCode.Pass : ExitCode.Usage;
  } else if (err instanceof PushbenchError) {
    process.stderr.write(`pushbench: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    const e = err as Error;
    process.stderr.write(`pushbench: internal error: ${e.message}\n`);
    if (process.env.PUSHBENCH_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exitCode = ExitCode.Internal;
  }
}
