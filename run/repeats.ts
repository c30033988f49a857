/**
 * `pushbench run --repeat N`: every variant (one, or each matrix combination) N times,
 * alternating A B A B … so that drift on the machine hits every variant alike, each run
 * into its own folder; then each variant's figures over its repeats, its gates over
 * them, and the contrasts between variants and regions (reports/repeats.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type RepeatSummary, renderRepeats, summarizeRepeats } from '../reports/repeats.js';
import { type Report, worstVerdictOf } from '../reports/report.js';
import type { MatrixAxis } from '../scenarios/load.js';
import type { ScenarioInput } from '../scenarios/schema.js';
import { validatedVariants, variantFolder, variantLabel } from './matrix.js';
import { type RunOptions, run } from './run.js';

/** A finished `--repeat` run. */
export interface RepeatResult {
  summaries: RepeatSummary[];
  /** Every variant's reports, in run order. */
  reports: Report[][];
  /** The worst variant's verdict decides it. */
  exitCode: number;
  dir: string;
  /** repeats.json and repeats.txt in `dir`. */
  files: string[];
  text: string;
}

/**
 * Runs each variant `repeat` times in alternation, in sequence (never in parallel), after
 * validating every variant. Folders: `<dir>/<variant>/repeat-<i>` (no variant folder
 * without a matrix).
 */
export async function runRepeated(
  ref: string | ScenarioInput,
  axes: readonly MatrixAxis[],
  repeat: number,
  options: RunOptions & { outDir: string },
): Promise<RepeatResult> {
  const variants = await validatedVariants(ref, axes, options);
  const dir = resolve(options.outDir);
  const labels = variants.map((v) => variantLabel(v) || 'run');
  const reports: Report[][] = variants.map(() => []);
  for (let r = 1; r <= repeat; r++) {
    for (const [v, variant] of variants.entries()) {
      const label = labels[v]!;
      options.listener?.notice?.(
        `repeat ${r}/${repeat}${variants.length > 1 ? `, variant ${v + 1}/${variants.length}: ${label}` : ''}`,
      );
      const folder = variants.length > 1 ? variantFolder(dir, v, label) : dir;
      const { report } = await run(ref, {
        ...options,
        set: { ...options.set, ...variant },
        outDir: join(folder, `repeat-${r}`),
        junit: undefined,
        summary: undefined,
      });
      reports[v]!.push(report);
    }
  }
  const summaries = reports.map((rs, v) => summarizeRepeats(labels[v]!, rs));
  const text = renderRepeats(summaries);
  const files = [join(dir, 'repeats.json'), join(dir, 'repeats.txt')];
  await writeFile(
    files[0]!,
    `${JSON.stringify({ kind: 'pushbench-repeats', summaries }, null, 2)}\n`,
  );
  await writeFile(files[1]!, `${text}\n`);
  const { exitCode } = worstVerdictOf(summaries.map((s) => s.verdict));
  return { summaries, reports, exitCode, dir, files, text };
}
