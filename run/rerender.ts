import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readReport } from '../reports/compare.js';
import { type OutputRequest, writeOutputs } from '../reports/outputs/index.js';
import type { Report } from '../reports/report.js';

/**
 * Rebuilds a results folder's outputs (report.html, summary.txt, `.hgrm`
 * files, and any requested JUnit/Markdown files) from its report.json, without
 * rerunning anything. The interval log (`latency.hlog`) is left as the run wrote it.
 */
export async function rerender(
  dirOrReport: string,
  request: OutputRequest = {},
): Promise<{ report: Report; files: string[]; hasLog: boolean }> {
  const { report, path } = await readReport(dirOrReport);
  const dir = resolve(path, '..');
  const files = await writeOutputs(report, dir, request);
  const hasLog = await access(join(dir, 'latency.hlog')).then(
    () => true,
    () => false,
  );
  return { report, files, hasLog };
}
