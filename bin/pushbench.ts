#!/usr/bin/env node
/**
 * The pushbench command line. It only parses arguments, calls the exported API
 * and sets `process.exitCode`; everything else lives in the library. The flags
 * of each command, typed, are in ./options.ts; each command below turns them
 * into one API call, prints the outcome and returns the exit code.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, type Option } from 'commander';
import { PushbenchError } from '../core/errors.js';
import { ExitCode } from '../core/exit-codes.js';
import { version } from '../core/version.js';
import {
  type AgentFlags,
  agentFlags,
  type CapacityFlags,
  type CompareFlags,
  capacityFlags,
  capacitySearch,
  compareFlags,
  type FlagTable,
  type K8sAgentsFlags,
  k8sAgentsFlags,
  type ModelCheckFlags,
  modelCheckFlags,
  modelCheckOptions,
  type PlanFlags,
  parseAgentFlags,
  parseK8sAgentsFlags,
  parseRunFlags,
  parseServeFlags,
  planFlags,
  planInput,
  type ReportFlags,
  type RunFlags,
  reportFlags,
  runFlags,
  type ServeFlags,
  serveFlags,
  type TokenFlags,
  tokenClaims,
  tokenFlags,
} from './options.js';

const program = new Command('pushbench')
  .description('Load-testing and chaos harness for WebSocket push systems')
  .version(version)
  .exitOverride()
  .configureOutput({
    outputError: (str, write) => write(`pushbench: ${str.replace(/^error: /, '')}`),
  });

/** A subcommand of `program` (so it shares its error output) with the flags of `table`. */
function command<Flags>(name: string, description: string, table: FlagTable<Flags>): Command {
  const cmd = program.command(name).description(description);
  for (const option of Object.values<Option>(table)) {
    cmd.addOption(option);
  }
  return cmd;
}

/** `cmd.opts()` as the flags its table declares. */
function flagsOf<Flags>(cmd: Command): Flags {
  return cmd.opts<Flags & Record<string, unknown>>();
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** Where progress lines go: stderr, or nowhere when the command prints JSON. */
function noticeUnless(quiet: boolean | undefined): (line: string) => void {
  return quiet ? () => {} : (line) => process.stderr.write(`${line}\n`);
}

/**
 * The harness's API, loaded by the commands that use it. `serve` and `token`
 * never load it: a node started by a run boots with the server alone.
 */
const harness = () => import('../index.js');

/**
 * For commands that start nodes, networks and hosts: SIGINT (Ctrl-C) or
 * SIGTERM ends the process through its exit handlers, which remove the run's
 * namespaces, links, nft tables and processes (the kernel fabric's, execa's),
 * with one line and exit 130 or 143. Without this, Node dies at the signal and
 * they stay until the next run on the kernel engine sweeps them.
 */
function stopOnSignals(): void {
  const stop = (signal: 'SIGINT' | 'SIGTERM', code: number) => () => {
    process.stderr.write(
      `pushbench: ${signal}: stopping; removing this run's hosts, links, rules and processes; no result\n`,
    );
    process.exit(code);
  };
  process.once('SIGINT', stop('SIGINT', ExitCode.Interrupted));
  process.once('SIGTERM', stop('SIGTERM', ExitCode.Terminated));
}

async function runCommand(scenario: string, flags: RunFlags): Promise<number> {
  const request = parseRunFlags(scenario, flags);
  const {
    checkRun,
    chooseNetworkEngine,
    colourFor,
    formatPreflight,
    loadScenario,
    machineLimits,
    onEngine,
    plannedRoutes,
    processLimits,
    progressListener,
    renderComparisonText,
    renderSummary,
    run,
    runMatrix,
    runRepeated,
    writeComparison,
  } = await harness();
  if (request.kind === 'preflight') {
    const loaded = await loadScenario(scenario, request.overrides);
    const engine = chooseNetworkEngine(loaded).engine;
    // As the run numbers it (on the kernel engine, region by region for the client hosts).
    const s = onEngine(loaded, engine);
    const checked = checkRun(s, plannedRoutes(s), machineLimits(processLimits()), engine);
    print(formatPreflight(s, checked));
    return checked.problems.length === 0 ? ExitCode.Pass : ExitCode.Usage;
  }
  const listener = request.json ? {} : progressListener(process.stderr);
  if (request.kind === 'repeat') {
    const options = { ...request.options, listener };
    const result = await runRepeated(scenario, request.axes, request.repeat, options);
    if (request.json) print(json({ kind: 'pushbench-repeats', summaries: result.summaries }));
    else {
      print(result.text);
      print(`repeats: ${result.files.join(', ')}`);
    }
    return result.exitCode;
  }
  if (request.kind === 'matrix') {
    const options = { ...request.options, listener };
    const result = await runMatrix(scenario, request.axes, options);
    const reports = result.variants.map((v) => v.report);
    const files = await writeComparison(result.comparison, result.dir, options, reports);
    if (request.json) print(json(result.comparison));
    else {
      print(renderComparisonText(result.comparison));
      print(`comparison: ${files.join(', ')}`);
    }
    return result.exitCode;
  }
  const result = await run(scenario, { ...request.options, listener });
  if (request.json) print(json(result.report));
  else {
    print(renderSummary(result.report, colourFor(process.stdout)));
    if (result.reportPath) print(`report: ${result.reportPath}`);
  }
  return result.report.exitCode;
}

async function compareCommand(paths: string[], flags: CompareFlags): Promise<number> {
  if (paths.length < 2) throw new PushbenchError('PB_USAGE', 'compare needs at least two reports');
  const {
    compareReports,
    isRepeatFolder,
    labelOf,
    readRepeats,
    readReport,
    renderComparisonText,
    renderRepeats,
    writeComparison,
  } = await harness();
  // Folders of --repeat runs: compared over their repeats (Welch's t-test), not run by run.
  const repeated = await Promise.all(paths.map((p) => isRepeatFolder(p)));
  if (repeated.every(Boolean)) {
    const summaries = [];
    for (const p of paths) summaries.push(await readRepeats(p));
    print(flags.json ? json({ kind: 'pushbench-repeats', summaries }) : renderRepeats(summaries));
    return ExitCode.Pass;
  }
  if (repeated.some(Boolean)) {
    throw new PushbenchError(
      'PB_USAGE',
      `compare ${paths[repeated.indexOf(true)]} (a --repeat folder) with other --repeat folders, or its repeat-<i>/ runs with single runs`,
    );
  }
  const loaded = [];
  for (const p of paths) loaded.push(await readReport(p));
  const reports = loaded.map((l) => l.report);
  const labels = loaded.map((l) => labelOf(l.path));
  const unique = new Set(labels).size === labels.length ? labels : paths;
  const comparison = compareReports(reports, unique);
  print(flags.json ? json(comparison) : renderComparisonText(comparison));
  if (flags.out) {
    const files = await writeComparison(comparison, flags.out, {}, reports);
    if (!flags.json) print(`comparison: ${files.join(', ')}`);
  }
  return ExitCode.Pass;
}

async function capacityCommand(flags: CapacityFlags): Promise<number> {
  const {
    formatCapacity,
    formatCapacityComparison,
    loadProfiles,
    parseGates,
    resolveProfile,
    searchCapacity,
    writeCapacityReport,
  } = await harness();
  const profiles = await loadProfiles(flags.profiles);
  // Refuse every bad profile and SLO before the first step starts.
  const resolved = flags.profile.map((n) => resolveProfile(profiles, n));
  parseGates([...flags.slo, flags.herdSlo]);
  const startedAt = new Date();
  const reports = [];
  for (const p of resolved) {
    const search = capacitySearch(flags, { name: p.name, input: p.input }, startedAt);
    const report = await searchCapacity({ ...search, notice: noticeUnless(flags.json) });
    const files = writeCapacityReport(report, search.outDir);
    reports.push(report);
    if (!flags.json) print(`${formatCapacity(report)}\nwrote: ${files.join(', ')}\n`);
  }
  if (flags.json) print(json(reports.length === 1 ? reports[0] : reports));
  else if (reports.length > 1) print(formatCapacityComparison(reports, flags.devices));
  return reports.every((r) => r.knee !== null) ? ExitCode.Pass : ExitCode.GateFailed;
}

async function planCommand(flags: PlanFlags): Promise<number> {
  const { formatPlan, planFleet, readCapacityReport } = await harness();
  const plan = planFleet(planInput(flags, readCapacityReport(flags.from)));
  // Per-second herd timelines can be long; they stay in the JSON for plotting.
  print(flags.json ? json(plan) : formatPlan(plan));
  return plan.nodeLoss.cascade || plan.zoneLoss?.cascade ? ExitCode.GateFailed : ExitCode.Pass;
}

async function modelCheckCommand(flags: ModelCheckFlags): Promise<number> {
  const { checkModel, formatModelCheck, herdAbsorption, readCapacityReport } = await harness();
  const report = flags.from ? readCapacityReport(flags.from) : undefined;
  const measured = report?.herd.absorptionPerSec ?? undefined;
  // A TLS report's absorption is a full-handshake figure; a TLS herd with shared
  // ticket keys resumes, and the node takes it faster by their CPU ratio.
  const absorption =
    measured !== undefined &&
    flags.tls === true &&
    report?.tls &&
    report.tls.fullConnectUs > 0 &&
    report.tls.resumedConnectUs > 0
      ? herdAbsorption(
          {
            connectionsPerNode: 1,
            absorptionPerSec: measured,
            tls: {
              fullConnectUs: report.tls.fullConnectUs,
              resumedConnectUs: report.tls.resumedConnectUs,
            },
          },
          1,
        )
      : measured;
  const check = await checkModel({
    ...modelCheckOptions(flags, absorption),
    notice: noticeUnless(flags.json),
  });
  if (flags.out) {
    mkdirSync(flags.out, { recursive: true });
    writeFileSync(`${flags.out}/model-check.json`, `${json(check)}\n`);
  }
  print(flags.json ? json(check) : formatModelCheck(check));
  // A live half whose generator saturated measured the generator: no verdict on the model.
  if (!check.live.valid) return ExitCode.Invalid;
  // Outside the target but inside the live intervals: this herd cannot decide it.
  return check.verdict === 'within'
    ? ExitCode.Pass
    : check.verdict === 'not-told-apart'
      ? ExitCode.Inconclusive
      : ExitCode.GateFailed;
}

async function reportCommand(dir: string, flags: ReportFlags): Promise<number> {
  const { colourFor, renderSummary, rerender } = await harness();
  const { report, files } = await rerender(dir, flags);
  if (flags.json) print(json(report));
  else {
    print(renderSummary(report, colourFor(process.stdout)));
    print(`wrote: ${files.join(', ')}`);
  }
  // The verdict is the recorded run's, so CI can gate on a re-rendered folder too.
  return report.exitCode;
}

async function tokenCommand(flags: TokenFlags): Promise<number> {
  const { signToken } = await import('../server/token.js');
  print(signToken(tokenClaims(flags, Date.now()), flags.secret));
  return ExitCode.Pass;
}

async function listCommand(): Promise<number> {
  const { listBuiltinScenarios } = await import('../scenarios/load.js');
  const scenarios = listBuiltinScenarios();
  // Names as wide as the longest: `balancer-scale-up` ran into its description at 16.
  const width = Math.max(...scenarios.map((s) => s.name.length)) + 2;
  for (const s of scenarios) print(`${s.name.padEnd(width)}${s.description}`);
  return ExitCode.Pass;
}

command('run', 'run a scenario (a built-in name or a .json/.js/.ts file) and gate on it', runFlags)
  .argument('<scenario>', 'built-in name (see `pushbench list`) or path')
  .action(async (scenario: string, _: unknown, cmd: Command) => {
    stopOnSignals();
    process.exitCode = await runCommand(scenario, flagsOf<RunFlags>(cmd));
  });

command(
  'compare',
  'put two or more reports side by side: deltas against the first, and the best per metric',
  compareFlags,
)
  .argument('<reports...>', 'results folders or report.json files')
  .action(async (paths: string[], _: unknown, cmd: Command) => {
    process.exitCode = await compareCommand(paths, flagsOf<CompareFlags>(cmd));
  });

command(
  'capacity',
  'find what one node of a profile holds within an SLO: connections, msgs/s, memory and CPU per load, herd absorption',
  capacityFlags,
).action(async (_: unknown, cmd: Command) => {
  stopOnSignals();
  process.exitCode = await capacityCommand(flagsOf<CapacityFlags>(cmd));
});

command(
  'plan',
  'nodes a fleet needs, from a capacity report, and a simulation of the herd when one node or a zone dies',
  planFlags,
).action(async (_: unknown, cmd: Command) => {
  process.exitCode = await planCommand(flagsOf<PlanFlags>(cmd));
});

command(
  'model-check',
  'run a node kill live and simulate the same herd; print both and their difference (peak reconnects, time to 99 %)',
  modelCheckFlags,
).action(async (_: unknown, cmd: Command) => {
  stopOnSignals();
  process.exitCode = await modelCheckCommand(flagsOf<ModelCheckFlags>(cmd));
});

command(
  'report',
  'rebuild report.html, summary.txt, .hgrm and CI files from a results folder without rerunning',
  reportFlags,
)
  .argument('<dir>', 'results folder (or its report.json)')
  .action(async (dir: string, _: unknown, cmd: Command) => {
    process.exitCode = await reportCommand(dir, flagsOf<ReportFlags>(cmd));
  });

command('serve', 'run one reference push node', serveFlags).action(
  async (_: unknown, cmd: Command) => {
    const options = parseServeFlags(flagsOf<ServeFlags>(cmd));
    const { serve } = await import('../server/serve.js');
    process.exitCode = await serve(options, print);
  },
);

command('token', 'make a signed device token', tokenFlags).action(
  async (_: unknown, cmd: Command) => {
    process.exitCode = await tokenCommand(flagsOf<TokenFlags>(cmd));
  },
);

command(
  'agent',
  "join a run's fleet from this host (the run waits for it with --agents)",
  agentFlags,
).action(async (_: unknown, cmd: Command) => {
  const flags = parseAgentFlags(flagsOf<AgentFlags>(cmd));
  const { runAgent } = await import('../loadgen/join/agent.js');
  let ca: Buffer | undefined;
  if (flags.ca !== undefined) {
    try {
      ca = readFileSync(flags.ca);
    } catch (err) {
      throw new PushbenchError(
        'PB_USAGE',
        `cannot read --ca ${flags.ca}: ${(err as Error).message}`,
      );
    }
  }
  const exit = await runAgent({
    ...(ca !== undefined && { ca }),
    url: flags.join,
    token: flags.token,
    ...(flags.name !== undefined && { name: flags.name }),
    ...(flags.maxDevices !== undefined && { maxDevices: flags.maxDevices }),
    ...(flags.sourceAddresses !== undefined && {
      sourceAddresses: flags.sourceAddresses.split(','),
    }),
    log: (line) => process.stderr.write(`agent: ${line}\n`),
  });
  process.exitCode = exit.code;
});

const k8s = program.command('k8s').description('print Kubernetes manifests');
const k8sAgents = k8s
  .command('agents')
  .description('print an Indexed Job and its headless Service placing N load agents for a run');
for (const option of Object.values<Option>(k8sAgentsFlags)) k8sAgents.addOption(option);
k8sAgents.action(async (_: unknown, cmd: Command) => {
  const flags = parseK8sAgentsFlags(flagsOf<K8sAgentsFlags>(cmd));
  const { agentsManifest } = await import('../loadgen/join/k8s.js');
  process.stdout.write(agentsManifest(flags));
});

command('list', 'list the built-in scenarios', {}).action(async () => {
  process.exitCode = await listCommand();
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
