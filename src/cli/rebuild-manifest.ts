/**
 * `rebuild-manifest`: recreates a lost `manifest.json` from the snapshot objects in the store (the
 * library refuses to start on such a store with MANIFEST_MISSING). Every snapshot object is verified
 * with the library's own restore path before it is listed; the newest that verifies becomes the
 * latest. Publishes create-only (never over a manifest that exists), never deletes anything, and with
 * --dry-run writes nothing at all.
 */
import { MANIFEST_KEY, type SnapshotEntry } from '../sync/manifest.ts';
import { publishRebuiltManifest, rebuildManifest, type RebuildFinding } from '../sync/manifest-rebuild.ts';
import { downloadSnapshot } from '../sync/restore.ts';
import { resolveChunkKeys } from '../sync/chunks/encryption.ts';
import { SyncError } from '../errors.ts';
import type { CliContext } from './context.ts';
import { formatBytes, table } from './format.ts';
import { chunkProgress, progressStore } from './progress.ts';
import { readRemote } from './remote.ts';

export interface RebuildManifestOptions {
  dryRun: boolean;
  tempDir?: string;
}

const OUTCOME_TEXT: Record<RebuildFinding['outcome'], string> = { verified: 'ok', skipped: 'SKIPPED', 'not-examined': 'not examined' };

export async function rebuildManifestCommand(ctx: CliContext, options: RebuildManifestOptions): Promise<number> {
  const { store, out } = ctx;
  const existing = await readRemote(store);
  if (existing) {
    throw new SyncError(
      'CONFLICT',
      `${store.location} already holds a ${MANIFEST_KEY} (seq ${existing.manifest.seq}, generation ${existing.manifest.generation || '(none yet)'}): ` +
        `there is nothing to rebuild, and it is never replaced. Nothing was changed.`,
    );
  }
  // Encrypted incremental snapshots: the key comes from SNAPSHOT_ENCRYPTION_KEY, as for the app and `restore`.
  const keys = await resolveChunkKeys(undefined);
  const result = await rebuildManifest(store, {
    log: out.log,
    keys,
    ...(options.tempDir === undefined ? {} : { tempDir: options.tempDir }),
    verify: async (entry: SnapshotEntry, path: string) => {
      const meter = chunkProgress(ctx, entry);
      await downloadSnapshot(progressStore(ctx, [entry]), entry, path, {
        keys: entry.keyId ? keys : undefined,
        ...(meter ? { onProgress: (bytes: number) => meter.add(bytes) } : {}),
      });
      meter?.finish();
    },
    onFinding: (f) => {
      if (f.outcome === 'verified') out.progress(`seq ${f.seq}: verified (${f.key})`);
      else if (f.outcome === 'skipped') out.progress(`seq ${f.seq}: SKIPPED [${f.reason!.code}] ${f.key}`);
    },
  });

  const { manifest, findings, unrecognized, chunkObjects } = result;
  const skipped = findings.filter((f) => f.outcome === 'skipped');
  const etag = options.dryRun ? null : (await publishRebuiltManifest(store, manifest)).etag;

  out.result({
    store: store.location,
    dryRun: options.dryRun,
    published: etag !== null,
    found: { snapshotObjects: findings.length, chunkObjects, unrecognized },
    snapshots: findings.map(({ entry, ...f }) => ({ ...f, bytes: entry?.bytes ?? null, createdAt: entry?.createdAt ?? null })),
    manifest,
  });

  out.line(`found ${findings.length} snapshot object(s) and ${chunkObjects} chunk(s) in ${store.location}`);
  const rows = findings.map((f) => [
    String(f.seq),
    f.kind,
    f.entry ? formatBytes(f.entry.bytes) : '',
    OUTCOME_TEXT[f.outcome],
    f.key,
    f.reason ? `${f.reason.code}: ${f.reason.message}` : '',
  ]);
  for (const line of table(['seq', 'kind', 'bytes', 'result', 'key', 'reason'], rows, [0, 2])) out.line(line);
  for (const key of unrecognized) out.line(`not a snapshot object, left alone: ${key}`);
  const latest = manifest.snapshots[0]!;
  out.line(
    `rebuilt ${MANIFEST_KEY}: latest seq ${latest.seq} (generation ${latest.generation}, ${formatBytes(latest.bytes)}), ` +
      `${manifest.snapshots.length} snapshot(s) listed, ${skipped.length} skipped`,
  );
  if (skipped.length > 0) {
    out.line(
      `note: skipped snapshot objects are not listed; a writer's first snapshot deletes unlisted snapshot objects older than an hour ` +
        `(and unreferenced chunks after the GC grace period). Copy them away before starting the app if you want to inspect them.`,
    );
  }
  out.line(options.dryRun ? 'dry run: nothing was written' : `published ${MANIFEST_KEY} to ${store.location}`);
  return 0;
}
