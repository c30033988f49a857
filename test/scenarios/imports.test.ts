import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Module of scenarios/ -> the modules of scenarios/ it imports or re-exports, type-only included. */
function moduleGraph(): Map<string, string[]> {
  const spec = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;
  const graph = new Map<string, string[]>();
  for (const file of sources(join(root, 'scenarios'))) {
    const deps = [...readFileSync(file, 'utf8').matchAll(spec)]
      .map((m) => relative(root, normalize(join(dirname(file), m[1]!))).replace(/\.js$/, '.ts'))
      .filter((target) => target.startsWith('scenarios/'));
    graph.set(relative(root, file), deps);
  }
  return graph;
}

function findCycle(graph: Map<string, string[]>): string[] | undefined {
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

describe('scenarios/ modules', () => {
  const graph = moduleGraph();

  it('import each other without a cycle', () => {
    expect(graph.size).toBeGreaterThan(5);
    expect(findCycle(graph)).toBeUndefined();
  });

  it('keep the types at the bottom and define.ts free of the validator', () => {
    expect(graph.get('scenarios/types.ts')).toEqual([]);
    expect(graph.get('scenarios/define.ts')).toEqual(['scenarios/types.ts']);
  });
});
