/**
 * Phase 1: the queries the document API really runs, built by app/documents-query.ts's own builders
 * (byIdQuery, listQuery), so the gate measures the exact SQL the routes send: every filter the list route
 * accepts, on its first page, on a deep page and on the last page (the latter two through keyset cursors
 * taken from the real page before them), and the lookup by id. Each query runs through each driver on
 * the same data, interleaved per iteration (rotating the order) so drift hits all alike.
 */
import Database from 'better-sqlite3';
import { and, asc, count, desc, eq, gt, gte, lt, type SQL } from 'drizzle-orm';
import type { AppDatabase } from '../app/database.ts';
import { byIdQuery, cursorAfter, decodeCursor, encodeCursor, listQuery, ordersByName, prefixUpperBound, type Cursor, type ListFilters } from '../app/documents-query.ts';
import { documents } from '../schema/documents.ts';
import { EPOCH_MS, TYPES, WORDS, mulberry32 } from './dataset.ts';
import { sleep, type AnyDb, type Driver, type DriverName } from './drivers.ts';
import { percentileSurelyAbove, summarize, type Summary } from './stats.ts';

export const P99_BUDGET_MS = 200;
/**
 * The API's default page size (LIMIT_DEFAULT in app/routes/documents.ts; not imported, because that
 * module loads the library's source beside the build the benchmark measures).
 */
export const PAGE_LIMIT = 50;
/** The deep page's number (the middle page when a query has fewer pages). */
export const DEEP_PAGE = 50;
/** Filter sets per list query; iteration i runs set i mod VARIANTS. */
const VARIANTS = 8;

/** Every filter combination the list route is measured with (the route accepts any combination of them). */
export const LIST_FILTERS = ['unfiltered', 'type', 'namePrefix', 'type+namePrefix', 'updatedAfter', 'updatedBefore'] as const;
export type ListFilterKind = (typeof LIST_FILTERS)[number];
export const PAGE_POSITIONS = ['page 1', 'deep page', 'last page'] as const;
export type PagePosition = (typeof PAGE_POSITIONS)[number];

/** The list route's filters without paging. */
export type Filters = Omit<ListFilters, 'limit' | 'cursor'>;

export const listQueryName = (kind: ListFilterKind, position: PagePosition): string => `list ${kind} ${position}`;

/** The names of the gated queries: what a complete query gate measured, per size. */
export const GATED_QUERIES: readonly string[] = ['getById', ...LIST_FILTERS.flatMap((kind) => PAGE_POSITIONS.map((position) => listQueryName(kind, position)))];

/** Random filters of one kind over the bench dataset of `rows` rows (see bench/dataset.ts for its names and timestamps). */
export function randomFilters(kind: ListFilterKind, rows: number, rand: () => number): Filters {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const at = (): Date => new Date(EPOCH_MS + Math.floor(rand() * (rows * 30_000 + 90 * 86_400_000)));
  switch (kind) {
    case 'unfiltered':
      return {};
    case 'type':
      return { type: pick(TYPES) };
    case 'namePrefix':
      // Names are "<word> <word> <n>": one word matches about rows/48 names, enough for several pages.
      return { namePrefix: pick(WORDS) };
    case 'type+namePrefix':
      return { type: pick(TYPES), namePrefix: pick(WORDS) };
    case 'updatedAfter':
      return { updatedAfter: at() };
    case 'updatedBefore':
      return { updatedBefore: at() };
  }
}

type Built = PromiseLike<unknown> & { toSQL(): { sql: string; params: unknown[] } };

export interface PreparedQuery {
  name: string;
  what: string;
  /** Counts toward the p99 budget (ours only). */
  gated: boolean;
  /** Iteration i's query on `db`. */
  build(db: AnyDb, i: number): Built;
}

/** The app's builders are typed for the library's db; the plain drivers build the same SQL. */
const asApp = (db: AnyDb): AppDatabase => db as unknown as AppDatabase;

interface Page {
  filters: Filters;
  cursor?: Cursor;
  pageNo: number;
  pages: number;
}

const describeFilters = (f: Filters): string =>
  Object.entries(f).map(([k, v]) => `${k}=${v instanceof Date ? v.toISOString() : String(v)}`).join('&') || '(none)';

/** Setup only (never timed): listQuery's filters as a WHERE, to count matches and find the last page's boundary row from the far end. */
function filtersWhere(f: Filters): SQL | undefined {
  const d = documents;
  const upper = f.namePrefix ? prefixUpperBound(f.namePrefix) : undefined;
  return and(
    f.type ? eq(d.type, f.type) : undefined,
    f.namePrefix ? gte(d.name, f.namePrefix) : undefined,
    upper !== undefined ? lt(d.name, upper) : undefined,
    f.updatedAfter ? gt(d.updatedAt, f.updatedAfter) : undefined,
    f.updatedBefore ? lt(d.updatedAt, f.updatedBefore) : undefined,
  );
}

async function matchingRows(db: AnyDb, f: Filters): Promise<number> {
  const [row] = await db.select({ n: count() }).from(documents).where(filtersWhere(f));
  return row!.n;
}

type Row = { updatedAt: Date; name: string; id: string };
const ids = (rows: readonly { id: string }[]): string => rows.map((r) => r.id).join();

/**
 * The cursor that opens page `pageNo` (>= 2) of `n` matching rows: the one the API returns with page
 * pageNo - 1, i.e. after that page's last row. The page it opens through listQuery is checked (the same
 * rows as OFFSET gives; the last page holds exactly the rows left over), so a pagination bug in the app
 * stops the benchmark instead of timing the wrong rows.
 */
async function cursorForPage(db: AnyDb, f: Filters, pageNo: number, n: number): Promise<Cursor> {
  const before = (pageNo - 1) * PAGE_LIMIT;
  const byName = ordersByName(f);
  const lastPage = pageNo === Math.ceil(n / PAGE_LIMIT);
  let last: Row | undefined;
  if (lastPage) {
    // Position before - 1 counted from the far end, in the reverse order: no walk over every earlier row.
    const d = documents;
    const reverse = byName ? [desc(d.name), desc(d.id)] : [asc(d.updatedAt), asc(d.id)];
    [last] = await db.select({ updatedAt: d.updatedAt, name: d.name, id: d.id }).from(d).where(filtersWhere(f)).orderBy(...reverse).limit(1).offset(n - before);
  } else {
    [last] = (await listQuery(asApp(db), { ...f, limit: 0 }).offset(before - 1)) as Row[];
  }
  if (!last) throw new Error(`bench: filters ${describeFilters(f)} have no row at position ${before - 1}`);
  const cursor = decodeCursor(encodeCursor(cursorAfter(last, byName)))!;
  const page = (await listQuery(asApp(db), { ...f, limit: PAGE_LIMIT, cursor })) as Row[];
  const expected = lastPage ? undefined : ((await listQuery(asApp(db), { ...f, limit: PAGE_LIMIT }).offset(before)) as Row[]);
  const ok = expected ? ids(page) === ids(expected) : page.length === n - before;
  if (!ok) {
    throw new Error(`bench: page ${pageNo} of listQuery(${describeFilters(f)}) through its cursor is not the page OFFSET gives (${page.length} rows, ${n} matching): the keyset pagination skips or repeats rows`);
  }
  return cursor;
}

/**
 * The gated queries with their inputs, taken from the data through `db` (any driver on the same file):
 * for each filter kind, VARIANTS random filter sets with at least two pages, and the cursors of their
 * deep and last pages.
 */
export async function prepareQueries(db: AnyDb, ids: readonly string[], rows: number, seed = 99): Promise<PreparedQuery[]> {
  const rand = mulberry32(seed);
  const out: PreparedQuery[] = [
    { name: 'getById', what: 'byIdQuery: primary key lookup (GET /api/documents/:id)', gated: true, build: (d, i) => byIdQuery(asApp(d), ids[i % ids.length]!) },
  ];
  for (const kind of LIST_FILTERS) {
    const sets: { filters: Filters; rows: number; pages: number }[] = [];
    const seen = new Set<string>();
    for (let attempt = 0; attempt < 20 * VARIANTS && sets.length < VARIANTS; attempt++) {
      const filters = randomFilters(kind, rows, rand);
      const key = describeFilters(filters);
      if (seen.has(key)) continue;
      seen.add(key);
      const n = await matchingRows(db, filters);
      if (n > PAGE_LIMIT) sets.push({ filters, rows: n, pages: Math.ceil(n / PAGE_LIMIT) });
    }
    const order = ordersByName(sets[0]?.filters ?? {}) ? '(name, id) ascending' : '(updatedAt, id) descending';
    for (const position of PAGE_POSITIONS) {
      const pages: Page[] = [];
      for (const { filters, rows: n, pages: count } of sets) {
        const pageNo = position === 'page 1' ? 1 : position === 'last page' ? count : Math.min(DEEP_PAGE, Math.max(2, Math.floor(count / 2)));
        pages.push({ filters, pageNo, pages: count, cursor: pageNo === 1 ? undefined : await cursorForPage(db, filters, pageNo, n) });
      }
      const range = (xs: number[]): string => (Math.min(...xs) === Math.max(...xs) ? String(xs[0]) : `${Math.min(...xs)}–${Math.max(...xs)}`);
      out.push({
        name: listQueryName(kind, position),
        what: pages.length === 0
          ? `listQuery(${kind}): no filter set with two pages found`
          : `listQuery(${kind}), ${order}, limit ${PAGE_LIMIT}: page ${range(pages.map((p) => p.pageNo))} of ${range(pages.map((p) => p.pages))}${position === 'page 1' ? '' : ' (keyset cursor)'}, ${pages.length} filter set(s)`,
        gated: true,
        build: (d, i) => {
          const p = pages[i % pages.length];
          if (!p) throw new Error(`bench: no input for ${listQueryName(kind, position)}`);
          return listQuery(asApp(d), { ...p.filters, limit: PAGE_LIMIT, cursor: p.cursor });
        },
      });
    }
  }
  return out;
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

export async function runQueries(drivers: readonly Driver[], queries: readonly PreparedQuery[], o: QueryOptions, log: (line: string) => void): Promise<QueryResult[]> {
  const results: QueryResult[] = [];
  for (const q of queries) {
    const planned = o.iterations;
    const samples = new Map<DriverName, number[]>(drivers.map((drv) => [drv.name, []]));
    let stoppedEarly = false;
    try {
      for (let i = 0; i < Math.min(o.warmup, planned); i++) for (const drv of drivers) await q.build(drv.db, i);
      for (let i = 0; i < planned && !stoppedEarly; i++) {
        for (let k = 0; k < drivers.length; k++) {
          const drv = drivers[(i + k) % drivers.length]!;
          const t0 = performance.now();
          await q.build(drv.db, i);
          if (drv.name === 'ours' && o.artificialDelayMs > 0) await sleep(o.artificialDelayMs);
          samples.get(drv.name)!.push(performance.now() - t0);
        }
        stoppedEarly = q.gated && i + 1 < planned && percentileSurelyAbove(samples.get('ours') ?? [], planned, 99, P99_BUDGET_MS);
      }
    } catch (error) {
      // A query that cannot run is left out of the results: the gate then names it as missing.
      log(`  ${q.name}: FAILED to run: ${(error as Error).message}`);
      continue;
    }
    for (const drv of drivers) {
      results.push({ query: q.name, what: q.what, gated: q.gated, driver: drv.name, summary: summarize(samples.get(drv.name)!), stoppedEarly, planned });
    }
    const ours = results.at(-drivers.length)!.summary;
    log(`  ${q.name.padEnd(30)} ours p50 ${ours.p50.toFixed(3)} p99 ${ours.p99.toFixed(3)} ms (n=${ours.n}${stoppedEarly ? `, stopped early: p99 over ${P99_BUDGET_MS} ms` : ''})`);
  }
  return results;
}

/** EXPLAIN QUERY PLAN of each query (its first input) as SQLite plans it on `path` (read-only). */
export function explainPlans(path: string, db: AnyDb, queries: readonly PreparedQuery[]): Record<string, string[]> {
  const sqlite = new Database(path, { readonly: true });
  try {
    const plans: Record<string, string[]> = {};
    for (const q of queries) {
      try {
        const { sql: text, params } = q.build(db, 0).toSQL();
        const rows = sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params.map((v) => (v instanceof Date ? v.getTime() : v))) as { detail: string }[];
        plans[q.name] = rows.map((r) => r.detail);
      } catch (error) {
        plans[q.name] = [`(no plan: ${(error as Error).message})`];
      }
    }
    return plans;
  } finally {
    sqlite.close();
  }
}

/** Plan lines that read the whole documents table row by row (a SCAN without an index). */
export function fullTableScans(plans: Record<string, string[]>): string[] {
  return Object.entries(plans).flatMap(([q, lines]) => lines.filter((l) => /^SCAN documents\b(?!.*\bUSING\b.*\bINDEX\b)/.test(l)).map((l) => `${q}: ${l}`));
}
