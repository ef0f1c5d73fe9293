/**
 * The README's benchmark tables, generated from bench/results/*.json so they cannot drift from the
 * committed results:
 *
 *   node --conditions=source --import tsx bench/readme.ts [--check] [--results DIR] [--readme FILE]
 *   (npm run bench:readme [-- --check])
 *
 * Every marked block of the README, `<!-- bench:NAME -->` … `<!-- /bench -->`, is replaced by the table
 * NAME renders (BLOCKS below); the rest of the README is left alone. Each block names the results file,
 * commit and date its rows come from. --check writes nothing and exits 1 when the README differs from
 * what the results generate (CI catches drift), 0 when it matches.
 *
 * Every results file must name the commit it was made at (a run's `meta.library.commit`, or a top-level
 * `commit` for other JSON files such as codecs.json); one that does not is refused (exit 2), since a
 * table that cannot say what it measured is what this script exists to prevent.
 *
 * Pure functions (no clock, no environment), so the same results always give the same README; imports
 * only types from the benchmark modules, which build the library when loaded.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { durabilities, type Check, type RunResult, type SizeResult } from './report.ts';
import type { ColdStartRun } from './litestream.ts';
import { fmtBytes, fmtMs, fmtRatio, markdownTable, median, ratio } from './stats.ts';

/** One results file: its path as the README names it, and the commit/date it was made at. */
export interface ResultsFile {
  name: string;
  commit: string;
  date: string;
  /** A benchmark run (bench/run.ts); other results files (codecs.json) only have to name their commit. */
  run?: RunResult;
}

export class ResultsError extends Error {}

/** Validates one parsed results file; throws ResultsError naming the file and the fix when it has no commit. */
export function parseResults(name: string, json: unknown): ResultsFile {
  const o = json as { meta?: { date?: string; library?: { commit?: string } }; sizes?: unknown; checks?: unknown; commit?: string; date?: string };
  const isRun = typeof o === 'object' && o !== null && typeof o.meta === 'object' && Array.isArray(o.sizes) && Array.isArray(o.checks);
  const commit = isRun ? o.meta!.library?.commit : o?.commit;
  const date = isRun ? o.meta!.date : o?.date;
  if (typeof commit !== 'string' || !/^[0-9a-f]{7,40}$/.test(commit)) {
    throw new ResultsError(`${name} does not name the commit it was made at (${isRun ? 'meta.library.commit' : 'commit'} is ${JSON.stringify(commit)}): regenerate it with the current bench (it records the commit) or remove it from bench/results/.`);
  }
  return { name, commit, date: typeof date === 'string' ? date : 'unknown date', run: isRun ? (json as RunResult) : undefined };
}

/** Every *.json directly in `dir`, in name order (the order never depends on the file system). */
export function loadResults(dir: string, nameAs: (file: string) => string = (f) => f): ResultsFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => parseResults(nameAs(join(dir, f)), JSON.parse(readFileSync(join(dir, f), 'utf8')) as unknown));
}

// ---------------------------------------------------------------------------------------------------
// Picking rows: for each dataset size, the newest run that measured the thing

type Run = ResultsFile & { run: RunResult };
const runsNewestFirst = (files: readonly ResultsFile[]): Run[] =>
  files.filter((f): f is Run => !!f.run).sort((a, b) => (a.date === b.date ? a.name.localeCompare(b.name) : a.date < b.date ? 1 : -1));

/** For each size label (smallest first), the newest run whose SizeResult satisfies `has`. */
function pickSizes(files: readonly ResultsFile[], has: (s: SizeResult, run: RunResult) => boolean): { file: Run; s: SizeResult }[] {
  const picked = new Map<string, { file: Run; s: SizeResult }>();
  for (const file of runsNewestFirst(files)) {
    for (const s of file.run.sizes) if (!picked.has(s.label) && has(s, file.run)) picked.set(s.label, { file, s });
  }
  return [...picked.values()].sort((a, b) => a.s.rows - b.s.rows);
}

/**
 * Checks matching `match`, each (size, check name) taken from the newest run that has it, so a partial
 * run (say --only litestream --sizes 1m) replaces only what it measured. Sizes smallest first, checks in
 * their run's order.
 */
function pickChecks(files: readonly ResultsFile[], match: (c: Check) => boolean): { file: Run; checks: Check[] }[] {
  const runs = runsNewestFirst(files);
  const seen = new Set<string>();
  const bySize = new Map<string, { file: Run; check: Check }[]>();
  for (const file of runs) {
    for (const check of file.run.checks.filter(match)) {
      const key = `${check.size}\0${check.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      bySize.set(check.size, [...(bySize.get(check.size) ?? []), { file, check }]);
    }
  }
  const rows = (label: string) => runs.flatMap((f) => f.run.sizes).find((s) => s.label === label)?.rows ?? Number.MAX_SAFE_INTEGER;
  return [...bySize.entries()]
    .sort(([a], [b]) => rows(a) - rows(b) || a.localeCompare(b))
    .flatMap(([, items]) => items.map(({ file, check }) => ({ file, checks: [check] })));
}

function sourceLine(files: readonly Run[]): string {
  const unique = [...new Map(files.map((f) => [f.name, f])).values()].sort((a, b) => a.name.localeCompare(b.name));
  if (!unique.length) return '_No results in bench/results/ measure this yet._';
  const what = (f: Run) => {
    const m = f.run.meta;
    const args = m.args as { ci?: boolean; sizes?: string[]; only?: string[] };
    // A run of some phases only says which (bench/run.ts has 7 phases besides 'incremental').
    const only = args.only && args.only.filter((p) => p !== 'incremental').length < 7 ? ` \`--only ${args.only.join(',')}\`` : '';
    const run = `${args.ci ? '`--ci` run' : 'full run'}${only}`;
    return `[${f.name}](${f.name}): commit ${f.commit}${m.library.srcUncommitted ? ' + uncommitted src changes' : ''}, ${f.date}, ${run} (${(args.sizes ?? []).join(', ')}; ${m.cpus} CPUs, Node ${m.node})`;
  };
  return `_Generated by \`npm run bench:readme\` from ${unique.map(what).join('; ')}. Do not edit by hand._`;
}

/** Checks as a table; when they come from more than one run, each row names its run's commit. */
function checkTable(items: readonly { file: Run; checks: Check[] }[]): string {
  const mixed = new Set(items.map((x) => x.file.name)).size > 1;
  const rows = items.flatMap((x) => x.checks.map((c) => [c.name, c.size, c.value, c.target, c.pass ? 'PASS' : 'FAIL', ...(mixed ? [x.file.commit] : [])]));
  return markdownTable(['check', 'size', 'value', 'target', 'result', ...(mixed ? ['commit'] : [])], rows, ['l', 'l', 'r', 'r', 'l', ...(mixed ? ['l' as const] : [])]);
}

const med = (runs: readonly ColdStartRun[], key: keyof ColdStartRun = 'wallMs') => median(runs.map((r) => Number(r[key])));

// ---------------------------------------------------------------------------------------------------
// The blocks

/** Head to head against Litestream: cold start, hydrate, bytes, restore against the raw download. */
function coldStartBlock(files: readonly ResultsFile[]): string {
  const picked = pickSizes(files, (s) => !!(s.litestream && 'version' in s.litestream && s.litestream.coldStart));
  const rows: string[][] = [];
  for (const { s } of picked) {
    const ls = s.litestream as Extract<SizeResult['litestream'], { version: string }>;
    const c = ls.coldStart!;
    const cell = (o: number, l: number, fmt: (x: number) => string, unit = ' ms') => [`${fmt(o)}${unit}`, `${fmt(l)}${unit}`, fmtRatio(ratio(o, l))];
    rows.push([s.label, `empty disk → first query, fresh process (median of ${c.reps})`, ...cell(med(c.ours), med(c.litestream), fmtMs)]);
    rows.push([s.label, '… of which hydrate: drizzle() / `litestream restore`', ...cell(med(c.ours, 'hydrateMs'), med(c.litestream, 'hydrateMs'), fmtMs)]);
    rows.push([s.label, '… of which imports', ...cell(med(c.ours, 'importMs'), med(c.litestream, 'importMs'), fmtMs)]);
    const peaks = c.ours.map((x) => x.peakRssAboveIdle).filter((x): x is number => typeof x === 'number');
    if (peaks.length) rows.push([s.label, 'peak RSS above idle during restore (worst)', fmtBytes(Math.max(...peaks)), '–', '']);
    const a = s.azure;
    if (a?.snapshots[0]) rows.push([s.label, 'bytes uploaded by the first snapshot', fmtBytes(a.snapshots[0].compressedBytes), fmtBytes(ls.bytesUploaded), fmtRatio(ratio(a.snapshots[0].compressedBytes, ls.bytesUploaded))]);
  }
  const checks = pickChecks(files, (c) => /^empty disk|^hydrate only|^restore \(hydrate\) \/ raw parallel|^peak RSS above idle during restore \(fresh/.test(c.name));
  if (!rows.length && !checks.length) return sourceLine([]);
  return [sourceLine([...picked.map((p) => p.file), ...checks.map((c) => c.file)]), '', markdownTable(['size', 'figure', 'ours', 'Litestream v0.3.13', 'ours / Litestream'], rows, ['l', 'l', 'r', 'r', 'r']), '', checkTable(checks)].join('\n');
}

/** Query p99 of ours next to plain drizzle-orm/libsql, with the gate's verdict. */
function queriesBlock(files: readonly ResultsFile[]): string {
  const picked = pickSizes(files, (s) => !!s.queries?.length);
  const rows: string[][] = [];
  for (const { file, s } of picked) {
    for (const q of s.queries!.filter((x) => x.driver === 'ours')) {
      const plain = s.queries!.find((x) => x.query === q.query && x.driver === 'drizzle-orm/libsql')?.summary;
      const check = file.run.checks.find((c) => c.size === s.label && c.name === `query ${q.query} p99 (ours)`);
      rows.push([q.query + (q.gated ? '' : ' (probe)'), s.label, String(q.summary.n), fmtMs(q.summary.p50), fmtMs(q.summary.p99), plain ? fmtMs(plain.p99) : '–', fmtRatio(ratio(q.summary.p99, plain?.p99)), check ? (check.pass ? 'PASS' : 'FAIL') : 'not gated']);
    }
  }
  return [sourceLine(picked.map((p) => p.file)), '', markdownTable(['query', 'size', 'n', 'ours p50 ms', 'ours p99 ms', 'drizzle-orm/libsql p99 ms', 'p99 ×libsql', 'gate (p99 ≤ 200 ms)'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'l'])].join('\n');
}

/** Single-row write p50 of ours against plain drizzle-orm/libsql at the same synchronous. */
function writesBlock(files: readonly ResultsFile[]): string {
  const picked = pickSizes(files, (s) => !!s.writes?.length);
  const rows: string[][] = [];
  for (const { file, s } of picked) {
    for (const op of ['insert', 'update'] as const) {
      const ours = s.writes!.find((w) => w.op === op && w.driver === 'ours')?.summary;
      const plain = s.writes!.find((w) => w.op === op && w.driver === 'drizzle-orm/libsql')?.summary;
      if (!ours || !plain) continue;
      const check = file.run.checks.find((c) => c.size === s.label && c.name === `${op} p50 overhead ours / drizzle-orm/libsql`);
      rows.push([op, s.label, s.synchronous ?? '–', fmtMs(ours.p50), fmtMs(plain.p50), fmtRatio(ratio(ours.p50, plain.p50)), check?.target ?? '–', check ? (check.pass ? 'PASS' : 'FAIL') : '–']);
    }
  }
  return [sourceLine(picked.map((p) => p.file)), '', markdownTable(['op', 'size', 'synchronous', 'ours p50 ms', 'plain p50 ms', 'ours / plain', 'target', 'result'], rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'l'])].join('\n');
}

/** Longest gap between two committed writes, idle and while snapshots run, per store. */
function writeGapsBlock(files: readonly ResultsFile[]): string {
  const picked = pickSizes(files, (s) => !!(s.snapshot || s.azure?.underLoad));
  const rows: string[][] = [];
  for (const { file, s } of picked) {
    for (const load of [s.snapshot, s.azure?.underLoad]) {
      if (!load) continue;
      const check = file.run.checks.find((c) => c.size === s.label && c.name === `longest gap between writes during snapshot (${load.store})`);
      rows.push([s.label, load.store, fmtMs(load.idle.maxWriteGapMs), fmtMs(load.during.maxWriteGapMs), `${fmtMs(load.idle.writes.p99)} / ${fmtMs(load.during.writes.p99)}`, `${fmtMs(load.idle.reads.p99)} / ${fmtMs(load.during.reads.p99)}`, load.flushes.map((f) => fmtMs(f.durationMs)).join(', '), check?.target ?? '–', check ? (check.pass ? 'PASS' : 'FAIL') : '–']);
    }
  }
  return [sourceLine(picked.map((p) => p.file)), '', markdownTable(['size', 'store', 'longest write gap idle ms', 'during snapshots ms', 'write p99 idle / during ms', 'read p99 idle / during ms', 'snapshots ms', 'target', 'result'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'])].join('\n');
}

/** The reference API's gated checks (every route and the pooled writer), from the newest run that has them. */
function apiBlock(files: readonly ResultsFile[]): string {
  const checks = pickChecks(files, (c) => c.name.startsWith('API '));
  return [sourceLine(checks.map((c) => c.file)), '', checkTable(checks)].join('\n');
}

/** Last commit of a burst → the snapshot covering it is published. */
function durabilityBlock(files: readonly ResultsFile[]): string {
  const file = runsNewestFirst(files).find((f) => durabilities(f.run).length > 0);
  if (!file) return sourceLine([]);
  const rows = durabilities(file.run).map((d) => {
    const check = file.run.checks.find((c) => c.size === d.size && c.name.startsWith(`last commit of a ${d.burst}-update burst`));
    return [d.size, String(d.burst), String(d.debounceMs), d.latenciesMs.map(fmtMs).join(', '), d.snapshotMs.map(fmtMs).join(', '), check?.target ?? '–', check ? (check.pass ? 'PASS' : 'FAIL') : '–'];
  });
  const calls = file.run.checks.filter((c) => c.name.startsWith('durable() after each of'));
  return [sourceLine([file]), '', markdownTable(['size', 'burst', 'debounceMs', 'last commit → durable ms', 'snapshot ms', 'target (worst)', 'result'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'l']), ...(calls.length ? ['', checkTable([{ file, checks: calls }])] : [])].join('\n');
}

/** Full vs incremental snapshots vs Litestream (phase 'incremental'): its checks. */
function incrementalBlock(files: readonly ResultsFile[]): string {
  const checks = pickChecks(files, (c) => /^bytes uploaded: incremental|^bytes uploaded for 1%|^restore of a chunk set \+|^snapshot wall: incremental|^one single-row commit|^restore incl\. quick_check|^lower bound for any restore|^peak RSS above idle during (snapshot|restore) \((full|incremental)/.test(c.name));
  return [sourceLine(checks.map((c) => c.file)), '', checkTable(checks)].join('\n');
}

/** Issue 13's targets in one table. */
function targetsBlock(files: readonly ResultsFile[]): string {
  const checks = pickChecks(files, (c) =>
    /^empty disk → first query in a fresh process|^restore \(hydrate\) \/ raw parallel|^longest gap between writes during snapshot|^(insert|update) p50 overhead|^peak RSS above idle during (restore \(fresh process|(restore|snapshot) \(incremental)/.test(c.name));
  return [sourceLine(checks.map((c) => c.file)), '', checkTable(checks)].join('\n');
}

export const BLOCKS: Record<string, (files: readonly ResultsFile[]) => string> = {
  targets: targetsBlock,
  'cold-start': coldStartBlock,
  queries: queriesBlock,
  writes: writesBlock,
  'write-gaps': writeGapsBlock,
  api: apiBlock,
  durability: durabilityBlock,
  incremental: incrementalBlock,
};

const BLOCK_RE = /<!-- bench:([a-z0-9-]+) -->\n[\s\S]*?<!-- \/bench -->/g;

/** The README with every marked block regenerated; throws on a block name no renderer knows. */
export function renderReadme(readme: string, files: readonly ResultsFile[]): string {
  return readme.replace(BLOCK_RE, (_, name: string) => {
    const render = BLOCKS[name];
    if (!render) throw new ResultsError(`README.md has a block <!-- bench:${name} --> that bench/readme.ts does not know (known: ${Object.keys(BLOCKS).join(', ')}).`);
    return `<!-- bench:${name} -->\n${render(files)}\n<!-- /bench -->`;
  });
}

// ---------------------------------------------------------------------------------------------------
// CLI

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('../', import.meta.url));
  const { values } = parseArgs({ options: { check: { type: 'boolean', default: false }, results: { type: 'string', default: join(root, 'bench/results') }, readme: { type: 'string', default: join(root, 'README.md') } } });
  const readmePath = resolve(values.readme!);
  const resultsDir = resolve(values.results!);
  try {
    // Links in the README are relative to it.
    const files = loadResults(resultsDir, (f) => relative(resolve(readmePath, '..'), f));
    const current = readFileSync(readmePath, 'utf8');
    const next = renderReadme(current, files);
    const blocks = [...current.matchAll(BLOCK_RE)].length;
    if (values.check) {
      if (next !== current) {
        process.stderr.write(`${readmePath} differs from what ${resultsDir}/*.json generate: run \`npm run bench:readme\` and commit the result.\n`);
        process.exit(1);
      }
      process.stderr.write(`${readmePath}: ${blocks} benchmark blocks match the results.\n`);
    } else {
      if (next !== current) writeFileSync(readmePath, next);
      process.stderr.write(`${readmePath}: ${blocks} benchmark blocks ${next === current ? 'already up to date' : 'regenerated'}.\n`);
    }
  } catch (e) {
    if (!(e instanceof ResultsError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
}
