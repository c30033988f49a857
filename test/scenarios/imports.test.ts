import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCycle, relativeImports, repoRoot, sourcesUnder } from '../helpers/import-graph.js';

/** Module of scenarios/ -> the modules of scenarios/ it imports or re-exports, type-only included. */
function moduleGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourcesUnder(join(repoRoot, 'scenarios'))) {
    const deps = relativeImports(file).filter((target) => target.startsWith('scenarios/'));
    graph.set(relative(repoRoot, file), deps);
  }
  return graph;
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
