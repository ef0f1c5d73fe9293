import { SyncError } from '../errors.ts';
import { CODECS, fileExtension, type Codec } from './codec.ts';
import { isSchemaPosition, type SchemaPosition } from './schema-position.ts';

/** The one mutable object in the store: a pointer to the latest snapshot plus retained history. */
export const MANIFEST_KEY = 'manifest.json';

export interface SnapshotEntry {
  /** Monotonic across the store: every publish increments it. */
  seq: number;
  /** Lineage id: a new one starts when a database starts without a backup to continue from. */
  generation: string;
  /** Object key of the immutable snapshot blob (a chunked snapshot: its chunk index), relative to the store prefix. */
  key: string;
  /**
   * 'full': one compressed file. 'chunks': content-addressed chunks listed by the index at `key`.
   * 'delta': the pages changed since the restore point `parent`, on top of the chunk set `base`
   * (src/sync/chunks/delta-codec.ts). Default 'full'.
   */
  kind?: 'full' | 'chunks' | 'delta';
  /** Deltas: the restore point this one extends (a delta, or the chunk set `base`). */
  parent?: string;
  /** Deltas: the chunk set the chain of deltas starts from. */
  base?: string;
  /** Deltas: how many pages it carries. */
  pages?: number;
  /** Chunked snapshots under encryption: the key's public id (a different key is named as such on restore). */
  keyId?: string;
  /** Chunked snapshots: sha256 of the chunk index object, so any damage to it is caught before it is used. */
  indexSha256?: string;
  codec: Codec;
  /**
   * Uncompressed database size and sha256: what restore verifies. Chunked: the root hash of the chunk
   * addresses. Delta: the sha256 of the delta object's stored bytes (the database it ends in is its
   * base's, verified, with each delta of the chain verified and applied in order).
   */
  bytes: number;
  sha256: string;
  compressedBytes: number;
  createdAt: string;
  /**
   * Where the database stands in drizzle's migration history at this restore point (none applied:
   * NO_MIGRATIONS). Absent: not recorded (a restore point written before positions were).
   */
  schema?: SchemaPosition;
  /** Set on the first snapshot after a point-in-time restore: which snapshot it rolled back to, and the request. */
  rolledBackTo?: { seq: number; target: string };
}

export interface Manifest {
  format: 1;
  /** Empty (with `seq` 0 and no snapshots) until the first snapshot: the manifest exists before any
   * snapshot because it is also the blob the writer's lease is taken on. */
  generation: string;
  seq: number;
  /** Newest first; `snapshots[0]` is the latest. */
  snapshots: SnapshotEntry[];
  /**
   * Chunks no retained snapshot references any more, with when that became so: deleted once older than
   * the grace period (a reader that started from an older manifest may still be fetching them).
   */
  garbage?: Array<{ address: string; since: string }>;
  /**
   * This manifest's history: set by the first publish on a manifest without one (a new store, one from
   * an older version, or a manifest replaced by hand) and kept by every later publish. Garbage
   * collection only deletes unpublished leftovers written after `since`, so objects of an earlier
   * history (a manifest lost or replaced) are never taken for this one's.
   */
  lineage?: Lineage;
}

export interface Lineage {
  id: string;
  /** Objects last modified before this (store clock) may belong to an earlier history. */
  since: string;
}

/**
 * How far the store's clock may be ahead of ours when a lineage starts: Azure refuses shared-key
 * requests dated more than 15 minutes off, so a writer's clock is within this of the service's.
 */
export const LINEAGE_CLOCK_MARGIN_MS = 15 * 60_000;

/** The lineage a publish on top of `current` carries: the same one, or a new one starting now (plus the clock margin). */
export function nextLineage(current: Manifest | undefined, now: number, newId: () => string): Lineage {
  return current?.lineage ?? { id: newId(), since: new Date(now + LINEAGE_CLOCK_MARGIN_MS).toISOString() };
}

/**
 * Whether an object no retained snapshot references may be collected as an unpublished leftover of
 * this manifest's history: only under a lineage the manifest already had before this publish (never
 * on a new or replaced manifest), only if written since the lineage began, and only once `minAgeMs`
 * old (an upload may still be in flight).
 */
export function isOwnLeftover(lastModified: Date, lineage: Lineage | undefined, now: number, minAgeMs: number): boolean {
  if (!lineage) return false;
  const modified = lastModified.getTime();
  return modified >= Date.parse(lineage.since) && now - modified >= minAgeMs;
}

export const EMPTY_MANIFEST: Manifest = { format: 1, generation: '', seq: 0, snapshots: [] };

/** The latest snapshot, or undefined for an empty manifest (no backup yet). */
export function latestSnapshot(manifest: Manifest): SnapshotEntry | undefined {
  return manifest.snapshots[0];
}

/**
 * Point-in-time target: the newest snapshot taken at or before `at`, the one with sequence `seq`, or
 * the newest whose schema position precedes a migration (`beforeMigration`: its journal tag or hash).
 */
export type RestoreTarget = { at: Date | string } | { seq: number } | { beforeMigration: string };

/** What names a migration's `created_at`: the app's migrations journal, when it gave its folder. */
export interface MigrationLookup {
  find(name: string): { when: number } | undefined;
}

/** A stable text for a target, recorded in the manifest so the same request is not replayed on every start. */
export function describeTarget(target: RestoreTarget): string {
  if ('seq' in target) return `seq:${target.seq}`;
  if ('beforeMigration' in target) return `before-migration:${target.beforeMigration}`;
  return `at:${new Date(target.at).toISOString()}`;
}

/**
 * A migration's `created_at` (the journal's `when`): from the app's journal if it holds it, else from
 * the restore points whose position ends at it (their label's tag or hash, or a hash prefix of 8+).
 */
export function migrationTime(snapshots: readonly SnapshotEntry[], name: string, journal?: MigrationLookup): number | undefined {
  const fromJournal = journal?.find(name)?.when;
  if (fromJournal !== undefined) return fromJournal;
  const named = snapshots.filter((s) => s.schema && s.schema.migrations > 0 && (s.schema.tag === name || s.schema.hash === name || (name.length >= 8 && s.schema.hash.startsWith(name))));
  return named.length > 0 ? Math.min(...named.map((s) => s.schema!.createdAt)) : undefined;
}

/** Resolves a target against a manifest's history (newest first). Undefined if nothing matches (`noMatch` says why). */
export function selectSnapshot(manifest: Manifest, target: RestoreTarget, journal?: MigrationLookup): SnapshotEntry | undefined {
  if ('seq' in target) return manifest.snapshots.find((s) => s.seq === target.seq);
  // Newest by its time, not by list order: a compaction's chunk set holds the file as of its pin, and is
  // listed after (published with) deltas taken meanwhile.
  const newest = (eligible: (s: SnapshotEntry) => boolean) => {
    let best: SnapshotEntry | undefined;
    for (const s of manifest.snapshots) if (eligible(s) && (!best || Date.parse(s.createdAt) > Date.parse(best.createdAt))) best = s;
    return best;
  };
  if ('beforeMigration' in target) {
    const when = migrationTime(manifest.snapshots, target.beforeMigration, journal);
    // Only restore points that recorded their position: one that did not may hold any schema.
    return when === undefined ? undefined : newest((s) => s.schema !== undefined && s.schema.createdAt < when);
  }
  const at = new Date(target.at).getTime();
  return newest((s) => Date.parse(s.createdAt) <= at);
}

/** Why `selectSnapshot` found nothing for `target`, naming what the store retains. */
export function noMatch(manifest: Manifest, target: RestoreTarget, location: string, journal?: MigrationLookup): string {
  const oldest = manifest.snapshots.at(-1)!;
  const retained = `${location} retains seq ${oldest.seq} (${oldest.createdAt}) to seq ${manifest.seq}; list them with \`npx drizzle-libsql-blob list\``;
  if ('seq' in target) return `No retained snapshot has seq ${target.seq}: ${retained}.`;
  if ('at' in target) return `No retained snapshot was taken at or before ${new Date(target.at).toISOString()}: ${retained}.`;
  const name = target.beforeMigration;
  if (migrationTime(manifest.snapshots, name, journal) === undefined) {
    return (
      `No migration named ${JSON.stringify(name)} is known: it is not in ${journal ? 'the migrations folder' : 'a migrations folder (none given)'} and no retained restore point's position ends at it. ` +
      `Name it by its journal tag with the folder given (migrations.folder, or the CLI's --migrations), or by a tag or hash the "migrations" column of \`npx drizzle-libsql-blob list\` shows.`
    );
  }
  const unlabelled = manifest.snapshots.filter((s) => s.schema === undefined).length;
  return `No retained restore point precedes migration ${name}: ${retained}${unlabelled > 0 ? ` (${unlabelled} of them recorded no schema position, written by an older version: pick one by seq)` : ''}.`;
}

export interface RetentionPolicy {
  /** Keep at most this many snapshots. */
  count: number;
  /** Drop snapshots older than this (ms); Infinity keeps any age. */
  maxAgeMs: number;
}

/**
 * Newest first in, newest first out. The latest snapshot is always kept, whatever its age, and so is
 * every restore point a kept delta is built on (its chain back to its chunk set): a restore point is
 * kept whole or not at all.
 */
export function applyRetention(snapshots: SnapshotEntry[], policy: RetentionPolicy, now = Date.now()): SnapshotEntry[] {
  const kept = new Set(snapshots.filter((s, i) => i === 0 || (i < policy.count && now - Date.parse(s.createdAt) <= policy.maxAgeMs)));
  for (const entry of [...kept]) {
    const chain = deltaChain(snapshots, entry);
    if (chain) for (const link of [chain.base, ...chain.deltas]) kept.add(link);
  }
  return snapshots.filter((s) => kept.has(s));
}

/**
 * What restoring `entry` takes: its chunk set and the deltas on top of it, oldest first (a chunk set:
 * itself and none; a full snapshot: undefined). Undefined too when a link of a delta's chain is not
 * in `snapshots`: that restore point cannot be restored.
 */
export function deltaChain(snapshots: readonly SnapshotEntry[], entry: SnapshotEntry): { base: SnapshotEntry; deltas: SnapshotEntry[] } | undefined {
  if (entry.kind === 'chunks') return { base: entry, deltas: [] };
  if (entry.kind !== 'delta') return undefined;
  const byKey = new Map(snapshots.map((s) => [s.key, s]));
  const deltas: SnapshotEntry[] = [];
  for (let at: SnapshotEntry | undefined = entry; at; at = byKey.get(at.parent!)) {
    if (at.kind === 'chunks') return at.key === entry.base ? { base: at, deltas: deltas.reverse() } : undefined;
    if (at.kind !== 'delta' || at.base !== entry.base || deltas.length > snapshots.length) return undefined;
    deltas.push(at);
  }
  return undefined;
}

export function snapshotKey(generation: string, seq: number, codec: Codec | 'chunks' | 'delta', nonce: string): string {
  const extension = codec === 'chunks' ? 'chunks.json' : codec === 'delta' ? 'delta' : fileExtension(codec);
  return `snapshots/${generation}/${String(seq).padStart(12, '0')}-${nonce}.${extension}`;
}

/**
 * One restore point per line: every upload rewrites the whole manifest, and with page deltas it lists
 * up to a chain's worth of them (`snapshot.maxDeltas`), so no indentation inside an entry (a third of
 * its bytes); still one entry per line for whoever reads it by hand (`drizzle-libsql-blob list` too).
 */
export function encodeManifest(manifest: Manifest): Buffer {
  const { snapshots, ...rest } = manifest;
  const head = JSON.stringify(rest).slice(0, -1);
  const entries = snapshots.length === 0 ? '' : `\n${snapshots.map((s) => `  ${JSON.stringify(s)}`).join(',\n')}\n`;
  return Buffer.from(`${head},"snapshots":[${entries}]}\n`);
}

/** Parses and validates; a manifest we cannot trust is an error, never "no backup". */
export function decodeManifest(body: Buffer, location: string): Manifest {
  const bad = (why: string) =>
    new SyncError('SNAPSHOT_CORRUPT', `The manifest at ${location}/${MANIFEST_KEY} is unreadable (${why}); fix or remove it by hand after checking the snapshots it lists.`);
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  const m = value as Partial<Manifest>;
  if (m === null || typeof m !== 'object' || m.format !== 1) throw bad('unknown format');
  if (typeof m.generation !== 'string' || !Number.isSafeInteger(m.seq)) throw bad('missing generation or seq');
  if (!Array.isArray(m.snapshots)) throw bad('no snapshot list');
  if (m.snapshots.length === 0 && m.seq !== 0) throw bad(`seq ${m.seq} but no snapshots listed`);
  for (const s of m.snapshots) {
    const ok =
      s &&
      typeof s.key === 'string' &&
      Number.isSafeInteger(s.seq) &&
      typeof s.generation === 'string' &&
      CODECS.includes(s.codec) &&
      Number.isSafeInteger(s.bytes) &&
      Number.isSafeInteger(s.compressedBytes) &&
      typeof s.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(s.sha256);
    if (!ok) throw bad(`invalid snapshot entry ${JSON.stringify(s)}`);
    if (s.kind === 'delta' && !(typeof s.parent === 'string' && typeof s.base === 'string')) throw bad(`delta seq ${s.seq} names no parent or base`);
    if (s.schema !== undefined && !isSchemaPosition(s.schema)) throw bad(`seq ${s.seq} has an invalid schema position`);
  }
  if (m.snapshots.length > 0 && m.snapshots[0]!.seq !== m.seq) throw bad('seq does not match the latest snapshot');
  if (m.lineage !== undefined && !(typeof m.lineage?.id === 'string' && typeof m.lineage.since === 'string' && Number.isFinite(Date.parse(m.lineage.since)))) throw bad('bad lineage');
  if (m.garbage !== undefined && !(Array.isArray(m.garbage) && m.garbage.every((g) => typeof g?.address === 'string' && typeof g.since === 'string'))) throw bad('bad garbage list');
  return m as Manifest;
}
