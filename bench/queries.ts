/**
 * Phase 1: the document API's read queries, written once with drizzle's query builder and run through
 * each driver on the same data, interleaved per iteration (rotating the order) so drift hits all alike.
 */
import Database from 'better-sqlite3';
import { and, count, desc, eq, gte, lt, sql } from 'drizzle-orm';
import { documents } from '../schema/documents.ts';
import { EPOCH_MS, TYPES, WORDS, mulberry32, type DocType } from './dataset.ts';
import { sleep, type AnyDb, type Driver, type DriverName } from './drivers.ts';
import { percentileSurelyAbove, summarize, type Summary } from './stats.ts';

export const P99_BUDGET_MS = 200;

export interface Params {
  id: string;
  type: DocType;
  page: number;
  prefix: string;
  from: Date;
  to: Date;
  maxTokens: number;
  uses: number;
}

type Built = PromiseLike<unknown> & { toSQL(): { sql: string; params: unknown[] } };

export interface QueryDef {
  name: string;
  what: string;
  /** Counts toward the p99 budget (ours only). */
  gated: boolean;
  /** Cap on iterations, for deliberately slow probes. */
  maxIterations?: number;
  build(db: AnyDb, p: Params): Built;
}

const d = documents;

export const QUERIES: readonly QueryDef[] = [
  { name: 'getById', what: 'primary key lookup', gated: true, build: (db, p) => db.select().from(d).where(eq(d.id, p.id)).limit(1) },
  {
    name: 'listByType',
    what: 'type = ? ORDER BY updated_at DESC LIMIT 50 OFFSET page*50 (pages 0-9)',
    gated: true,
    build: (db, p) => db.select().from(d).where(eq(d.type, p.type)).orderBy(desc(d.updatedAt)).limit(50).offset(p.page * 50),
  },
  {
    name: 'namePrefix',
    what: "name >= p AND name < p || '\\uffff' ORDER BY name LIMIT 50",
    gated: true,
    build: (db, p) => db.select().from(d).where(and(gte(d.name, p.prefix), lt(d.name, `${p.prefix}\uffff`))).orderBy(d.name).limit(50),
  },
  {
    name: 'timeRange',
    what: 'updated_at in a 6 h window ORDER BY updated_at LIMIT 100',
    gated: true,
    build: (db, p) => db.select().from(d).where(and(gte(d.updatedAt, p.from), lt(d.updatedAt, p.to))).orderBy(d.updatedAt).limit(100),
  },
  {
    name: 'jsonFilter',
    what: "type = ? AND json_extract(content, '$.settings.maxTokens') = ? (1 in 64) ORDER BY updated_at DESC LIMIT 50",
    gated: true,
    build: (db, p) =>
      db.select().from(d).where(and(eq(d.type, p.type), sql`json_extract(${d.content}, '$.settings.maxTokens') = ${p.maxTokens}`)).orderBy(desc(d.updatedAt)).limit(50),
  },
  { name: 'countByType', what: 'count(*) WHERE type = ?', gated: true, build: (db, p) => db.select({ n: count() }).from(d).where(eq(d.type, p.type)) },
  {
    name: 'jsonScan',
    what: "probe, not gated: count(*) WHERE type = ? AND json_extract(content, '$.stats.uses') < ? (reads every row of the type)",
    gated: false,
    maxIterations: 25,
    build: (db, p) => db.select({ n: count() }).from(d).where(and(eq(d.type, p.type), sql`json_extract(${d.content}, '$.stats.uses') < ${p.uses}`)),
  },
];

/** Deterministic parameters for iteration i; `ids` are real ids sampled from the table. */
export function makeParams(ids: readonly string[], rows: number, n: number, seed = 99): Params[] {
  const rand = mulberry32(seed);
  const int = (k: number): number => Math.floor(rand() * k);
  const spanMs = rows * 30_000 + 90 * 86_400_000;
  return Array.from({ length: n }, () => {
    const from = EPOCH_MS + int(spanMs);
    const second = WORDS[int(WORDS.length)]!;
    return {
      id: ids[int(ids.length)]!,
      type: TYPES[int(TYPES.length)]!,
      page: int(10),
      prefix: `${WORDS[int(WORDS.length)]!} ${second.slice(0, 1 + int(3))}`,
      from: new Date(from),
      to: new Date(from + 6 * 3_600_000),
      maxTokens: 64 * (1 + int(64)),
      uses: int(100_000),
    };
  });
}

export interface QueryResult {
  query: string;
  what: string;
  gated: boolean;
  driver: DriverName;
  summary: Summary;
  /** Stopped as soon as the p99 could no longer come in under budget. */
  stoppedEarly: boolean;
  planned: number;
}

export interface QueryOptions {
  iterations: number;
  warmup: number;
  artificialDelayMs: number;
}

export async function runQueries(drivers: readonly Driver[], params: readonly Params[], o: QueryOptions, log: (line: string) => void): Promise<QueryResult[]> {
  const results: QueryResult[] = [];
  for (const q of QUERIES) {
    const planned = Math.min(o.iterations, q.maxIterations ?? Infinity, params.length);
    for (let i = 0; i < Math.min(o.warmup, planned); i++) for (const drv of drivers) await q.build(drv.db, params[i]!);
    const samples = new Map<DriverName, number[]>(drivers.map((drv) => [drv.name, []]));
    let stoppedEarly = false;
    for (let i = 0; i < planned && !stoppedEarly; i++) {
      for (let k = 0; k < drivers.length; k++) {
        const drv = drivers[(i + k) % drivers.length]!;
        const t0 = performance.now();
        await q.build(drv.db, params[i]!);
        if (drv.name === 'ours' && o.artificialDelayMs > 0) await sleep(o.artificialDelayMs);
        samples.get(drv.name)!.push(performance.now() - t0);
      }
      stoppedEarly = q.gated && i + 1 < planned && percentileSurelyAbove(samples.get('ours') ?? [], planned, 99, P99_BUDGET_MS);
    }
    for (const drv of drivers) {
      results.push({ query: q.name, what: q.what, gated: q.gated, driver: drv.name, summary: summarize(samples.get(drv.name)!), stoppedEarly, planned });
    }
    const ours = results.at(-drivers.length)!.summary;
    log(`  ${q.name.padEnd(12)} ours p50 ${ours.p50.toFixed(3)} p99 ${ours.p99.toFixed(3)} ms (n=${ours.n}${stoppedEarly ? `, stopped early: p99 over ${P99_BUDGET_MS} ms` : ''})`);
  }
  return results;
}

/** EXPLAIN QUERY PLAN of each query as SQLite plans it on `path` (read-only). */
export function explainPlans(path: string, db: AnyDb, p: Params): Record<string, string[]> {
  const sqlite = new Database(path, { readonly: true });
  try {
    const plans: Record<string, string[]> = {};
    for (const q of QUERIES) {
      const { sql: text, params } = q.build(db, p).toSQL();
      const rows = sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params.map((v) => (v instanceof Date ? v.getTime() : v))) as { detail: string }[];
      plans[q.name] = rows.map((r) => r.detail);
    }
    return plans;
  } finally {
    sqlite.close();
  }
}
