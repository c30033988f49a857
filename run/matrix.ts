import { join, resolve } from 'node:path';
import { PushbenchError } from '../core/errors.js';
import { type Comparison, compareReports } from '../reports/compare.js';
import { type Report, worstVerdictOf } from '../reports/report.js';
import { parseFieldPath, parseFieldValue } from '../scenarios/load.js';
import type { ScenarioInput } from '../scenarios/schema.js';
import { type RunOptions, run } from './run.js';

/** One axis of a matrix: a field path (or alias) and the values to try. */
export interface MatrixAxis {
  field: string;
  values: unknown[];
}

/** Parses `--matrix field=a,b,c`. */
export function parseMatrixAxis(text: string): MatrixAxis {
  const eq = text.indexOf('=');
  if (eq <= 0)
    throw new PushbenchError('PB_USAGE', `--matrix needs field=value1,value2, got "${text}"`);
  const field = text.slice(0, eq).trim();
  parseFieldPath(field);
  const values = text
    .slice(eq + 1)
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
  if (values.length < 2) {
    throw new PushbenchError(
      'PB_USAGE',
      `--matrix ${field} needs at least two values, got "${text.slice(eq + 1)}"`,
    );
  }
  return { field, values: values.map(parseFieldValue) };
}

/** Every combination of the axes' values, in order (the first axis varies slowest). */
export function matrixVariants(axes: readonly MatrixAxis[]): Record<string, unknown>[] {
  let variants: Record<string, unknown>[] = [{}];
  for (const axis of axes) {
    variants = variants.flatMap((v) => axis.values.map((value) => ({ ...v, [axis.field]: value })));
  }
  return variants;
}

function labelOf(variant: Record<string, unknown>): string {
  return Object.entries(variant)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(',');
}

/** A finished matrix: each variant's report and the comparison of all of them. */
export interface MatrixResult {
  variants: { label: string; report: Report; reportPath: string | undefined }[];
  comparison: Comparison;
  /** Worst verdict over the variants decides the exit code. */
  exitCode: number;
  dir: string;
}

/**
 * Runs a scenario once per combination of the axes, in sequence (never in
 * parallel: they would share the machine and skew each other), each into its
 * own folder under `dir`, then compares them. Every variant is validated
 * before the first one starts.
 */
export async function runMatrix(
  ref: string | ScenarioInput,
  axes: readonly MatrixAxis[],
  options: RunOptions & { outDir: string },
): Promise<MatrixResult> {
  const variants = matrixVariants(axes);
  const { loadScenario } = await import('../scenarios/load.js');
  for (const variant of variants)
    await loadScenario(ref, { ...options, set: { ...options.set, ...variant } });
  const dir = resolve(options.outDir);
  const results: MatrixResult['variants'] = [];
  let i = 0;
  for (const variant of variants) {
    const label = labelOf(variant);
    options.listener?.notice?.(`variant ${++i}/${variants.length}: ${label}`);
    const { report, reportPath } = await run(ref, {
      ...options,
      set: { ...options.set, ...variant },
      outDir: join(
        dir,
        `${String(i).padStart(2, '0')}-${label.replace(/[^A-Za-z0-9_.,=-]+/g, '_')}`,
      ),
      junit: undefined,
      summary: undefined,
    });
    results.push({ label, report, reportPath });
  }
  const comparison = compareReports(
    results.map((r) => r.report),
    results.map((r) => r.label),
  );
  return {
    variants: results,
    comparison,
    exitCode: worstVerdictOf(results.map((r) => r.report.verdict)).exitCode,
    dir,
  };
}
