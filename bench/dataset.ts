/**
 * Deterministic benchmark datasets: `documents` rows of ~450 bytes (JSON content) from a fixed-seed
 * PRNG, in a SQLite file built with the shipped migrations (drizzle/), so the indexes are exactly the
 * ones the schema ships. Built files are cached in bench/results/tmp/ keyed by rows, seed, generator
 * version and a hash of the migrations; a repeated run reuses them.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../drizzle/', import.meta.url));
export const CACHE_DIR = fileURLToPath(new URL('./results/tmp/', import.meta.url));
export const DEFAULT_SEED = 0x5eed;
/** Bump when the generator's output changes, so cached files are rebuilt. */
const GENERATOR_VERSION = 1;

export const SIZES: Readonly<Record<string, number>> = { '10k': 10_000, '100k': 100_000, '1m': 1_000_000 };

export function parseSize(label: string): number {
  const rows = SIZES[label.toLowerCase()] ?? Number(label);
  if (!Number.isInteger(rows) || rows <= 0) throw new Error(`unknown size ${JSON.stringify(label)}: use ${Object.keys(SIZES).join(', ')} or a row count`);
  return rows;
}

export function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const WORDS = ('calm bright stormy quiet harbor forest neon midnight archive velvet signal ember crisp hollow lantern ' +
  'drift copper meadow static orbit linen rust glacier tender bold whisper canyon saffron echo pixel marble ' +
  'thunder amber quartz willow cobalt riddle summit paper tide spark violet granite hush fable ivory raven').split(' ');
export const TYPES = ['persona', 'template', 'mood', 'scenario'] as const;
export type DocType = (typeof TYPES)[number];
/** Timestamps start here and advance ~30 s per row on average. */
export const EPOCH_MS = 1_700_000_000_000;
const DAY_MS = 86_400_000;

/** One `documents` row as stored (timestamps in ms, content as JSON text). */
export interface DocRow {
  id: string;
  type: DocType;
  name: string;
  content: string;
  version: number;
  created_at: number;
  updated_at: number;
}

export interface Generator {
  rand: () => number;
  int: (n: number) => number;
  word: () => string;
  uuid: () => string;
  /** Content JSON of ~330 bytes (the row is ~450 bytes with its other columns). */
  content: () => string;
  /** The i-th row; call in order (timestamps accumulate). Names are unique per type (they end in i). */
  row: (i: number) => DocRow;
}

export function generator(seed = DEFAULT_SEED): Generator {
  const rand = mulberry32(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const word = (): string => WORDS[int(WORDS.length)]!;
  const words = (n: number): string => Array.from({ length: n }, word).join(' ');
  const hex = (n: number): string => Array.from({ length: n }, () => int(16).toString(16)).join('');
  const uuid = (): string => `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`;
  const content = (): string =>
    JSON.stringify({
      title: words(3 + int(4)),
      tags: Array.from({ length: 2 + int(4) }, word),
      description: words(14 + int(12)),
      settings: { temperature: +(rand() * 2).toFixed(2), maxTokens: 64 * (1 + int(64)), seed: int(1e9), enabled: rand() < 0.7 },
      stats: { uses: int(100_000), rating: +(rand() * 5).toFixed(3), lastScore: int(1e6) / 100 },
    });
  let created = EPOCH_MS;
  const row = (i: number): DocRow => {
    created += int(60_000);
    return {
      id: uuid(),
      type: TYPES[int(TYPES.length)]!,
      name: `${words(2)} ${i}`,
      content: content(),
      version: 1 + int(20),
      created_at: created,
      updated_at: created + int(90 * DAY_MS),
    };
  };
  return { rand, int, word, uuid, content, row };
}

export interface Dataset {
  path: string;
  rows: number;
  seed: number;
  bytes: number;
  /** 0 when the cached file was reused. */
  buildMs: number;
  cached: boolean;
}

function migrationsHash(): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(MIGRATIONS_DIR).filter((n) => n.endsWith('.sql')).sort()) hash.update(name).update(readFileSync(join(MIGRATIONS_DIR, name)));
  return hash.digest('hex').slice(0, 8);
}

export function datasetPath(rows: number, seed = DEFAULT_SEED): string {
  return join(CACHE_DIR, `documents-${rows}-s${seed.toString(16)}-g${GENERATOR_VERSION}-m${migrationsHash()}.db`);
}

/** The cached database of `rows` documents, built (~10 s per million rows) if missing. */
export async function ensureDataset(rows: number, seed = DEFAULT_SEED): Promise<Dataset> {
  const path = datasetPath(rows, seed);
  if (existsSync(path)) return { path, rows, seed, bytes: (await stat(path)).size, buildMs: 0, cached: true };
  await mkdir(CACHE_DIR, { recursive: true });
  const tmp = `${path}.${process.pid}.building`;
  await rm(tmp, { force: true });
  const started = performance.now();
  try {
    build(tmp, rows, seed);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  return { path, rows, seed, bytes: (await stat(path)).size, buildMs: performance.now() - started, cached: false };
}

function build(path: string, rows: number, seed: number): void {
  const sqlite = new Database(path);
  try {
    sqlite.pragma('journal_mode = OFF');
    sqlite.pragma('synchronous = OFF');
    sqlite.pragma('cache_size = -262144'); // 256 MiB: the primary-key index is built in random order
    migrate(drizzle({ client: sqlite }), { migrationsFolder: MIGRATIONS_DIR });
    // Secondary indexes are dropped for the load and re-created from their own (shipped) SQL.
    const indexes = sqlite.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'documents' AND sql IS NOT NULL").all() as { name: string; sql: string }[];
    for (const { name } of indexes) sqlite.exec(`DROP INDEX "${name}"`);

    const perStatement = 100;
    const insertMany = sqlite.prepare(`INSERT INTO documents (id, type, name, content, version, created_at, updated_at) VALUES ${Array(perStatement).fill('(?,?,?,?,?,?,?)').join(',')}`);
    const insertOne = sqlite.prepare('INSERT INTO documents (id, type, name, content, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?)');
    const gen = generator(seed);
    const load = sqlite.transaction((from: number, to: number) => {
      const args: (string | number)[] = [];
      for (let i = from; i < to; i++) {
        const r = gen.row(i);
        args.push(r.id, r.type, r.name, r.content, r.version, r.created_at, r.updated_at);
        if (args.length === perStatement * 7) insertMany.run(args.splice(0));
      }
      for (let k = 0; k < args.length; k += 7) insertOne.run(args.slice(k, k + 7));
    });
    const perTransaction = 50_000;
    for (let from = 0; from < rows; from += perTransaction) load(from, Math.min(rows, from + perTransaction));
    for (const { sql } of indexes) sqlite.exec(sql);
    sqlite.pragma('journal_mode = DELETE');
  } finally {
    sqlite.close();
  }
}

/** Ids of `count` rows spread over the table (by rowid), for lookups and updates. */
export function sampleIds(path: string, count: number, seed = 7): string[] {
  const sqlite = new Database(path, { readonly: true });
  try {
    const max = (sqlite.prepare('SELECT max(rowid) AS m FROM documents').get() as { m: number }).m;
    const rand = mulberry32(seed);
    const pick = sqlite.prepare('SELECT id FROM documents WHERE rowid = ?').pluck();
    const ids: string[] = [];
    while (ids.length < count) {
      const id = pick.get(1 + Math.floor(rand() * max)) as string | undefined;
      if (id) ids.push(id);
    }
    return ids;
  } finally {
    sqlite.close();
  }
}
