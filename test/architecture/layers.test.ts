import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
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

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Top-level folder -> the top-level folders its modules import (relative imports only). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  const spec = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const folder of SOURCE_FOLDERS) {
    const out = new Set<string>();
    for (const file of sources(join(root, folder))) {
      for (const m of readFileSync(file, 'utf8').matchAll(spec)) {
        const target = relative(root, normalize(join(dirname(file), m[1]!)));
        const top = target.includes('/') ? target.split('/')[0]! : '(root)';
        if (top !== folder) out.add(top);
      }
    }
    graph.set(folder, out);
  }
  return graph;
}

function findCycle(graph: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const visit = (node: string, path: string[]): string[] | undefined => {
    state.set(node, 'open');
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') return [...path, node, next];
      if (state.get(next) === undefined) {
        const found = visit(next, [...path, node]);
        if (found) return found;
      }
    }
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    if (state.get(node) === undefined) {
      const found = visit(node, []);
      if (found) return found;
    }
  }
  return undefined;
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
    const importers = SOURCE_FOLDERS.flatMap((f) => sources(join(root, f))).filter((file) =>
      /from ['"]hdr-histogram-js['"]/.test(readFileSync(file, 'utf8')),
    );
    expect(importers.map((f) => relative(root, f))).toEqual(['core/measure/histogram.ts']);
  });
});
