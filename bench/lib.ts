/**
 * The library under test, as users run it: compiled JavaScript. Under tsx the source build would boot
 * tsx inside every snapshot/restore worker thread (~0.5 s per worker), a cost no user pays, so by
 * default src/ is compiled with the project's tsc (tsconfig.build.json) into bench/results/tmp/dist/
 * (rebuilt when src/ changes) and imported from there. BENCH_LIB=source measures src/ through tsx.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type * as Lib from '../src/index.ts';
import { CACHE_DIR } from './dataset.ts';

export type { BlobDatabase, Leaser, SnapshotOptions, SnapshotStore, SyncLogger } from '../src/index.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function srcHash(): string {
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else hash.update(full).update(readFileSync(full));
    }
  };
  walk(join(ROOT, 'src'));
  hash.update(readFileSync(join(ROOT, 'tsconfig.build.json')));
  return hash.digest('hex').slice(0, 16);
}

/** Compiles src/ once per content hash; returns the URL of the compiled index.js. */
async function ensureBuild(): Promise<string> {
  const out = join(CACHE_DIR, `dist-${LIB_SRC_HASH}`);
  if (!existsSync(join(out, 'index.js'))) {
    await mkdir(CACHE_DIR, { recursive: true }); // a fresh clone has no cache yet
    for (const old of readdirSync(CACHE_DIR).filter((n) => /^dist-[0-9a-f]{16}$/.test(n))) await rm(join(CACHE_DIR, old), { recursive: true, force: true });
    const tmp = `${out}.${process.pid}.tmp`;
    const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
    await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', tmp, '--declaration', 'false', '--sourceMap', 'false'], { cwd: ROOT });
    await writeFile(join(tmp, 'package.json'), '{ "type": "module" }\n');
    await rm(out, { recursive: true, force: true });
    await rename(tmp, out);
  }
  return pathToFileURL(join(out, 'index.js')).href;
}

export const LIB_KIND: 'dist' | 'source' = process.env.BENCH_LIB === 'source' ? 'source' : 'dist';
/** Identifies the library code measured (src/ may hold uncommitted changes). */
export const LIB_SRC_HASH = process.env.BENCH_LIB_SRC_HASH ?? srcHash();
/**
 * The module the library is imported from. Child processes of a benchmark (bench/incremental.ts) get
 * their parent's in BENCH_LIB_URL (and BENCH_LIB_SRC_HASH), so they measure the very same build even
 * when src/ changes while the run goes on.
 */
export const LIB_URL = process.env.BENCH_LIB_URL ?? (LIB_KIND === 'source' ? new URL('../src/index.ts', import.meta.url).href : await ensureBuild());
const lib = (await import(LIB_URL)) as typeof Lib;
export const { drizzle, directoryStore, azureBlobStore } = lib;

/** One of the library's internal modules from the same build (`path` below src/, without extension, e.g. 'sync/chunks/chunk-codec'). */
export function importLib<T>(path: string): Promise<T> {
  return import(new URL(`${path}${LIB_URL.endsWith('.ts') ? '.ts' : '.js'}`, LIB_URL).href) as Promise<T>;
}
