import { join, resolve } from 'node:path';
import { type Comparison, compareReports } from '../reports/compare.js';
import { type Report, worstVerdictOf } from '../reports/report.js';
import type { MatrixAxis } from '../scenarios/load.js';
import type { ScenarioInput } from '../scenarios/schema.js';
import { type RunOptions, run } from './run.js';

/** Every combination of the axes' values, in order (the first axis varies slowest). */
export function matrixVariants(axes: readonly MatrixAxis[]): Record<string, unknown>[] {
  let variants: Record<string, unknown>[] = [{}];
  for (const axis of axes) {
    variants = variants.flatMap((v) => axis.values.map((value) => ({ ...v, [axis.field]: value })));
  }
  return variants;
}

/** A variant's name: `path=value,…`. */
export function variantLabel(variant: Record<string, unknown>): string {
  return Object.entries(variant)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(',');
}

/** A variant's folder under `dir`: `NN-<label>`, numbered from 1. */
export function variantFolder(dir: string, index: number, label: string): string {
  return join(
    dir,
    `${String(index + 1).padStart(2, '0')}-${label.replace(/[^A-Za-z0-9_.,=-]+/g, '_')}`,
  );
}

/** Every combination of the axes, each validated (exit 2 on the first bad one) before any runs. */
export async function validatedVariants(
  ref: string | ScenarioInput,
  axes: readonly MatrixAxis[],
  options: RunOptions,
): Promise<Record<string, unknown>[]> {
  const variants = matrixVariants(axes);
  const { loadScenario } = await import('../scenarios/load.js');
  for (const variant of variants)
    await loadScenario(ref, { ...options, set: { ...options.set, ...variant } });
  return variants;
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
  const variants = await validatedVariants(ref, axes, options);
  const dir = resolve(options.outDir);
  const results: MatrixResult['variants'] = [];
  let i = 0;
  for (const variant of variants) {
    const label = variantLabel(variant);
    options.listener?.notice?.(`variant ${++i}/${variants.length}: ${label}`);
    const { report, reportPath } = await run(ref, {
      ...options,
      set: { ...options.set, ...variant },
      outDir: variantFolder(dir, i - 1, label),
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
