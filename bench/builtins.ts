/**
 * `npm run builtins`: every built-in scenario at its default size, one after
 * another, through the CLI as a user runs it, and a table of what each ended
 * with: verdict and exit code, the gates that did not pass, and why a result
 * was invalid (the generator's own reasons). Run it on a quiet machine before
 * calling the built-ins sized for a 2-core CI runner; the table goes in the
 * closing note and bench/RESULTS.md with the machine's facts.
 *
 *   npm run builtins [-- --only smoke,five-nines] [--out DIR] [--set path=value ...]
 *
 * `--set` goes to every run as it is (e.g. `--set topology.network=kernel`: each
 * built-in on the kernel network engine).
 *
 * Exits 0 whatever the verdicts: it reports, it does not gate.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Report } from '../reports/report.js';
import { builtinScenarios } from '../scenarios/builtin/index.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    out: { type: 'string', default: join('results', `builtins-${Date.now()}`) },
    set: { type: 'string', multiple: true, default: [] },
  },
});
const sets = values.set.flatMap((s) => ['--set', s]);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/bin/pushbench.js');
if (!existsSync(cli)) {
  process.stderr.write('dist/ is missing: run `npm run build` first\n');
  process.exit(2);
}
const names = values.only?.split(',') ?? Object.keys(builtinScenarios);
mkdirSync(values.out, { recursive: true });

interface Row {
  name: string;
  exitCode: number | null;
  verdict: string;
  wallS: number;
  notes: string[];
}

const rows: Row[] = [];
for (const name of names) {
  const out = join(values.out, name);
  const t0 = performance.now();
  process.stderr.write(`running ${name} ...\n`);
  const res = spawnSync(process.execPath, [cli, 'run', name, '--out', out, ...sets], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const wallS = Math.round((performance.now() - t0) / 100) / 10;
  const reportPath = join(out, 'report.json');
  if (!existsSync(reportPath)) {
    const line = (res.stderr || res.stdout).trim().split('\n').pop() ?? '';
    rows.push({ name, exitCode: res.status, verdict: 'no report', wallS, notes: [line] });
    continue;
  }
  const report = JSON.parse(readFileSync(reportPath, 'utf8')) as Report;
  const notes = [
    ...report.gates
      .filter((g) => g.verdict !== 'pass')
      .map((g) => `${g.verdict}: ${g.expr} (${g.actualText})`),
    ...report.generator.reasons,
    ...(report.generator.warnings ?? []).map((w) => `warning: ${w}`),
  ];
  rows.push({ name, exitCode: res.status, verdict: report.verdict.toUpperCase(), wallS, notes });
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(
  `built-ins at their defaults${sets.length > 0 ? ` with ${values.set.map((s) => `--set ${s}`).join(' ')}` : ''}, ${new Date().toISOString()}, ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
);
console.log('');
console.log('scenario            verdict       exit  wall     notes');
for (const r of rows) {
  console.log(
    `${r.name.padEnd(20)}${r.verdict.padEnd(14)}${String(r.exitCode).padEnd(6)}${`${r.wallS}s`.padEnd(9)}${r.notes[0] ?? ''}`,
  );
  for (const n of r.notes.slice(1)) console.log(`${''.padEnd(49)}${n}`);
}
