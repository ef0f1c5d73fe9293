/**
 * Phase 2 (write overhead of the counting client) and phase 3 (latency while a snapshot runs).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { eq, sql } from 'drizzle-orm';
import type { BlobDatabase } from './lib.ts';
import { documents } from '../schema/documents.ts';
import { generator, mulberry32 } from './dataset.ts';
import { sleep, type AnyDb, type Driver, type DriverName, type Schema } from './drivers.ts';
import { summarize, type Summary } from './stats.ts';

/** Issue 13: insert and update p50 within 3% of plain drizzle-orm/libsql at the same synchronous. */
export const WRITE_OVERHEAD_TARGET = 1.03;
export const SNAPSHOT_P99_FACTOR = 2;
export const MAX_WRITE_GAP_MS = 50;

/** One write helper per driver, deterministic content, unique names (tag keeps drivers apart). */
export function writer(db: AnyDb, ids: readonly string[], tag: string, seed: number) {
  const gen = generator(seed);
  const pick = mulberry32(seed ^ 0xabc);
  let inserted = 0;
  return {
    insert: async (): Promise<void> => {
      const r = gen.row(inserted);
      const now = new Date();
      await db.insert(documents).values({ id: `bench-${tag}-${inserted}-${r.id}`, type: r.type, name: `bench ${tag} ${inserted++}`, content: JSON.parse(r.content) as Record<string, unknown>, version: 1, createdAt: now, updatedAt: now });
    },
    update: async (): Promise<void> => {
      const id = ids[Math.floor(pick() * ids.length)]!;
      await db.update(documents).set({ content: JSON.parse(gen.content()) as Record<string, unknown>, version: sql`${documents.version} + 1`, updatedAt: new Date() }).where(eq(documents.id, id));
    },
    read: async (): Promise<void> => {
      await db.select().from(documents).where(eq(documents.id, ids[Math.floor(pick() * ids.length)]!)).limit(1);
    },
  };
}

export interface WriteResult {
  op: 'insert' | 'update';
  driver: DriverName;
  summary: Summary;
}

/**
 * Single-row inserts, then updates, in blocks that rotate the driver order (ours, plain, ...; plain,
 * ours, ...) so that disk and CPU drift fall on all drivers alike. Each driver writes its own copy of
 * the same file. `plain` should run at ours' synchronous level, so the ratio isolates the counting client.
 */
export async function runWrites(drivers: readonly Driver[], ids: readonly string[], perDriver: number, block = 10): Promise<WriteResult[]> {
  const w = new Map(drivers.map((drv, i) => [drv.name, writer(drv.db, ids, `w${i}`, 1234)]));
  const results: WriteResult[] = [];
  for (const op of ['insert', 'update'] as const) {
    for (const drv of drivers) for (let i = 0; i < 20; i++) await w.get(drv.name)![op](); // warm-up
    const samples = new Map<DriverName, number[]>(drivers.map((drv) => [drv.name, []]));
    for (let b = 0; b * block < perDriver; b++) {
      const order = drivers.map((_, k) => drivers[(b + k) % drivers.length]!);
      for (const drv of b % 2 === 0 ? order : order.reverse()) {
        const run = w.get(drv.name)![op];
        for (let i = 0; i < block && b * block + i < perDriver; i++) {
          const t0 = performance.now();
          await run();
          samples.get(drv.name)!.push(performance.now() - t0);
        }
      }
    }
    for (const drv of drivers) results.push({ op, driver: drv.name, summary: summarize(samples.get(drv.name)!) });
  }
  return results;
}

export interface LoadStats {
  reads: Summary;
  writes: Summary;
  /** Longest time between two consecutive committed writes. */
  maxWriteGapMs: number;
  /** Event-loop delay (p99 / max), from perf_hooks. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

export interface SnapshotLoadResult {
  store: string;
  idle: LoadStats;
  during: LoadStats;
  flushes: { durationMs: number; bytes: number; compressedBytes: number }[];
}

interface Op { start: number; end: number }

/**
 * One reader and one writer loop, each awaiting one single-row statement at a time, until stopped.
 * A local libSQL statement runs synchronously and returns a settled promise, so each loop yields to the
 * event loop between statements (as requests arriving over HTTP would); without that the loops would
 * starve timers and the snapshot worker's messages forever.
 */
function startLoad(db: AnyDb, ids: readonly string[]) {
  const w = writer(db, ids, 'load', 4321);
  const reads: Op[] = [];
  const writes: Op[] = [];
  let stop = false;
  const loop = async (op: () => Promise<void>, into: Op[]) => {
    while (!stop) {
      const start = performance.now();
      await op();
      into.push({ start, end: performance.now() });
      await yieldToEventLoop();
    }
  };
  const done = Promise.all([loop(w.update, writes), loop(w.read, reads)]);
  return { reads, writes, stop: async () => { stop = true; await done; } };
}

function statsWithin(reads: Op[], writes: Op[], windows: [number, number][], loop: { p99: number; max: number }): LoadStats {
  const inside = (o: Op) => windows.some(([a, b]) => o.end > a && o.start < b);
  const ends = writes.map((o) => o.end).sort((a, b) => a - b);
  let maxGap = 0;
  for (const [a, b] of windows) {
    const edges = [a, ...ends.filter((t) => t > a && t < b), b];
    for (let i = 1; i < edges.length; i++) maxGap = Math.max(maxGap, edges[i]! - edges[i - 1]!);
  }
  return {
    reads: summarize(reads.filter(inside).map((o) => o.end - o.start)),
    writes: summarize(writes.filter(inside).map((o) => o.end - o.start)),
    maxWriteGapMs: maxGap,
    loopDelayP99Ms: loop.p99,
    loopDelayMaxMs: loop.max,
  };
}

/** Measures the same read/write load idle for `idleMs`, then across `flushes` snapshots (flush()). */
export async function runUnderSnapshot(db: BlobDatabase<Schema>, store: string, ids: readonly string[], flushes: number, idleMs: number): Promise<SnapshotLoadResult> {
  const any = db as unknown as AnyDb;
  const measure = async (body: () => Promise<[number, number][]>, load: ReturnType<typeof startLoad>) => {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const windows = await body();
    h.disable();
    await load.stop();
    return statsWithin(load.reads, load.writes, windows, { p99: h.percentile(99) / 1e6, max: h.max / 1e6 });
  };
  await sleep(200);
  let load = startLoad(any, ids);
  const idle = await measure(async () => {
    await sleep(300); // settle
    const a = performance.now();
    await sleep(idleMs);
    return [[a, performance.now()]];
  }, load);

  const infos: SnapshotLoadResult['flushes'] = [];
  load = startLoad(any, ids);
  const during = await measure(async () => {
    const windows: [number, number][] = [];
    for (let k = 0; k < flushes; k++) {
      await sleep(300); // writes are pending again, and the loops are in steady state
      const a = performance.now();
      const info = await db.$sync.flush();
      windows.push([a, performance.now()]);
      if (info) infos.push({ durationMs: info.durationMs, bytes: info.bytes, compressedBytes: info.compressedBytes });
    }
    return windows;
  }, load);
  return { store, idle, during, flushes: infos };
}
