import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCycle, relativeImports, repoRoot, sourcesUnder } from '../helpers/import-graph.js';

const SOURCE_FOLDERS = [
  'bin',
  'capacity',
  'core',
  'loadgen',
  'reports',
  'run',
  'scenarios',
  'server',
  'topology',
];

/** Top-level folder -> the top-level folders its modules import (relative imports only). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const folder of SOURCE_FOLDERS) {
    const out = new Set<string>();
    for (const file of sourcesUnder(join(repoRoot, folder))) {
      for (const target of relativeImports(file)) {
        const top = target.includes('/') ? target.split('/')[0]! : '(root)';
        if (top !== folder) out.add(top);
      }
    }
    graph.set(folder, out);
  }
  return graph;
}

describe('layers', () => {
  const graph = folderGraph();

  it('has no import cycle between top-level folders', () => {
    expect(findCycle(graph)).toBeUndefined();
  });

  it('keeps core/ at the bottom and the server standing alone', () => {
    expect([...graph.get('core')!]).toEqual([]);
    expect([...graph.get('server')!]).toEqual(['core']);
  });

  it('keeps reports/ from loading the load generator (pushbench report DIR re-renders a file)', () => {
    expect(graph.get('reports')!.has('loadgen')).toBe(false);
    expect(graph.get('reports')!.has('run')).toBe(false);
  });

  it('lets only core/measure/histogram.ts import hdr-histogram-js', () => {
    const importers = SOURCE_FOLDERS.flatMap((f) => sourcesUnder(join(repoRoot, f))).filter(
      (file) => /from ['"]hdr-histogram-js['"]/.test(readFileSync(file, 'utf8')),
    );
    expect(importers.map((f) => relative(repoRoot, f))).toEqual(['core/measure/histogram.ts']);
  });
});
