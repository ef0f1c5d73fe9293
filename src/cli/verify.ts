/**
 * `verify`: a restore drill. Downloads the latest (default), one (`--seq`) or every (`--all`) retained
 * snapshot into a temporary directory with the library's own `downloadSnapshot` (size, sha256,
 * quick_check), reports each, and removes everything it wrote. Never touches the live database or the
 * store. Exit status 1 if any snapshot failed.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { errorMessage, findSyncError } from '../errors.ts';
import type { SnapshotEntry } from '../sync/manifest.ts';
import { downloadSnapshot } from '../sync/restore.ts';
import { resolveChunkKeys } from '../sync/chunks/encryption.ts';
import type { SnapshotSelector } from './args.ts';
import type { CliContext } from './context.ts';
import { formatBytes, formatDuration, table } from './format.ts';
import { chunkProgress, progressStore } from './progress.ts';
import { pick, readBackups } from './remote.ts';

export interface VerifyOptions {
  select: SnapshotSelector;
  tempDir?: string;
}

interface Outcome {
  seq: number;
  createdAt: string;
  key: string;
  bytes: number;
  ok: boolean;
  durationMs: number;
  error: { code: string; message: string } | null;
}

/** Removes the temp directory even when the drill is interrupted (Ctrl-C, SIGTERM). */
function cleanupOnSignal(dir: string): () => void {
  const handler = (signal: NodeJS.Signals) => {
    rmSync(dir, { recursive: true, force: true });
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

export async function verify(ctx: CliContext, options: VerifyOptions): Promise<number> {
  const { out } = ctx;
  const { manifest } = await readBackups(ctx);
  const entries = pick(manifest, options.select, ctx.store.location);
  const store = progressStore(ctx, entries);
  const dir = await mkdtemp(join(resolve(options.tempDir ?? tmpdir()), 'dlb-verify-'));
  const restoreSignals = cleanupOnSignal(dir);
  const outcomes: Outcome[] = [];
  try {
    for (const entry of entries) outcomes.push(await drill(ctx, store, entry, manifest.snapshots, dir));
  } finally {
    restoreSignals();
    await rm(dir, { recursive: true, force: true });
  }

  const failed = outcomes.filter((o) => !o.ok);
  out.result({ store: ctx.store.location, ok: failed.length === 0, passed: outcomes.length - failed.length, failed: failed.length, snapshots: outcomes });
  const rows = outcomes.map((o) => [String(o.seq), o.createdAt, formatBytes(o.bytes), o.ok ? 'ok' : 'FAIL', formatDuration(o.durationMs), o.error ? `${o.error.code}: ${o.error.message}` : '']);
  for (const line of table(['seq', 'created', 'bytes', 'result', 'time', 'reason'], rows, [0, 2, 4])) out.line(line);
  out.line(
    failed.length === 0
      ? `verified ${outcomes.length} snapshot${outcomes.length === 1 ? '' : 's'}: all restorable`
      : `${failed.length} of ${outcomes.length} snapshot${outcomes.length === 1 ? '' : 's'} FAILED: seq ${failed.map((o) => o.seq).join(', ')}`,
  );
  return failed.length === 0 ? 0 : 1;
}

async function drill(ctx: CliContext, store: CliContext['store'], entry: SnapshotEntry, snapshots: readonly SnapshotEntry[], dir: string): Promise<Outcome> {
  const path = join(dir, `seq-${entry.seq}.db`);
  const started = performance.now();
  const base = { seq: entry.seq, createdAt: entry.createdAt, key: entry.key, bytes: entry.bytes };
  try {
    const meter = chunkProgress(ctx, entry);
    await downloadSnapshot(store, entry, path, {
      keys: await resolveChunkKeys(undefined),
      snapshots, // a page delta is restored from its chain
      ...(meter ? { onProgress: (bytes: number) => meter.add(bytes) } : {}),
    });
    meter?.finish();
    return { ...base, ok: true, durationMs: performance.now() - started, error: null };
  } catch (error) {
    const code = findSyncError(error)?.code ?? 'ERROR';
    ctx.out.progress(`seq ${entry.seq}: FAILED [${code}]`);
    return { ...base, ok: false, durationMs: performance.now() - started, error: { code, message: errorMessage(error) } };
  } finally {
    // One snapshot on disk at a time, however many are drilled.
    await rm(path, { force: true });
  }
}
