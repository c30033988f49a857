import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Chalk } from 'chalk';
import { decodeHistogram, type LatencyHistogram } from '../../core/measure/histogram.js';
import type { IntervalHistograms } from '../../core/result.js';
import type { Report } from '../report.js';
import { writeHdrOutputs } from './hdr.js';
import { renderHtml } from './html.js';
import { writeJsonReport } from './json.js';
import { renderJunit } from './junit.js';
import { renderMarkdown } from './markdown.js';
import { renderSummary } from './text.js';

/** Where CI-facing outputs go besides the results folder. */
export interface OutputRequest {
  /** JUnit XML file (`--junit FILE`). */
  junit?: string;
  /** Markdown summary file (`--summary FILE`). */
  summary?: string;
}

/** What only a live run has: per-interval histograms for the HdrHistogram log. */
export interface RunArtifacts {
  intervals: readonly IntervalHistograms[];
}

async function writeText(path: string, text: string): Promise<string> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  await writeFile(path, text);
  return path;
}

/**
 * Writes every output of a report into its results folder — report.json,
 * report.html, summary.txt, the `.hgrm` percentile files and, from a live
 * run, the `latency.hlog` interval log — plus the requested CI files.
 * Returns the paths written. Each output reads only the report (and the
 * intervals), so `pushbench report DIR` can rebuild all but the log.
 */
export async function writeOutputs(
  report: Report,
  dir: string,
  request: OutputRequest = {},
  artifacts?: RunArtifacts,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  written.push(await writeJsonReport(report, dir));
  written.push(await writeText(join(dir, 'report.html'), renderHtml(report)));
  written.push(
    await writeText(
      join(dir, 'summary.txt'),
      `${renderSummary(report, new Chalk({ level: 0 }))}\n`,
    ),
  );
  const totals: Record<string, LatencyHistogram> = {};
  for (const [series, encoded] of Object.entries(report.histograms))
    totals[series] = decodeHistogram(encoded);
  written.push(
    ...(await writeHdrOutputs(dir, {
      intervals: artifacts?.intervals ?? [],
      totals,
      startTimeMsEpoch: Date.parse(report.startedAt),
      writeLog: artifacts !== undefined,
    })),
  );
  if (request.junit) written.push(await writeText(request.junit, renderJunit(report)));
  if (request.summary) written.push(await writeText(request.summary, renderMarkdown(report)));
  return written;
}
