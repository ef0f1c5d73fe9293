import { SyncError } from '../errors.ts';
import { CODECS, fileExtension, type Codec } from './codec.ts';

/** The one mutable object in the store: a pointer to the latest snapshot plus retained history. */
export const MANIFEST_KEY = 'manifest.json';

export interface SnapshotEntry {
  /** Monotonic across the store: every publish increments it. */
  seq: number;
  /** Lineage id: a new one starts when a database starts without a backup to continue from. */
  generation: string;
  /** Object key of the immutable snapshot blob, relative to the store prefix. */
  key: string;
  codec: Codec;
  /** Uncompressed database size and sha256: what restore verifies. */
  bytes: number;
  sha256: string;
  compressedBytes: number;
  createdAt: string;
}

export interface Manifest {
  format: 1;
  generation: string;
  seq: number;
  /** Newest first; `snapshots[0]` is the latest. */
  snapshots: SnapshotEntry[];
}

export function latestSnapshot(manifest: Manifest): SnapshotEntry {
  return manifest.snapshots[0]!;
}

export function snapshotKey(generation: string, seq: number, codec: Codec, nonce: string): string {
  return `snapshots/${generation}/${String(seq).padStart(12, '0')}-${nonce}.${fileExtension(codec)}`;
}

export function encodeManifest(manifest: Manifest): Buffer {
  return Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
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
  if (!Array.isArray(m.snapshots) || m.snapshots.length === 0) throw bad('no snapshots listed');
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
  }
  if (m.snapshots[0]!.seq !== m.seq) throw bad('seq does not match the latest snapshot');
  return m as Manifest;
}
