import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Comparison, renderComparisonMarkdown } from '../compare.js';
import type { Report } from '../report.js';
import { renderComparisonHtml } from './comparison-html.js';

/**
 * Writes comparison.json, comparison.md and comparison.html into `dir`, plus a
 * Markdown copy at `request.summary` when given. Returns the paths written.
 */
export async function writeComparison(
  comparison: Comparison,
  dir: string,
  request: { summary?: string },
  reports: readonly Report[] = [],
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = [
    join(dir, 'comparison.json'),
    join(dir, 'comparison.md'),
    join(dir, 'comparison.html'),
  ];
  const md = `# pushbench comparison\n\n${renderComparisonMarkdown(comparison)}`;
  await writeFile(files[0]!, `${JSON.stringify(comparison, null, 2)}\n`);
  await writeFile(files[1]!, md);
  await writeFile(files[2]!, renderComparisonHtml(comparison, reports));
  if (request.summary) {
    await writeFile(request.summary, md);
    files.push(request.summary);
  }
  return files;
}
