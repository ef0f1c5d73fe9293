/**
 * Seeds the documents table from `seeds/data/*.json`. Every file is validated before anything is
 * written, and a run that changes nothing writes nothing: the library then counts no commit and
 * uploads no snapshot, so `npm run db:setup` is safe to repeat on every deploy.
 */
import type { Dirent } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { and, eq, inArray, notInArray } from 'drizzle-orm';
import type { LibSQLDatabase } from 'drizzle-orm/libsql';
import { DOCUMENT_TYPES, documents, type Document, type DocumentContent, type DocumentType } from '../schema/documents.ts';
import { validateDocumentInput } from '../schema/validation.ts';

export const DEFAULT_SEED_DIR: string = fileURLToPath(new URL('./data', import.meta.url));

const DOCUMENT_FIELDS = new Set(['id', 'type', 'name', 'content']);

/** Rows per INSERT: far below SQLite's bound-parameter limit (7 columns per row). */
const INSERT_CHUNK = 500;

export class SeedValidationError extends Error {
  readonly code = 'SEED_INVALID';
  /** File name inside the seed directory (the directory itself when it holds no seed file). */
  readonly file: string;
  /** Document field, or `(file)` for a problem with the whole file. */
  readonly field: string;
  /** Array index of the document in its file; -1 for a problem with the whole file. */
  readonly index: number;

  constructor(problem: SeedProblem, dir: string, more: SeedProblem[] = []) {
    const extra = more.length === 0 ? '' : ` (and ${more.length} more: ${more.slice(0, 3).map((p) => describe(p, dir)).join(' | ')}${more.length > 3 ? ' | ...' : ''})`;
    super(describe(problem, dir) + extra);
    this.name = 'SeedValidationError';
    this.file = problem.file;
    this.field = problem.field;
    this.index = problem.index;
  }
}

/** `seeds/data/personas.json, document [3], field "content": must be a JSON object.` */
function describe(p: SeedProblem, dir: string): string {
  const full = p.file === dir ? dir : join(dir, p.file);
  const rel = relative(process.cwd(), full);
  const shown = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : full;
  return p.index >= 0 ? `${shown}, document [${p.index}], field "${p.field}": ${p.message}` : `${shown}: ${p.message}`;
}

/** One thing wrong with the seeds; `index` -1 means the whole file. */
type SeedProblem = { file: string; index: number; field: string; message: string };

export interface SeedDocument {
  id: string;
  type: DocumentType;
  name: string;
  content: DocumentContent;
  /** File name inside the seed directory. */
  file: string;
}

export interface SeedReport {
  files: number;
  byType: Record<DocumentType, { inserted: number; updated: number; unchanged: number }>;
  changed: boolean;
  durationMs: number;
}

/** Reads and validates every `*.json` in `dir` (sorted by name); throws on the first bad file or document. */
export async function loadSeeds(dir: string = DEFAULT_SEED_DIR): Promise<SeedDocument[]> {
  return (await readSeedDir(dir)).seeds;
}

async function readSeedDir(dir: string): Promise<{ files: number; seeds: SeedDocument[] }> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new SeedValidationError({ file: dir, index: -1, field: '(file)', message: `cannot read this seed directory (${(error as Error).message}).` }, dir);
  }
  const problems: SeedProblem[] = [];
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue; // editor and OS droppings (.DS_Store, .swp)
    if (entry.isFile() && entry.name.endsWith('.json')) files.push(entry.name);
    // A seed saved as .yaml or .txt would silently never load; refuse it instead.
    else problems.push({ file: entry.name, index: -1, field: '(file)', message: 'is not a .json seed file; convert it to a JSON array of documents or move it out of the seed directory.' });
  }
  files.sort();
  if (files.length === 0 && problems.length === 0) {
    problems.push({ file: dir, index: -1, field: '(file)', message: 'seed directory holds no *.json seed file; add one (a JSON array of { id, type, name, content }) or point to the right directory.' });
  }

  const seeds: SeedDocument[] = [];
  const byId = new Map<string, SeedDocument & { index: number }>();
  const byTypeName = new Map<string, SeedDocument & { index: number }>();
  for (const file of files) {
    const parsed = await parseFile(join(dir, file), file, problems);
    if (parsed === undefined) continue;
    parsed.forEach((value, index) => {
      const found = validateDocumentInput(value, { requireId: true });
      if (found.length > 0) {
        for (const p of found) {
          const hint = DOCUMENT_FIELDS.has(p.field) || p.field === '(document)' ? '' : '; remove it or move it into "content"';
          problems.push({ file, index, field: p.field, message: `${p.message}${hint}.` });
        }
        return;
      }
      const { id, type, name, content } = value as Omit<SeedDocument, 'file'>;
      const doc: SeedDocument = { id, type, name, content, file };
      const sameId = byId.get(id);
      if (sameId) {
        problems.push({ file, index, field: 'id', message: `duplicates id ${JSON.stringify(id)} already used by ${sameId.file}[${sameId.index}]; give one of them another id.` });
        return;
      }
      const key = `${type}\u0000${name}`;
      const sameName = byTypeName.get(key);
      if (sameName) {
        problems.push({ file, index, field: 'name', message: `duplicates the ${type} name ${JSON.stringify(name)} of ${sameName.file}[${sameName.index}]; names are unique per type.` });
        return;
      }
      byId.set(id, { ...doc, index });
      byTypeName.set(key, { ...doc, index });
      seeds.push(doc);
    });
  }
  if (problems.length > 0) throw new SeedValidationError(problems[0]!, dir, problems.slice(1));
  return { files: files.length, seeds };
}

async function parseFile(path: string, file: string, problems: SeedProblem[]): Promise<unknown[] | undefined> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    problems.push({ file, index: -1, field: '(file)', message: `is not valid JSON (${(error as Error).message}); fix the syntax.` });
    return undefined;
  }
  if (!Array.isArray(value)) {
    problems.push({ file, index: -1, field: '(file)', message: 'must be a JSON array of documents ({ id, type, name, content }).' });
    return undefined;
  }
  return value;
}

/** JSON with object keys sorted at every level, so key order never counts as a change. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]))
      : v,
  );
}

function sameDocument(seed: SeedDocument, row: Document): boolean {
  return seed.type === row.type && seed.name === row.name && canonicalJson(seed.content) === canonicalJson(row.content);
}

/**
 * Inserts new seed documents and updates changed ones in one transaction; unchanged ones are left
 * alone. Nothing is written when a seed file is invalid or when nothing changed. Any schema will
 * do: the runner only touches `documents`.
 */
export async function runSeeds(db: LibSQLDatabase<any>, options: { dir?: string } = {}): Promise<SeedReport> {
  const started = performance.now();
  const dir = options.dir ?? DEFAULT_SEED_DIR;
  const { files, seeds } = await readSeedDir(dir);
  const ids = seeds.map((s) => s.id);

  const existing = new Map<string, Document>();
  if (seeds.length > 0) {
    for (const row of await db.select().from(documents).where(inArray(documents.id, ids))) existing.set(row.id, row);
    await refuseNameClashes(db, seeds, ids, dir);
  }

  const byType = Object.fromEntries(DOCUMENT_TYPES.map((t) => [t, { inserted: 0, updated: 0, unchanged: 0 }])) as SeedReport['byType'];
  const inserts: SeedDocument[] = [];
  const updates: { seed: SeedDocument; row: Document }[] = [];
  for (const seed of seeds) {
    const row = existing.get(seed.id);
    if (!row) {
      inserts.push(seed);
      byType[seed.type].inserted++;
    } else if (!sameDocument(seed, row)) {
      updates.push({ seed, row });
      byType[seed.type].updated++;
    } else {
      byType[seed.type].unchanged++;
    }
  }

  const changed = inserts.length + updates.length > 0;
  if (changed) {
    const now = new Date();
    await db.transaction(async (tx) => {
      for (let i = 0; i < inserts.length; i += INSERT_CHUNK) {
        const chunk = inserts.slice(i, i + INSERT_CHUNK);
        await tx.insert(documents).values(chunk.map((s) => ({ id: s.id, type: s.type, name: s.name, content: s.content, version: 1, createdAt: now, updatedAt: now })));
      }
      for (const { seed, row } of updates) {
        // Guarded by the version we compared against: a concurrent edit rolls the whole seed back.
        const done = await tx
          .update(documents)
          .set({ type: seed.type, name: seed.name, content: seed.content, version: row.version + 1, updatedAt: now })
          .where(and(eq(documents.id, seed.id), eq(documents.version, row.version)))
          .returning({ id: documents.id });
        if (done.length !== 1) throw new Error(`Document ${seed.id} changed while seeding (version ${row.version} is gone); run the seed again.`);
      }
    });
  }
  return { files, byType, changed, durationMs: performance.now() - started };
}

/** A seed whose (type, name) belongs to another document in the database would fail the unique index mid-transaction; say so up front. */
async function refuseNameClashes(db: LibSQLDatabase<any>, seeds: SeedDocument[], ids: string[], dir: string): Promise<void> {
  const names = [...new Set(seeds.map((s) => s.name))];
  const others = await db
    .select({ id: documents.id, type: documents.type, name: documents.name })
    .from(documents)
    .where(and(inArray(documents.name, names), notInArray(documents.id, ids)));
  const taken = new Map(others.map((o) => [`${o.type}\u0000${o.name}`, o.id]));
  const problems: SeedProblem[] = [];
  const perFile = new Map<string, number>();
  for (const seed of seeds) {
    // loadSeeds keeps every element of a valid file in order, so this is the array index.
    const index = perFile.get(seed.file) ?? 0;
    perFile.set(seed.file, index + 1);
    const owner = taken.get(`${seed.type}\u0000${seed.name}`);
    if (owner === undefined) continue;
    problems.push({ file: seed.file, index, field: 'name', message: `the ${seed.type} name ${JSON.stringify(seed.name)} already belongs to document ${JSON.stringify(owner)} in the database; rename the seed or that document.` });
  }
  if (problems.length > 0) throw new SeedValidationError(problems[0]!, dir, problems.slice(1));
}
