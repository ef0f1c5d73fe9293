/**
 * Turns a benchmark run into pass/fail checks, Markdown tables and the SVG chart.
 */
import { DURABLE_SLACK_MS, med, TRANSFER_RATIO_TARGET, type AzureResult, type DurabilityResult, type Timed } from './azure.ts';
import type { LitestreamResult } from './litestream.ts';
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
  durability?: DurabilityResult & { size: string };
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
      for (const kind of ['snapshotFile', 'dbFile'] as const) {
        const what = kind === 'snapshotFile' ? 'the same lz4 bytes' : 'the plain db file';
        const up = ratio(med(a.snapshots), med(a.raw[kind].uploads));
        const down = ratio(median(a.restores.map((r) => r.hydrateMs)), med(a.raw[kind].downloads));
        checks.push({ name: `snapshot (flush) / raw uploadFile of ${what}`, size: s.label, value: fmtRatio(up), target: `≤ ${TRANSFER_RATIO_TARGET}×`, pass: up <= TRANSFER_RATIO_TARGET, gating: false });
        checks.push({ name: `restore (hydrate) / raw downloadToFile of ${what}`, size: s.label, value: fmtRatio(down), target: `≤ ${TRANSFER_RATIO_TARGET}×`, pass: down <= TRANSFER_RATIO_TARGET, gating: false });
      }
      if (a.underLoad) checks.push(...loadChecks(s.label, a.underLoad));
    }
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
  const d = run.durability;
  if (d) {
    const worst = Math.max(...d.latenciesMs);
    checks.push({ name: `last commit of a ${d.burst}-update burst -> durable (debounceMs ${d.debounceMs})`, size: d.size, value: `${fmtMs(worst)} ms (worst of ${d.latenciesMs.length})`, target: `≤ ${d.debounceMs + DURABLE_SLACK_MS} ms`, pass: worst <= d.debounceMs + DURABLE_SLACK_MS, gating: false });
  }
  checks.push(...gateCoverage(run, checks));
  return checks;
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
    const lz = a.raw.snapshotFile, db = a.raw.dbFile;
    const hydrate = median(a.restores.map((r) => r.hydrateMs));
    const snap = med(a.snapshots);
    const cell = (ours: number, raw: { uploads: Timed[]; downloads: Timed[] }, dir: 'uploads' | 'downloads', key: keyof Timed = 'wallMs') => `${fmtMs(med(raw[dir], key))} (${fmtRatio(ratio(ours, med(raw[dir], key)))})`;
    rows.push(
      [s.label, 'bytes moved', `${fmtBytes(median(a.snapshots.map((x) => x.compressedBytes)))} lz4 of ${fmtBytes(a.dbBytes)}`, fmtBytes(lz.bytes), fmtBytes(db.bytes), ls ? `${fmtBytes(ls.bytesUploaded)} in ${ls.blobs} blobs` : na],
      [s.label, 'snapshot / upload wall ms', fmtMs(snap), cell(snap, lz, 'uploads'), cell(snap, db, 'uploads'), ls ? `${fmtMs(ls.snapshotUploadMs)} (start → snapshot listed)` : na],
      [s.label, 'snapshot / upload CPU ms', fmtMs(med(a.snapshots, 'cpuMs')), cell(med(a.snapshots, 'cpuMs'), lz, 'uploads', 'cpuMs'), cell(med(a.snapshots, 'cpuMs'), db, 'uploads', 'cpuMs'), ls ? `${fmtMs(ls.replicateCpuMs)} (replicate, whole run)` : na],
      [s.label, 'restore / download wall ms', fmtMs(hydrate), cell(hydrate, lz, 'downloads'), cell(hydrate, db, 'downloads'), ls ? fmtMs(ls.restoreMs) : na],
      [s.label, '… the library\'s own split (restore log): downloadMs / verifyMs', `${fmtMs(median(a.restores.map((r) => r.downloadMs)))} / ${fmtMs(median(a.restores.map((r) => r.verifyMs)))}`, '', '', ''],
      [s.label, 'restore / download CPU ms', fmtMs(med(a.restores, 'cpuMs')), cell(med(a.restores, 'cpuMs'), lz, 'downloads', 'cpuMs'), cell(med(a.restores, 'cpuMs'), db, 'downloads', 'cpuMs'), ls ? fmtMs(ls.restoreCpuMs) : na],
      [s.label, 'time to first query ms', fmtMs(median(a.restores.map((r) => r.firstQueryMs))), '', '', ls ? fmtMs(ls.firstQueryMs) : na],
      [s.label, 'worker thread start + import @libsql/client ms', fmtMs(a.workerStartupMs), '', '', ''],
    );
  }
  return markdownTable(['size', 'metric (medians)', 'ours', 'raw SDK, same lz4 bytes (ours ×)', 'raw SDK, db file (ours ×)', 'litestream v0.3.13'], rows, ['l', 'l', 'r', 'r', 'r', 'r']);
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
    out.push('', '## 4. Snapshot and restore on Azurite', '', `ours snapshot = flush(): VACUUM INTO + lz4 + sha256 in a worker, upload, conditional manifest publish. Restore = drizzle() on an empty path (download, decompress, verify sha256, quick_check). Raw = BlockBlobClient.uploadFile / downloadToFile (SDK defaults) of the same lz4 bytes ours moves, and of the plain database file. Target ≤ ${TRANSFER_RATIO_TARGET}× raw (same bytes).`, '', transferTable(run.sizes));
    for (const s of run.sizes) if (s.litestream && 'error' in s.litestream) out.push('', `Litestream (${s.label}) not measured: ${s.litestream.error}`);
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
  if (run.durability) {
    const d = run.durability;
    out.push('', '## 5. Commit to durable', '', `${d.burst} single-row updates, then the time from the last commit to the 'snapshot' event (manifest published on Azurite), debounceMs ${d.debounceMs} (maxCommits raised above the burst, so the debounce path is what is measured), ${d.size}: ${d.latenciesMs.map(fmtMs).join(', ')} ms (snapshot itself ${d.snapshotMs.map(fmtMs).join(', ')} ms).`);
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
