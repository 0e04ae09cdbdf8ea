import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = new URL('../src/', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sources(path) : entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import of a file (static, type-only and dynamic), as a path under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specifiers.map((specifier) => relative(SRC, join(file, '..', specifier)));
}

describe('the import graph of src/', () => {
  it("keeps the engine and the shared tier's implementations apart: they meet only at shared-tier/contract.ts", () => {
    const crossings: string[] = [];
    const implementation = (path: string): boolean =>
      path.startsWith('shared-tier/redis/') || path.startsWith('shared-tier/memory/');
    for (const file of sources(SRC)) {
      const from = relative(SRC, file);
      for (const target of importsOf(file)) {
        // The engine, and everything that protects the origin, see the contract, never a storage.
        if ((from.startsWith('engine/') || from.startsWith('penetration/')) && implementation(target))
          crossings.push(`${from} → ${target}`);
        if (from.startsWith('shared-tier/') && target.startsWith('engine/')) crossings.push(`${from} → ${target}`);
        // The contract depends on nothing but itself, util/ and the error table; util/ on itself alone.
        const base = (path: string): boolean => path.startsWith('util/') || path === 'errors.js';
        if (from.startsWith('util/') && !base(target)) crossings.push(`${from} → ${target}`);
        if (
          (from === 'shared-tier/contract.ts' || from === 'shared-tier/unavailable.ts') &&
          !target.startsWith('shared-tier/unavailable') &&
          !base(target)
        )
          crossings.push(`${from} → ${target}`);
      }
    }
    expect(crossings).toEqual([]);
  });

  it('has no import cycle', () => {
    const graph = new Map(sources(SRC).map((file) => [relative(SRC, file).replace(/\.ts$/, '.js'), importsOf(file)]));
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (node: string, path: string[]): void => {
      if (state.get(node) === 'done') return;
      if (state.get(node) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(node)), node].join(' → '));
        return;
      }
      state.set(node, 'visiting');
      for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
      state.set(node, 'done');
    };
    for (const node of graph.keys()) visit(node, []);
    expect(cycles).toEqual([]);
  });
});
