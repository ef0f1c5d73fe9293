/**
 * Turns a benchmark run into pass/fail checks, Markdown tables and the SVG chart.
 */
import { DURABLE_CALL_P50_TARGET_MS, DURABLE_CALL_P99_TARGET_MS, DURABLE_SLACK_MS, med, RAW_CONCURRENCY, TRANSFER_RATIO_TARGET, type AzureResult, type DurabilityResult, type Timed } from './azure.ts';
import { coldStartMedian, type ColdStart, type LitestreamResult } from './litestream.ts';
import { MEMORY_TARGET_BYTES } from './incremental.ts';
import { API_P99_BUDGET_MS, API_PHASES, MAX_WALK_PAGES, API_READ_ROUTES, API_WRITE_ROUTES, type ApiResult } from './api.ts';
import { fullTableScans, GATED_QUERIES, P99_BUDGET_MS, type QueryResult } from './queries.ts';
import { fmtBytes, fmtMs, fmtRatio, markdownTable, median, passFail, ratio, svgChart, type ChartGroup } from './stats.ts';
import { incrementalChecks, renderIncremental, type IncrementalResult } from './incremental.ts';
import { MAX_WRITE_GAP_MS, SNAPSHOT_P99_FACTOR, WRITE_OVERHEAD_TARGET, type LoadStats, type SnapshotLoadResult, type WriteResult } from './writes.ts';

export interface SizeResult {
  label: string;
  rows: number;
  dataset: { bytes: number; buildMs: number; cached: boolean };
  queries?: QueryResult[];
  plans?: Record<string, string[]>;
  writes?: WriteResult[];
  /** ours' PRAGMA synchronous (the plain baseline of the write phase runs at the same level). */
  synchronous?: string;
  snapshot?: SnapshotLoadResult;
  azure?: AzureResult;
  litestream?: LitestreamResult | { error: string };
  /** Full vs incremental snapshots vs Litestream after a 1% update (bench/incremental.ts). */
  incremental?: IncrementalResult | { error: string };
}

export interface Check {
  name: string;
  size: string;
  value: string;
  target: string;
  pass: boolean;
  /** A failing gating check makes the run exit non-zero. */
  gating: boolean;
}

export interface RunResult {
  meta: {
    date: string;
    node: string;
    platform: string;
    cpus: number;
    args: Record<string, unknown>;
    elapsedMs: number;
    library: { build: 'dist' | 'source'; srcHash: string; commit: string; srcUncommitted: boolean };
    load: Record<'start' | 'end', { loadavg1m: number; cpuPressureAvg60: string }>;
  };
  sizes: SizeResult[];
  /** One per size (older results: a single object, 100k). */
  durability?: Array<DurabilityResult & { size: string }> | (DurabilityResult & { size: string });
  api?: ApiResult & { size: string };
  checks: Check[];
}

const get = (rs: readonly QueryResult[], query: string, driver: string) => rs.find((r) => r.query === query && r.driver === driver);

function loadChecks(size: string, s: SnapshotLoadResult): Check[] {
  const out: Check[] = [];
  for (const kind of ['reads', 'writes'] as const) {
    const r = ratio(s.during[kind].p99, s.idle[kind].p99);
    out.push({ name: `${kind} p99 during snapshot / idle (${s.store})`, size, value: `${fmtMs(s.during[kind].p99)} / ${fmtMs(s.idle[kind].p99)} ms = ${fmtRatio(r)}`, target: `≤ ${SNAPSHOT_P99_FACTOR}×`, pass: r <= SNAPSHOT_P99_FACTOR, gating: false });
  }
  out.push({ name: `reads p99 during snapshot (${s.store})`, size, value: `${fmtMs(s.during.reads.p99)} ms`, target: `≤ ${P99_BUDGET_MS} ms`, pass: s.during.reads.p99 <= P99_BUDGET_MS, gating: true });
  out.push({ name: `longest gap between writes during snapshot (${s.store})`, size, value: `${fmtMs(s.during.maxWriteGapMs)} ms`, target: `< ${MAX_WRITE_GAP_MS} ms`, pass: s.during.maxWriteGapMs < MAX_WRITE_GAP_MS, gating: false });
  return out;
}

/** Cold start of ours ≤ COLD_START_TARGET × Litestream's restore + open (stretch COLD_START_STRETCH). */
export const COLD_START_TARGET = 1.0;
export const COLD_START_STRETCH = 0.8;

function coldStartChecks(size: string, c: ColdStart): Check[] {
  const ours = coldStartMedian(c.ours);
  const ls = coldStartMedian(c.litestream);
  const r = ratio(ours, ls);
  const value = `${fmtMs(ours)} / ${fmtMs(ls)} ms = ${fmtRatio(r)}`;
  const hydrate = ratio(coldStartMedian(c.ours, 'hydrateMs'), coldStartMedian(c.litestream, 'hydrateMs'));
  const out: Check[] = [
    { name: `empty disk → first query in a fresh process, ours / Litestream restore + open (medians of ${c.reps})`, size, value, target: `≤ ${COLD_START_TARGET.toFixed(1)}×`, pass: r <= COLD_START_TARGET, gating: false },
    { name: 'empty disk → first query, stretch', size, value: fmtRatio(r), target: `≤ ${COLD_START_STRETCH}×`, pass: r <= COLD_START_STRETCH, gating: false },
    { name: 'hydrate only: drizzle() / `litestream restore` (informational)', size, value: `${fmtMs(coldStartMedian(c.ours, 'hydrateMs'))} / ${fmtMs(coldStartMedian(c.litestream, 'hydrateMs'))} ms = ${fmtRatio(hydrate)}`, target: `≤ ${COLD_START_TARGET.toFixed(1)}×`, pass: hydrate <= COLD_START_TARGET, gating: false },
  ];
  if (c.sdkImport?.length) {
    // What start-up no longer waits for (it loads after the first query): the Azure SDK's load.
    const sdk = coldStartMedian(c.sdkImport, 'importMs');
    out.push({ name: 'off the start-up path: loading @azure/storage-blob (CommonJS, fresh process) / Litestream restore + open (informational)', size, value: `${fmtMs(sdk)} / ${fmtMs(ls)} ms = ${fmtRatio(ratio(sdk, ls))} of Litestream's whole cold start`, target: '–', pass: true, gating: false });
  }
  const peaks = c.ours.map((x) => x.peakRssAboveIdle).filter((x): x is number => typeof x === 'number');
  if (peaks.length) {
    const worst = Math.max(...peaks);
    out.push({ name: `peak RSS above idle during restore (fresh process, worst of ${peaks.length})`, size, value: fmtBytes(worst), target: `< ${fmtBytes(MEMORY_TARGET_BYTES)}`, pass: worst < MEMORY_TARGET_BYTES, gating: false });
  }
  return out;
}

export function computeChecks(run: Omit<RunResult, 'checks'>): Check[] {
  const checks: Check[] = [];
  for (const s of run.sizes) {
    for (const q of s.queries ?? []) {
      if (q.driver !== 'ours' || !q.gated) continue;
      checks.push({ name: queryCheckName(q.query), size: s.label, value: `${fmtMs(q.summary.p99)} ms${q.stoppedEarly ? ` (stopped after ${q.summary.n}/${q.planned})` : ''}`, target: `≤ ${P99_BUDGET_MS} ms`, pass: q.summary.p99 <= P99_BUDGET_MS, gating: true });
    }
    if (s.plans) {
      const scans = fullTableScans(s.plans);
      checks.push({ name: 'query plans: no full SCAN of documents (an index serves every query)', size: s.label, value: scans.length ? scans.join('; ') : 'none', target: 'none', pass: scans.length === 0, gating: false });
    }
    for (const op of ['insert', 'update'] as const) {
      const ours = s.writes?.find((w) => w.op === op && w.driver === 'ours');
      const plain = s.writes?.find((w) => w.op === op && w.driver === 'drizzle-orm/libsql');
      if (!ours || !plain) continue;
      const r = ratio(ours.summary.p50, plain.summary.p50);
      checks.push({ name: `${op} p50 overhead ours / drizzle-orm/libsql`, size: s.label, value: fmtRatio(r), target: `≤ ${WRITE_OVERHEAD_TARGET}×`, pass: r <= WRITE_OVERHEAD_TARGET, gating: false });
    }
    if (s.snapshot) checks.push(...loadChecks(s.label, s.snapshot));
    if (s.azure) {
      const a = s.azure;
      const hydrate = median(a.restores.map((r) => r.hydrateMs));
      const same = a.raw.sameBlobs;
      const down = ratio(hydrate, med(same.downloads));
      checks.push({ name: `restore (hydrate) / raw parallel download of the same ${same.blobs} blobs (${same.concurrency} at a time)`, size: s.label, value: `${fmtMs(hydrate)} / ${fmtMs(med(same.downloads))} ms = ${fmtRatio(down)}`, target: `≤ ${TRANSFER_RATIO_TARGET}×`, pass: down <= TRANSFER_RATIO_TARGET, gating: false });
      const first = a.snapshots[0];
      if (first) {
        const up = ratio(first.wallMs, med(same.uploads));
        checks.push({ name: `first snapshot (flush, every chunk) / raw parallel upload of the same ${same.blobs} blobs (informational)`, size: s.label, value: `${fmtMs(first.wallMs)} / ${fmtMs(med(same.uploads))} ms = ${fmtRatio(up)}`, target: `≤ ${TRANSFER_RATIO_TARGET}×`, pass: up <= TRANSFER_RATIO_TARGET, gating: false });
      }
      const dbDown = ratio(hydrate, med(a.raw.dbFile.downloads));
      checks.push({ name: 'restore (hydrate) / raw downloadToFile of the plain db file (informational)', size: s.label, value: fmtRatio(dbDown), target: `≤ ${TRANSFER_RATIO_TARGET}×`, pass: dbDown <= TRANSFER_RATIO_TARGET, gating: false });
      if (a.underLoad) checks.push(...loadChecks(s.label, a.underLoad));
    }
    if (s.litestream && 'version' in s.litestream && s.litestream.coldStart) checks.push(...coldStartChecks(s.label, s.litestream.coldStart));
    if (s.incremental && !('error' in s.incremental)) checks.push(...incrementalChecks(s.label, s.incremental));
  }
  if (run.api) {
    const n = run.api.snapshotsDuringWrites;
    checks.push({ name: 'API snapshots completed during the write phase', size: run.api.size, value: String(n), target: '≥ 1', pass: n >= 1, gating: false });
  }
  for (const r of [...(run.api?.routes ?? []), ...(run.api?.writes ?? [])]) {
    const value = `${fmtMs(r.latency.p99)} ms, ${r.errors} error(s) in ${r.requests}`;
    checks.push({ name: apiCheckName(r.route, r.phase), size: run.api!.size, value, target: `≤ ${API_P99_BUDGET_MS} ms, no errors`, pass: r.latency.p99 <= API_P99_BUDGET_MS && r.errors === 0, gating: true });
  }
  for (const d of durabilities(run)) {
    const worst = Math.max(...d.latenciesMs);
    // Against Litestream's last commit -> WAL segments listed in the same run (its 1%-recent burst at this size), when the run has it.
    const ls = run.sizes.find((s) => s.label === d.size)?.incremental;
    const lsMs = ls && !('error' in ls) && ls.litestream && !('error' in ls.litestream) ? (ls.litestream.updates.find((u) => u.workload === 'recent')?.commitToUploadedMs ?? NaN) : NaN;
    const target = Number.isFinite(lsMs) ? lsMs : d.debounceMs + DURABLE_SLACK_MS;
    checks.push({ name: `last commit of a ${d.burst}-update burst -> durable (default settings, debounceMs ${d.debounceMs})`, size: d.size, value: `${fmtMs(worst)} ms (worst of ${d.latenciesMs.length})`, target: Number.isFinite(lsMs) ? `≤ ${fmtMs(target)} ms (Litestream, same run)` : `≤ ${fmtMs(target)} ms`, pass: worst <= target, gating: false });
    const c = d.durableCalls;
    if (c) {
      const name = (what: string) => `durable() after each of ${c.writesPerSecond} writes/s on Azurite: ${what}`;
      checks.push({ name: name('p50 wait'), size: d.size, value: `${fmtMs(c.waitMs.p50)} ms`, target: `≤ ${DURABLE_CALL_P50_TARGET_MS} ms`, pass: c.waitMs.p50 <= DURABLE_CALL_P50_TARGET_MS, gating: false });
      checks.push({ name: name('p99 wait'), size: d.size, value: `${fmtMs(c.waitMs.p99)} ms`, target: `≤ ${DURABLE_CALL_P99_TARGET_MS} ms`, pass: c.waitMs.p99 <= DURABLE_CALL_P99_TARGET_MS, gating: false });
      checks.push({ name: name('uploads / writes (group commit)'), size: d.size, value: `${c.uploads} / ${c.writes}`, target: '< 1 upload per write', pass: c.uploads > 0 && c.uploads < c.writes, gating: false });
    }
  }
  checks.push(...gateCoverage(run, checks));
  return checks;
}

/** The durability phase's results, one per size (older results hold one). */
export function durabilities(run: Pick<RunResult, 'durability'>): Array<DurabilityResult & { size: string }> {
  const d = run.durability;
  return d === undefined ? [] : Array.isArray(d) ? d : [d];
}

export const queryCheckName = (query: string): string => `query ${query} p99 (ours)`;
export const apiCheckName = (route: string, phase: string): string => `API ${route} p99 (${phase})`;

const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((v): v is string => typeof v === 'string') : []);

/**
 * One gating check per gated phase the run was asked for (per size for the queries): it fails, naming
 * what is missing, unless every check a complete phase produces is among `checks`. So a phase that
 * measured nothing, or skipped a query or a route, cannot pass the gate by having nothing to fail.
 */
export function gateCoverage(run: Pick<RunResult, 'meta' | 'api'>, checks: readonly Check[]): Check[] {
  const only = strings(run.meta.args.only);
  const sizes = strings(run.meta.args.sizes);
  const out: Check[] = [];
  const coverage = (name: string, size: string, expected: readonly string[]): Check => {
    const present = new Set(checks.filter((c) => c.gating && c.size === size).map((c) => c.name));
    const missing = expected.filter((e) => !present.has(e));
    const ran = `${expected.length - missing.length} of ${expected.length} ran`;
    return { name, size, value: missing.length ? `${ran}; missing: ${missing.join(', ')}` : ran, target: `${expected.length} of ${expected.length}`, pass: expected.length > 0 && missing.length === 0, gating: true };
  };
  if (only.includes('queries')) {
    if (sizes.length === 0) out.push(coverage('query gate: every gated query ran', '–', GATED_QUERIES.map(queryCheckName)));
    for (const size of sizes) out.push(coverage('query gate: every gated query ran', size, GATED_QUERIES.map(queryCheckName)));
  }
  if (only.includes('api')) {
    const size = run.api?.size ?? (sizes.includes('100k') ? '100k' : (sizes.at(-1) ?? '–'));
    const expected = [...API_PHASES.flatMap((phase) => API_READ_ROUTES.map((route) => apiCheckName(route, phase))), ...API_WRITE_ROUTES.map((route) => apiCheckName(route, 'with writes + snapshots'))];
    out.push(coverage('API gate: every route ran', size, expected));
  }
  return out;
}

const sum = (s: { p50: number; p95: number; p99: number; max: number }) => [fmtMs(s.p50), fmtMs(s.p95), fmtMs(s.p99), fmtMs(s.max)];

function queryTable(sizes: readonly SizeResult[]): string {
  const rows: string[][] = [];
  for (const s of sizes) {
    for (const r of s.queries ?? []) {
      const base = get(s.queries!, r.query, 'drizzle-orm/libsql')!.summary;
      rows.push([r.query + (r.gated ? '' : ' (probe)'), s.label, r.driver, String(r.summary.n) + (r.stoppedEarly ? '*' : ''), ...sum(r.summary), fmtRatio(ratio(r.summary.p50, base.p50)), fmtRatio(ratio(r.summary.p99, base.p99))]);
    }
  }
  return markdownTable(['query', 'size', 'driver', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'p50 ×libsql', 'p99 ×libsql'], rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r']);
}

function writeTable(sizes: readonly SizeResult[]): string {
  const rows = sizes.flatMap((s) => (s.writes ?? []).map((w) => {
    const plain = s.writes!.find((x) => x.op === w.op && x.driver === 'drizzle-orm/libsql')!.summary;
    return [w.op, s.label, w.driver, String(w.summary.n), ...sum(w.summary), fmtMs(w.summary.mean), fmtRatio(ratio(w.summary.p50, plain.p50)), fmtRatio(ratio(w.summary.mean, plain.mean))];
  }));
  return markdownTable(['op', 'size', 'driver', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'mean ms', 'p50 ×plain', 'mean ×plain'], rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']);
}

function loadTable(items: readonly { size: string; s: SnapshotLoadResult }[]): string {
  const rows: string[][] = [];
  for (const { size, s } of items) {
    const snap = s.flushes.map((f) => fmtMs(f.durationMs)).join(', ');
    for (const [label, l] of [['idle', s.idle], ['during snapshot', s.during]] as [string, LoadStats][]) {
      rows.push([size, s.store, label, `${l.reads.n} / ${l.writes.n}`, `${fmtMs(l.reads.p50)} / ${fmtMs(l.reads.p99)} / ${fmtMs(l.reads.max)}`, `${fmtMs(l.writes.p50)} / ${fmtMs(l.writes.p99)} / ${fmtMs(l.writes.max)}`, fmtMs(l.maxWriteGapMs), `${fmtMs(l.loopDelayP99Ms)} / ${fmtMs(l.loopDelayMaxMs)}`, label === 'idle' ? '' : snap]);
    }
  }
  return markdownTable(['size', 'store', 'phase', 'reads / writes n', 'read p50 / p99 / max ms', 'write p50 / p99 / max ms', 'longest write gap ms', 'event loop delay p99 / max ms', 'snapshot durations ms'], rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']);
}

function transferTable(sizes: readonly SizeResult[]): string {
  const rows: string[][] = [];
  for (const s of sizes) {
    const a = s.azure;
    if (!a) continue;
    const ls = s.litestream && 'version' in s.litestream ? s.litestream : undefined;
    const na = s.litestream && 'error' in s.litestream ? 'n/a (see below)' : '–';
    const same = a.raw.sameBlobs, db = a.raw.dbFile;
    const hydrate = median(a.restores.map((r) => r.hydrateMs));
    const first = a.snapshots[0]!;
    const cell = (ours: number, raw: { uploads: Timed[]; downloads: Timed[] }, dir: 'uploads' | 'downloads', key: keyof Timed = 'wallMs') => `${fmtMs(med(raw[dir], key))} (${fmtRatio(ratio(ours, med(raw[dir], key)))})`;
    rows.push(
      [s.label, 'bytes moved', `${fmtBytes(first.compressedBytes)} lz4 of ${fmtBytes(a.dbBytes)} (first snapshot)`, `${fmtBytes(same.bytes)} in ${same.blobs} blobs`, fmtBytes(db.bytes), ls ? `${fmtBytes(ls.bytesUploaded)} in ${ls.blobs} blobs` : na],
      [s.label, 'first snapshot (every chunk) / upload wall ms', fmtMs(first.wallMs), cell(first.wallMs, same, 'uploads'), cell(first.wallMs, db, 'uploads'), ls ? `${fmtMs(ls.snapshotUploadMs)} (start → snapshot listed)` : na],
      [s.label, 'first snapshot / upload CPU ms', fmtMs(first.cpuMs), cell(first.cpuMs, same, 'uploads', 'cpuMs'), cell(first.cpuMs, db, 'uploads', 'cpuMs'), ls ? `${fmtMs(ls.replicateCpuMs)} (replicate, whole run)` : na],
      [s.label, 'later snapshots (one row changed) wall ms', a.snapshots.slice(1).map((x) => fmtMs(x.wallMs)).join(', ') || '–', '', '', ''],
      [s.label, 'restore / download wall ms', fmtMs(hydrate), cell(hydrate, same, 'downloads'), cell(hydrate, db, 'downloads'), ls ? fmtMs(ls.restoreMs) : na],
      [s.label, '… the library\'s own split (restore log): downloadMs / verifyMs', `${fmtMs(median(a.restores.map((r) => r.downloadMs)))} / ${fmtMs(median(a.restores.map((r) => r.verifyMs)))}`, '', '', ''],
      [s.label, 'restore / download CPU ms', fmtMs(med(a.restores, 'cpuMs')), cell(med(a.restores, 'cpuMs'), same, 'downloads', 'cpuMs'), cell(med(a.restores, 'cpuMs'), db, 'downloads', 'cpuMs'), ls ? fmtMs(ls.restoreCpuMs) : na],
      [s.label, 'time to first query ms (in this process)', fmtMs(median(a.restores.map((r) => r.firstQueryMs))), '', '', ls ? fmtMs(ls.firstQueryMs) : na],
      [s.label, 'worker thread start + import @libsql/client ms', fmtMs(a.workerStartupMs), '', '', ''],
    );
  }
  return markdownTable(['size', 'metric (medians)', 'ours', 'raw SDK, the same blobs in parallel (ours ×)', 'raw SDK, db file (ours ×)', 'litestream v0.3.13'], rows, ['l', 'l', 'r', 'r', 'r', 'r']);
}

/** Empty disk → first query in a fresh process: ours vs Litestream, medians, one row per size. */
export function coldStartTable(sizes: readonly SizeResult[]): string {
  const rows: string[][] = [];
  for (const s of sizes) {
    const c = s.litestream && 'version' in s.litestream ? s.litestream.coldStart : undefined;
    if (!c) continue;
    for (const [who, runs] of [['ours', c.ours], ['Litestream v0.3.13', c.litestream]] as const) {
      const peaks = runs.map((x) => x.peakRssAboveIdle).filter((x): x is number => typeof x === 'number');
      rows.push([s.label, who, String(runs.length), fmtMs(coldStartMedian(runs)), fmtMs(coldStartMedian(runs, 'sinceProcessStartMs')), fmtMs(coldStartMedian(runs, 'importMs')), fmtMs(coldStartMedian(runs, 'hydrateMs')), fmtMs(coldStartMedian(runs, 'queryMs')), peaks.length ? fmtBytes(Math.max(...peaks)) : '–', who === 'ours' ? fmtRatio(ratio(coldStartMedian(c.ours), coldStartMedian(c.litestream))) : '1.00×']);
    }
    if (c.sdkImport?.length) {
      const sdk = coldStartMedian(c.sdkImport, 'importMs');
      rows.push([s.label, 'loading @azure/storage-blob alone (CommonJS; not on our start-up path)', String(c.sdkImport.length), '', fmtMs(coldStartMedian(c.sdkImport, 'sinceProcessStartMs')), fmtMs(sdk), '', '', '', `${fmtRatio(ratio(sdk, coldStartMedian(c.litestream)))} of Litestream's total`]);
    }
  }
  return markdownTable(['size', 'who', 'n', 'spawn → first query ms', 'child clock ms', 'import ms', 'hydrate ms', 'first query ms', 'peak RSS above idle', '× Litestream'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']);
}

export function renderMarkdown(run: RunResult): string {
  const m = run.meta;
  const gate = run.checks.filter((c) => c.gating);
  const out = [
    '# drizzle-libsql-blob benchmarks',
    '',
    `${m.date} · Node ${m.node} · ${m.platform} · ${m.cpus} CPUs · ${(m.elapsedMs / 1000).toFixed(1)} s · library: ${m.library.build} build of src ${m.library.srcHash} (commit ${m.library.commit}${m.library.srcUncommitted ? ' + uncommitted src changes' : ''}) · \`${JSON.stringify(m.args)}\``,
    '',
    `Machine load (1-min load average / CPU pressure avg60 %): ${m.load.start.loadavg1m.toFixed(2)} / ${m.load.start.cpuPressureAvg60} at start, ${m.load.end.loadavg1m.toFixed(2)} / ${m.load.end.cpuPressureAvg60} at end. Tails (p99, max) are only as quiet as the machine.`,
    '',
    `Datasets: ${run.sizes.map((s) => `${s.label} = ${s.rows} rows, ${fmtBytes(s.dataset.bytes)}${s.dataset.cached ? ' (cached)' : `, built in ${(s.dataset.buildMs / 1000).toFixed(1)} s`}`).join('; ')}.`,
    '',
    `## Gate: every query and API p99 of ours ≤ ${P99_BUDGET_MS} ms — ${gate.length === 0 ? 'no gated check in this run' : gate.every((c) => c.pass) ? 'PASS' : 'FAIL'}`,
    '',
    markdownTable(['check', 'size', 'value', 'target', 'result'], run.checks.map((c) => [c.name + (c.gating ? ' (gate)' : ''), c.size, c.value, c.target, passFail(c.pass)]), ['l', 'l', 'r', 'r', 'l']),
  ];
  if (run.sizes.some((s) => s.queries)) {
    out.push('', '## 1. Queries', '', 'The queries the API runs, built by app/documents-query.ts itself (byIdQuery, listQuery): the list route with each filter on page 1, a deep page and the last page, the latter two through the keyset cursor the API returns with the page before (checked against OFFSET). ours = drizzle() from this library on a copy of the file (directoryStore, no snapshot during the phase); baselines on the same data. ×libsql = this driver / plain drizzle-orm/libsql. * = stopped early: the p99 already exceeded the budget.', '', queryTable(run.sizes));
    const biggest = [...run.sizes].reverse().find((s) => s.plans);
    if (biggest?.plans) {
      out.push('', `### Query plans (EXPLAIN QUERY PLAN, ${biggest.label})`, '');
      for (const [q, plan] of Object.entries(biggest.plans)) {
        const what = biggest.queries?.find((r) => r.query === q)?.what;
        out.push(`- **${q}**${what ? ` (${what})` : ''}: ${plan.map((p) => `\`${p}\``).join(' → ')}`);
      }
    }
  }
  if (run.sizes.some((s) => s.writes)) out.push('', '## 2. Single-row writes: counting client vs plain drizzle-orm/libsql', '', `Rotating blocks, each driver on its own copy of the file, WAL. Plain drizzle-orm/libsql runs at ours' synchronous level (${[...new Set(run.sizes.map((s) => s.synchronous).filter(Boolean))].join(', ')}), so ×plain is the counting client's cost; target p50 ×plain ≤ ${WRITE_OVERHEAD_TARGET}. A third row, when present, is plain libSQL at its own default synchronous=FULL (what a drop-in swap changes).`, '', writeTable(run.sizes));
  const loads = run.sizes.flatMap((s) => [s.snapshot, s.azure?.underLoad].filter((x): x is SnapshotLoadResult => !!x).map((x) => ({ size: s.label, s: x })));
  if (loads.length) out.push('', '## 3. Latency while a snapshot runs', '', `One reader and one writer loop (awaited single-row statements) idle, then across flush() calls. Targets: p99 during ≤ ${SNAPSHOT_P99_FACTOR}× idle, longest gap between writes < ${MAX_WRITE_GAP_MS} ms.`, '', loadTable(loads));
  if (run.sizes.some((s) => s.azure)) {
    out.push('', '## 4. Snapshot and restore on Azurite', '', `ours snapshot = flush() in the default incremental mode (the first one uploads every chunk, later ones the changed chunks). Restore = drizzle() on an empty path in this process (index, chunks, decode, verify, assemble, open). Raw "the same blobs" = exactly the objects that restore downloads (the latest snapshot's chunk index and every distinct chunk it references; a full snapshot: its one lz4 file), ${RAW_CONCURRENCY} at a time, one SDK BlobClient.download(0) each (one GET, as the restore does), the body read into memory and discarded (not written); its upload = the same bodies uploaded ${RAW_CONCURRENCY} at a time, against the first snapshot. Raw "db file" = BlockBlobClient.uploadFile / downloadToFile (SDK defaults) of the plain database file. Target: restore ≤ ${TRANSFER_RATIO_TARGET}× the raw parallel download of the same blobs.`, '', transferTable(run.sizes));
    for (const s of run.sizes) if (s.litestream && 'error' in s.litestream) out.push('', `Litestream (${s.label}) not measured: ${s.litestream.error}`);
  }
  const cold = run.sizes.map((s) => (s.litestream && 'version' in s.litestream ? s.litestream.coldStart : undefined)).find((c) => c);
  if (cold) {
    out.push('', '### Empty disk → first query, in a fresh process (ours vs Litestream)', '', `Each run spawns \`node\` (${cold.build === 'dist' ? 'plain node on the compiled build, no tsx' : 'the source build through tsx (BENCH_LIB=source): not what users run'}) on an empty folder; the parent's clock runs from spawn to the child's "first query answered" line. ours = bench/cold-start/ours.mjs: import the library's compiled build, \`await drizzle({...})\` against Azurite (restore + open), one SELECT by primary key. Litestream = bench/cold-start/litestream.mjs: import @libsql/client + drizzle-orm, run \`litestream restore\` as a child process, open the file with drizzle-orm/libsql, the same SELECT. Interleaved, the order alternating, after one unrecorded warm-up run of each, with \`sync\` before every run (nothing dirty from the previous run is written back during the next); medians. Hydrate = drizzle() / the \`litestream restore\` process alone. "child clock" = the child's performance.now() at the answer (from its own start, Node boot included). Peak RSS = the child's VmHWM (reset after its imports, read after close()) minus its RSS then. Targets: ours ≤ ${COLD_START_TARGET.toFixed(1)}× Litestream (stretch ≤ ${COLD_START_STRETCH}×), peak RSS < ${fmtBytes(MEMORY_TARGET_BYTES)}.`, '', coldStartTable(run.sizes));
  }
  if (run.api) {
    const a = run.api;
    const rows = a.routes.map((r) => {
      const idle = a.routes.find((x) => x.route === r.route && x.phase === 'idle')!;
      return [r.route, r.phase, String(r.requests), r.rps.toFixed(0), String(r.errors), ...sum(r.latency), fmtRatio(ratio(r.latency.p99, idle.latency.p99))];
    });
    for (const w of a.writes) rows.push([w.route, 'writer connections (pooled)', String(w.requests), w.rps.toFixed(0), String(w.errors), ...sum(w.latency), '']);
    const deepest = Object.entries(a.deepestPage).map(([route, page]) => `${route.replace(/ cursor pages$/, '')} ${page}`).join(', ');
    out.push('', '## 6. The reference API under load', '', `app/server.ts in its own process on the ${a.size} dataset, autocannon from this process. Every read route runs at once, one connection each, idle (the baseline), then again while writer connections cycle POST → PUT (If-Match) → DELETE (If-Match) on their own documents (commits every few ms; the server snapshots ${a.snapshotsDuringWrites} times during the write phase: debounce 250 ms, maxCommits 300, ceiling 4 s). Each list connection pages like a client, following the nextCursor of its previous response for a random 1–${MAX_WALK_PAGES} pages, then starts over with new filters; page 1 and the cursor pages are reported apart (deepest page reached: ${deepest || 'none'}). Latency is every response's time; the writers' samples are pooled over the whole phase. Gate: p99 ≤ ${API_P99_BUDGET_MS} ms and no errors, on every route.`, '', markdownTable(['route', 'phase', 'requests', 'req/s', 'errors', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'p99 ×idle'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']));
  }
  if (durabilities(run).length > 0) out.push('', '## 5. Commit to durable', '', 'On an Azurite of its own, started after the size phases (which leave gigabytes in the shared one\'s memory).');
  for (const d of durabilities(run)) {
    out.push('', `${d.burst} single-row updates, then the time from the last commit to the 'snapshot' event (manifest published on Azurite), the library's default schedule (debounceMs ${d.debounceMs}, maxCommits 1000), ${d.size}: ${d.latenciesMs.map(fmtMs).join(', ')} ms (snapshot itself ${d.snapshotMs.map(fmtMs).join(', ')} ms).`);
    const c = d.durableCalls;
    if (c) {
      const w = c.waitMs;
      out.push('', `Then \`durable()\` after each write of a steady stream, ${c.writesPerSecond} single-row updates per second paced by the clock for ${c.seconds} s, each call timed from its commit (as a request handler awaits it before answering): ${c.writes} writes, ${c.uploads} uploads; wait p50 ${fmtMs(w.p50)} / p95 ${fmtMs(w.p95)} / p99 ${fmtMs(w.p99)} / max ${fmtMs(w.max)} ms${c.loopMaxMs === undefined ? '' : ` (event loop blocked at most ${fmtMs(c.loopMaxMs)} ms)`}.${c.uploadKinds ? ` Uploads: ${Object.entries(c.uploadKinds).map(([k, v]) => `${v.count} ${k} (mean ${fmtMs(v.totalMs / v.count)}, max ${fmtMs(v.maxMs)} ms)`).join(', ')}.` : ''} Targets (issue 14): p50 ≤ ${DURABLE_CALL_P50_TARGET_MS} ms, p99 ≤ ${DURABLE_CALL_P99_TARGET_MS} ms, fewer uploads than writes.`);
    }
  }
  if (run.sizes.some((s) => s.incremental)) out.push(renderIncremental(run.sizes));
  return out.join('\n') + '\n';
}

export function renderSvg(run: RunResult): string {
  const groups: ChartGroup[] = run.sizes.flatMap((s) => {
    const names = [...new Set((s.queries ?? []).map((q) => q.query))];
    return names.map((name) => ({ label: `${name}${s.queries!.find((q) => q.query === name)!.gated ? '' : ' (probe)'} ${s.label}`, bars: s.queries!.filter((q) => q.query === name).map((q) => ({ series: q.driver, ...q.summary })) }));
  });
  return svgChart('Query latency per driver (p50 / p95 / p99)', groups, P99_BUDGET_MS);
}
