/**
 * Rules of the source layout that a review would otherwise have to catch: one module writes the
 * sidecar, the core knows no Azure, and src/ has no import cycles.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => join(SRC, f));
const source = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));
const rel = (f: string) => relative(SRC, f);

/** Relative imports (static, dynamic and `export ... from`) of one file, resolved to absolute paths. */
function imports(file: string): string[] {
  const text = source.get(file)!;
  const found = [...text.matchAll(/(?:from|import\(?)\s*'(\.{1,2}\/[^']+)'/g)].map((m) => resolve(dirname(file), m[1]!));
  return found.filter((f) => source.has(f));
}

test('the sidecar (<db>.sync.json) is written by src/local/sidecar.ts only', () => {
  for (const [file, text] of source) {
    if (rel(file) === join('local', 'sidecar.ts')) continue;
    assert.doesNotMatch(text, /\}\.sync\.json|['"]\.sync\.json/, `${rel(file)} builds the sidecar's path itself`);
    assert.doesNotMatch(text, /writeLocalState|writeSidecar/, `${rel(file)} writes the sidecar`);
  }
});

test('the core (sync/, local/, client/) imports nothing from Azure: only store/ does', () => {
  for (const [file, text] of source) {
    const r = rel(file);
    if (!/^(sync|local|client)\//.test(r)) continue;
    assert.doesNotMatch(text, /from '@azure\//, `${r} imports an Azure SDK`);
    for (const dep of imports(file)) assert.ok(!rel(dep).startsWith('store/azure'), `${r} imports ${rel(dep)}`);
  }
});

test('src/ has no import cycles', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return;
    assert.notEqual(state.get(file), 'visiting', `import cycle: ${[...path, file].map(rel).join(' -> ')}`);
    state.set(file, 'visiting');
    for (const dep of imports(file)) visit(dep, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of files) visit(file, []);
});
