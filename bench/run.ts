/**
 * Benchmarks that prove sub-200 ms queries (and measure what the sync costs), runnable in CI.
 *
 *   node --conditions=source --import tsx bench/run.ts [--ci] [--sizes 10k,100k,1m] [--iterations N]
 *        [--only queries,writes,snapshot,azure,litestream,durability,api,incremental] [--artificial-delay-ms N] [--api-seconds N] [--out bench/results]
 *
 * --ci = sizes 10k,100k and fewer iterations (a few minutes on 2 cores, datasets included).
 * Writes latest.json, latest.md and latest.svg to --out and prints the tables. Exits 1 when a query
 * p99 of ours or an API route's p99 exceeds 200 ms, an API route answers errors, or the query or API
 * phase ran fewer gated checks than a complete run makes; the other targets (ratios, gaps) are printed
 * as PASS/FAIL only. --artificial-delay-ms adds a delay inside every measured query of ours and, in the
 * API phase, before the server handles each request (to prove the gates can fail).
 */
import { cpus, loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { directoryStore, LIB_KIND, LIB_SRC_HASH } from './lib.ts';
import { startAzurite, type Azurite } from '../test/helpers/azurite.ts';
import { runAzure, runDurabilityInChild } from './azure.ts';
import { CACHE_DIR, ensureDataset, parseSize, sampleIds } from './dataset.ts';
import { sql } from 'drizzle-orm';
import { copyDb, openBetterSqlite, openLibsql, openOurs, oursDriver, synchronousOf } from './drivers.ts';
import { ensureLitestream, runLitestream } from './litestream.ts';
import { explainPlans, prepareQueries, runQueries } from './queries.ts';
import { computeChecks, renderMarkdown, renderSvg, type RunResult, type SizeResult } from './report.ts';
import { runUnderSnapshot, runWrites } from './writes.ts';
import { runApi } from './api.ts';
import { CHAIN_DELTAS, DEFAULT_CHUNK_SIZE, runIncremental } from './incremental.ts';

const PHASES = ['queries', 'writes', 'snapshot', 'azure', 'litestream', 'durability', 'api', 'incremental'] as const;
type Phase = (typeof PHASES)[number];

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    iterations: { type: 'string' },
    only: { type: 'string' },
    'artificial-delay-ms': { type: 'string', default: '0' },
    /** Phase 'api': seconds of each of its two phases (idle, with writes); default 6 with --ci, 20 without. */
    'api-seconds': { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
    /** Phase 'incremental': chunk sizes measured end to end on Azurite (the default one gets all reps, the others 1). */
    'incr-chunk-sizes': { type: 'string' },
  },
});
const ci = values.ci!;
const sizes = (values.sizes ?? (ci ? '10k,100k' : '10k,100k,1m')).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
const iterations = Number(values.iterations ?? (ci ? 200 : 500));
const delayMs = Number(values['artificial-delay-ms']);
// 'incremental' (full vs incremental snapshots vs Litestream, issue 6) is part of the full run only: see CI_PHASES.
const CI_PHASES = PHASES.filter((p) => p !== 'incremental');
const phases = new Set<Phase>(values.only ? (values.only.split(',').map((p) => p.trim()) as Phase[]) : ci ? CI_PHASES : PHASES);
for (const p of phases) if (!PHASES.includes(p)) throw new Error(`--only: unknown phase ${JSON.stringify(p)} (use ${PHASES.join(', ')})`);
if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer');
if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('--artificial-delay-ms must be >= 0');
const apiSecondsArg = values['api-seconds'] === undefined ? undefined : Number(values['api-seconds']);
if (apiSecondsArg !== undefined && !(Number.isInteger(apiSecondsArg) && apiSecondsArg >= 1)) throw new Error('--api-seconds must be a positive integer');
const cfg = ci
  ? { writesPerDriver: 300, flushes: 2, idleMs: 1_500, reps: 2, coldStartReps: 2, coldStartMinRows: 100_000, durabilityReps: 2, durableSeconds: 3, apiSeconds: 6, incrReps: 1, incrChunkSizes: [DEFAULT_CHUNK_SIZE], incrProfileChunkSizes: [DEFAULT_CHUNK_SIZE] }
  : { writesPerDriver: 1_000, flushes: 3, idleMs: 3_000, reps: 3, coldStartReps: 3, coldStartMinRows: 0, durabilityReps: 3, durableSeconds: 10, apiSeconds: 20, incrReps: 3, incrChunkSizes: [DEFAULT_CHUNK_SIZE, 1 << 20], incrProfileChunkSizes: [256 << 10, 1 << 20, DEFAULT_CHUNK_SIZE, 16 << 20] };
// 64 KiB end to end costs minutes at 1M on Azurite (~10k blob requests per whole-database upload): profiled by default, measured on request.
const parseChunk = (s: string): number => {
  const m = /^(\d+)\s*(k|kib|m|mib)?$/i.exec(s.trim());
  if (!m) throw new Error(`--incr-chunk-sizes: cannot parse ${JSON.stringify(s)} (use e.g. 64k,256k,1m)`);
  return Number(m[1]) * (m[2]?.toLowerCase().startsWith('m') ? 1 << 20 : m[2] ? 1 << 10 : 1);
};
if (values['incr-chunk-sizes']) cfg.incrChunkSizes = values['incr-chunk-sizes'].split(',').map(parseChunk);
const LOAD_MIN_ROWS = 100_000;
const apiSeconds = apiSecondsArg ?? cfg.apiSeconds;
// --ci measures the cold start (empty disk -> first query, ours vs Litestream) at 100k only, where issue 13
// judges it, to keep bench:ci near two minutes; the full run measures it at every size.

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const started = performance.now();
/** Other work on the machine skews tails: record the load and CPU pressure around the run. */
const pressure = (): string => {
  try {
    return /avg60=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? 'n/a';
  } catch {
    return 'n/a';
  }
};
const git = (...args: string[]): string => {
  try {
    return execFileSync('git', args, { cwd: fileURLToPath(new URL('../', import.meta.url)), encoding: 'utf8' }).trim();
  } catch {
    return 'n/a';
  }
};
const library = { build: LIB_KIND, srcHash: LIB_SRC_HASH, commit: git('rev-parse', '--short', 'HEAD'), srcUncommitted: git('status', '--porcelain', '--', 'src') !== '' };
const loadAtStart = { loadavg1m: loadavg()[0]!, cpuPressureAvg60: pressure() };
log(`library: ${LIB_KIND} build of src ${LIB_SRC_HASH} (commit ${library.commit}${library.srcUncommitted ? ' + uncommitted src changes' : ''}); load average ${loadAtStart.loadavg1m.toFixed(2)}, CPU pressure avg60 ${loadAtStart.cpuPressureAvg60}%`);
const runDir = join(CACHE_DIR, `run-${process.pid}`);
const results: SizeResult[] = [];
let durability: RunResult['durability'];
let api: RunResult['api'];
let azurite: Azurite | undefined;

try {
  const needAzure = phases.has('azure') || phases.has('litestream') || phases.has('durability') || phases.has('incremental');
  if (needAzure) azurite = await startAzurite();
  const litestream = phases.has('litestream') ? await ensureLitestream().catch((e: unknown) => ({ error: `cannot install or run @flydotio/litestream-linux-x64: ${(e as Error).message}` })) : undefined;

  for (const label of sizes) {
    const rows = parseSize(label);
    const dataset = await ensureDataset(rows);
    log(`[${label}] dataset ${dataset.path} ${(dataset.bytes / 2 ** 20).toFixed(1)} MiB ${dataset.cached ? '(cached)' : `built in ${(dataset.buildMs / 1000).toFixed(1)} s`}`);
    const work = join(runDir, label);
    await mkdir(work, { recursive: true });
    const ids = sampleIds(dataset.path, 2_000);
    const s: SizeResult = { label, rows, dataset: { bytes: dataset.bytes, buildMs: dataset.buildMs, cached: dataset.cached } };
    results.push(s);

    if (phases.has('queries') || phases.has('writes') || (phases.has('snapshot') && rows >= LOAD_MIN_ROWS)) {
      const oursPath = join(work, 'ours.db');
      const basePath = join(work, 'base.db');
      await copyDb(dataset.path, oursPath);
      await copyDb(dataset.path, basePath);
      const oursDb = await openOurs(oursPath, directoryStore({ dir: join(work, 'store') }));
      const ours = oursDriver(oursDb);
      const plain = await openLibsql(basePath);
      if (phases.has('queries')) {
        log(`[${label}] queries: ${iterations} iterations x 3 drivers${delayMs ? `, artificial delay ${delayMs} ms on ours` : ''}`);
        const better = await openBetterSqlite(basePath);
        const prepared = await prepareQueries(better.db, ids, rows);
        s.queries = await runQueries([ours, plain, better], prepared, { iterations, warmup: Math.min(20, iterations), artificialDelayMs: delayMs }, log);
        s.plans = explainPlans(basePath, plain.db, prepared);
        await better.close();
      }
      if (phases.has('writes')) {
        // The plain baseline runs at ours' synchronous level, so the ratio is the counting client's cost;
        // plain libSQL at its own default (FULL) is measured beside them when that differs.
        s.synchronous = await synchronousOf(ours.db);
        await plain.db.run(sql.raw(`PRAGMA synchronous=${s.synchronous}`));
        const drivers = [ours, plain];
        if (s.synchronous !== 'FULL') {
          await copyDb(dataset.path, join(work, 'plain-full.db'));
          drivers.push(await openLibsql(join(work, 'plain-full.db'), 'drizzle-orm/libsql, synchronous=FULL (its default)'));
        }
        log(`[${label}] writes: ${cfg.writesPerDriver} inserts and updates per driver (ours synchronous=${s.synchronous})`);
        s.writes = await runWrites(drivers, ids, cfg.writesPerDriver);
        await drivers[2]?.close();
      }
      await plain.close();
      if (phases.has('snapshot') && rows >= LOAD_MIN_ROWS) {
        log(`[${label}] load during ${cfg.flushes} snapshots (directory store)`);
        s.snapshot = await runUnderSnapshot(oursDb, 'directory', ids, cfg.flushes, cfg.idleMs);
      }
      await ours.close();
    }
    if (phases.has('azure') && azurite) {
      log(`[${label}] snapshot/restore on Azurite, ${cfg.reps} reps`);
      const underLoad = phases.has('snapshot') && rows >= LOAD_MIN_ROWS ? { flushes: cfg.flushes, idleMs: cfg.idleMs } : null;
      s.azure = await runAzure(azurite.connectionString, dataset, work, label, ids, { reps: cfg.reps, underLoad });
    }
    if (litestream && azurite) {
      log(`[${label}] litestream`);
      s.litestream = 'error' in litestream ? litestream : await runLitestream(litestream.bin, litestream.version, azurite, dataset, work, label, ids[0]!, { coldStartReps: rows >= cfg.coldStartMinRows ? cfg.coldStartReps : 0 }).catch((e: unknown) => ({ error: (e as Error).message }));
    }
    if (phases.has('incremental') && azurite) {
      log(`[${label}] incremental vs full snapshots vs Litestream, ${cfg.incrReps} reps`);
      s.incremental = await runIncremental(azurite, dataset, work, label, { reps: cfg.incrReps, restoreReps: cfg.incrReps, chunkSizes: cfg.incrChunkSizes, profileChunkSizes: cfg.incrProfileChunkSizes, litestream: process.platform === 'linux' && process.arch === 'x64', chainDeltas: CHAIN_DELTAS }, log).catch((e: unknown) => ({ error: (e as Error).stack ?? String(e) }));
    }
    await rm(work, { recursive: true, force: true });
  }

  if (phases.has('durability') && azurite) {
    // On an emulator of its own: the size phases leave gigabytes in the shared one's memory (in-memory
    // persistence; the 1M incremental phase alone several chunk sets and Litestream's replica). That was
    // not what made this phase's p99 at 100k 105-209 ms after them (53-72 ms in runs of it alone): an
    // emulator of 3 GiB stopped just before did not reproduce it, a checkpoint's slow fsync the next
    // delta waits for did (see README "Known limitations"); a clean emulator still keeps the phase apart.
    await azurite.stop();
    azurite = await startAzurite();
    // At 100k and 1M (issue 14), whichever the run has; the largest otherwise.
    const labels = sizes.filter((l) => l === '100k' || l === '1m');
    durability = [];
    for (const label of labels.length > 0 ? labels : [sizes.at(-1)!]) {
      const dataset = await ensureDataset(parseSize(label));
      const work = join(runDir, `durability-${label}`);
      await mkdir(work, { recursive: true });
      log(`[${label}] commit -> durable, ${cfg.durabilityReps} bursts, then durable() after each of 100 writes/s for ${cfg.durableSeconds} s`);
      durability.push({ size: label, ...(await runDurabilityInChild(azurite.connectionString, dataset, work, label, sampleIds(dataset.path, 2_000), cfg.durabilityReps, cfg.durableSeconds)) });
      await rm(work, { recursive: true, force: true });
    }
  }
  if (phases.has('api')) {
    // The API runs once, on the 100k dataset when the run has it (the largest otherwise).
    const label = sizes.includes('100k') ? '100k' : sizes.at(-1)!;
    const dataset = await ensureDataset(parseSize(label));
    const work = join(runDir, `api-${label}`);
    await mkdir(work, { recursive: true });
    log(`[${label}] API under autocannon, ${apiSeconds} s per phase (idle, with writes)${delayMs ? `, artificial delay ${delayMs} ms per request` : ''}`);
    api = { size: label, ...(await runApi(dataset, work, sampleIds(dataset.path, 2_000), { durationS: apiSeconds, writerConnections: 2, artificialDelayMs: delayMs })) };
  }
} finally {
  await azurite?.stop();
  await rm(runDir, { recursive: true, force: true });
}

const partial: Omit<RunResult, 'checks'> = {
  meta: { date: new Date().toISOString(), node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpus().length, args: { ci, sizes, iterations, only: [...phases], artificialDelayMs: delayMs, ...(phases.has('api') ? { apiSeconds } : {}) }, elapsedMs: performance.now() - started,
    library, load: { start: loadAtStart, end: { loadavg1m: loadavg()[0]!, cpuPressureAvg60: pressure() } } },
  sizes: results,
  durability,
  api,
};
const run: RunResult = { ...partial, checks: computeChecks(partial) };
const outDir = resolve(values.out!);
await mkdir(outDir, { recursive: true });
const markdown = renderMarkdown(run);
await writeFile(join(outDir, 'latest.json'), `${JSON.stringify(run, null, 2)}\n`);
await writeFile(join(outDir, 'latest.md'), markdown);
if (run.sizes.some((s) => s.queries)) await writeFile(join(outDir, 'latest.svg'), renderSvg(run));
console.log(markdown);

const failed = run.checks.filter((c) => c.gating && !c.pass);
for (const c of failed) console.log(`GATE FAIL [${c.size}] ${c.name}: ${c.value}, target ${c.target}`);
log(`done in ${(run.meta.elapsedMs / 1000).toFixed(1)} s; results in ${outDir}`);
process.exit(failed.length ? 1 : 0);
