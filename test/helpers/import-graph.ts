import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** Every `.ts` file under `dir` (absolute paths). */
export function sourcesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourcesUnder(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** What `file` imports or re-exports by relative path, type-only included, as repo-relative `.ts` paths. */
export function relativeImports(file: string): string[] {
  const spec = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;
  return [...readFileSync(file, 'utf8').matchAll(spec)].map((m) =>
    relative(repoRoot, normalize(join(dirname(file), m[1]!))).replace(/\.js$/, '.ts'),
  );
}

/** A cycle in a directed graph as the path that closes it, or undefined when there is none. */
export function findCycle(graph: Map<string, Iterable<string>>): string[] | undefined {
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
