/**
 * Rebuilds a lost `manifest.json` from the snapshot objects still in the store (issue 11, bug 3). Every
 * snapshot object is immutable and its key names its generation and seq, so the manifest can be
 * recovered from a listing; what cannot be recovered from a listing (sizes, hashes) is read from the
 * objects themselves, and every entry is then verified exactly as a restore would (the library's own
 * `downloadSnapshot`: sizes, sha256 per chunk or of the whole file, quick_check) before it is listed.
 *
 * `rebuildManifest` only reads. `publishRebuiltManifest` writes the one object, create-only, so it can
 * never replace a manifest that appeared meanwhile. Nothing here deletes anything.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SyncError, errorMessage, findSyncError, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { ObjectStore, StoredObject } from '../store/store.ts';
import { CODECS, decodeToFile, fileExtension, type Codec } from './codec.ts';
import { MANIFEST_KEY, decodeManifest, encodeManifest, type Manifest, type SnapshotEntry } from './manifest.ts';
import { downloadSnapshot } from './restore.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.ts';
import { retrying, retryWhole } from '../store/retrying-store.ts';
import { rootHash } from './chunks/chunk-codec.ts';
import { CHUNK_PREFIX, decodeChunkIndex } from './chunks/chunk-index.ts';
import type { ChunkKeys } from './chunks/encryption.ts';

export const SNAPSHOT_PREFIX = 'snapshots/';

/** Verified snapshots kept as history in the rebuilt manifest (the writer's own retention trims it further). */
export const DEFAULT_HISTORY = 20;

/** A snapshot object as its key describes it: `snapshots/<generation>/<seq padded to 12>-<nonce>.<ext>`. */
export interface SnapshotCandidate {
  key: string;
  generation: string;
  seq: number;
  kind: 'full' | 'chunks';
  /** A full snapshot's codec (from its extension); chunked snapshots' chunks are always lz4-framed. */
  codec: Codec;
  /** The object's size in the store (a full snapshot: its compressed size; chunked: the index's size). */
  objectBytes: number;
  lastModified: Date;
}

const EXTENSIONS: ReadonlyArray<[string, Pick<SnapshotCandidate, 'kind' | 'codec'>]> = [
  ['chunks.json', { kind: 'chunks', codec: 'lz4' }],
  ...CODECS.map((codec): [string, Pick<SnapshotCandidate, 'kind' | 'codec'>] => [fileExtension(codec), { kind: 'full', codec }]),
];

/** Parses a snapshot key (see `snapshotKey` in manifest.ts); undefined for anything else under `snapshots/`. */
export function parseSnapshotKey(key: string): Omit<SnapshotCandidate, 'objectBytes' | 'lastModified'> | undefined {
  const match = /^snapshots\/([^/]+)\/(\d{12})-[^/.]+\.(.+)$/.exec(key);
  if (!match) return undefined;
  const [, generation, seqText, extension] = match;
  const kind = EXTENSIONS.find(([ext]) => ext === extension)?.[1];
  const seq = Number(seqText);
  if (!kind || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { key, generation: generation!, seq, ...kind };
}

/**
 * The listing's snapshot objects in the order to try them: newest seq first; for equal seqs (an upload
 * that died before publishing, next to the published one) the most recently written first.
 */
export function orderCandidates(objects: readonly StoredObject[]): { candidates: SnapshotCandidate[]; unrecognized: string[] } {
  const candidates: SnapshotCandidate[] = [];
  const unrecognized: string[] = [];
  for (const object of objects) {
    const parsed = parseSnapshotKey(object.key);
    if (parsed) candidates.push({ ...parsed, objectBytes: object.size, lastModified: object.lastModified });
    else unrecognized.push(object.key);
  }
  candidates.sort((a, b) => b.seq - a.seq || b.lastModified.getTime() - a.lastModified.getTime() || a.key.localeCompare(b.key));
  return { candidates, unrecognized };
}

/** The manifest for verified entries (newest first): the first is the latest. */
export function assembleManifest(verified: readonly SnapshotEntry[]): Manifest {
  const [latest] = verified;
  if (!latest) throw new Error('assembleManifest: no verified snapshot');
  return { format: 1, generation: latest.generation, seq: latest.seq, snapshots: [...verified] };
}

export type FindingOutcome = 'verified' | 'skipped' | 'not-examined';

export interface RebuildFinding {
  key: string;
  seq: number;
  generation: string;
  kind: 'full' | 'chunks';
  outcome: FindingOutcome;
  /** Why it was skipped or not examined. */
  reason: { code: string; message: string } | null;
  /** The entry it gets in the manifest (verified only). */
  entry: SnapshotEntry | null;
}

export interface RebuildResult {
  manifest: Manifest;
  /** One per snapshot object, in the order tried (newest seq first). */
  findings: RebuildFinding[];
  /** Keys under `snapshots/` that are not snapshot objects (left untouched, not listed). */
  unrecognized: string[];
  /** Objects under `chunks/` (for the report). */
  chunkObjects: number;
}

export interface RebuildOptions {
  /** For a store that is not retrying yet (the CLI's is): default `DEFAULT_RETRY`. */
  retry?: RetryPolicy;
  log: SyncLogger;
  /** Keys for encrypted chunked snapshots; an encrypted snapshot without the right key is a CONFIG error. */
  keys?: ChunkKeys | undefined;
  /**
   * Verifies one entry by restoring it into `path` (a temporary file, removed afterwards). Default: the
   * library's `downloadSnapshot` from `store`. A corrupt or missing snapshot throws SNAPSHOT_CORRUPT or
   * NOT_FOUND (skipped); anything else stops the rebuild.
   */
  verify?: (entry: SnapshotEntry, path: string) => Promise<unknown>;
  /** Where verification downloads go (default: the OS temp directory). */
  tempDir?: string;
  /** How many verified snapshots to keep (default 20); older candidates are not examined. */
  history?: number;
  /** Called as each candidate is decided, for progress output. */
  onFinding?: (finding: RebuildFinding) => void;
}

/** Reads what a full snapshot's entry needs (raw size, sha256) by decoding it; its blob metadata is not exposed by the store interface. */
async function measureFull(store: ObjectStore, candidate: SnapshotCandidate, path: string): Promise<SnapshotEntry> {
  try {
    // A decoded stream cannot resume: one that breaks mid-way restarts as a whole.
    const decoded = await retryWhole(store, `read ${candidate.key}`, () => decodeToFile(store.download(candidate.key), path, candidate.codec, candidate.key));
    return {
      seq: candidate.seq,
      generation: candidate.generation,
      key: candidate.key,
      codec: candidate.codec,
      bytes: decoded.rawBytes,
      sha256: decoded.sha256,
      compressedBytes: decoded.compressedBytes,
      createdAt: candidate.lastModified.toISOString(),
    };
  } finally {
    await rm(path, { force: true });
  }
}

/** A chunked snapshot's entry from its chunk index (the root hash is what `downloadSnapshot` checks the index against). */
async function measureChunked(store: ObjectStore, candidate: SnapshotCandidate): Promise<SnapshotEntry> {
  const object = await store.readSmall(candidate.key);
  if (!object) throw new SyncError('NOT_FOUND', `The chunk index ${candidate.key} disappeared while rebuilding.`);
  const index = decodeChunkIndex(object.body, candidate.key);
  return {
    seq: candidate.seq,
    generation: candidate.generation,
    key: candidate.key,
    kind: 'chunks',
    indexSha256: createHash('sha256').update(object.body).digest('hex'),
    codec: 'lz4',
    bytes: index.bytes,
    sha256: rootHash(index.bytes, index.chunkSize, index.chunks),
    compressedBytes: index.stored.reduce((a, b) => a + b, 0),
    createdAt: candidate.lastModified.toISOString(),
    ...(index.keyId ? { keyId: index.keyId } : {}),
  };
}

/** A snapshot that fails this way is skipped; any other failure (store unreachable, auth, a missing or wrong key) stops the rebuild. */
function skippable(error: unknown): boolean {
  return isSyncError(error, 'SNAPSHOT_CORRUPT') || isSyncError(error, 'NOT_FOUND');
}

/**
 * Lists `snapshots/`, builds an entry for each snapshot object (newest seq first) and verifies it;
 * the newest that verifies becomes the latest, older ones that verify are kept as history (up to
 * `history`). Writes nothing to the store. Throws NO_BACKUP when there is no snapshot object at all,
 * SNAPSHOT_CORRUPT when none verifies.
 */
export async function rebuildManifest(given: ObjectStore, options: RebuildOptions): Promise<RebuildResult> {
  const { log, keys } = options;
  const store = retrying(given, options.retry ?? DEFAULT_RETRY, log);
  const history = options.history ?? DEFAULT_HISTORY;
  const listed = await store.list(SNAPSHOT_PREFIX);
  const chunkObjects = (await store.list(CHUNK_PREFIX)).length;
  const { candidates, unrecognized } = orderCandidates(listed);
  if (candidates.length === 0) {
    throw new SyncError(
      'NO_BACKUP',
      `${store.location} holds no snapshot objects under ${SNAPSHOT_PREFIX}` +
        `${unrecognized.length > 0 ? ` (only ${unrecognized.length} unrecognized object(s), e.g. ${unrecognized[0]})` : ''}` +
        ` and ${chunkObjects} chunk(s): there is nothing to rebuild a manifest from. Check --prefix and the store settings.`,
    );
  }

  // Encrypted entries get the keys; plain ones none (a configured key must not make a plain snapshot look corrupt).
  const verify =
    options.verify ?? ((entry: SnapshotEntry, path: string) => downloadSnapshot(store, entry, path, { keys: entry.keyId ? keys : undefined }));
  const dir = await mkdtemp(join(resolve(options.tempDir ?? tmpdir()), 'dlb-rebuild-'));
  const findings: RebuildFinding[] = [];
  const verified: SnapshotEntry[] = [];
  const report = (finding: RebuildFinding) => {
    findings.push(finding);
    options.onFinding?.(finding);
  };
  try {
    for (const candidate of candidates) {
      const base = { key: candidate.key, seq: candidate.seq, generation: candidate.generation, kind: candidate.kind };
      if (verified.length >= history) {
        report({ ...base, outcome: 'not-examined', reason: { code: 'HISTORY_FULL', message: `${history} newer snapshots verified already` }, entry: null });
        continue;
      }
      const sameSeq = verified.find((e) => e.seq === candidate.seq);
      if (sameSeq) {
        report({ ...base, outcome: 'not-examined', reason: { code: 'DUPLICATE_SEQ', message: `seq ${candidate.seq} is already listed as ${sameSeq.key} (written later)` }, entry: null });
        continue;
      }
      const path = join(dir, `seq-${candidate.seq}.db`);
      try {
        const entry = candidate.kind === 'chunks' ? await measureChunked(store, candidate) : await measureFull(store, candidate, path);
        await verify(entry, path);
        verified.push(entry);
        report({ ...base, outcome: 'verified', reason: null, entry });
      } catch (error) {
        if (!skippable(error)) throw error;
        const code = findSyncError(error)!.code;
        log.warn({ seq: candidate.seq, key: candidate.key, code }, `snapshot seq ${candidate.seq} does not verify, skipped: ${errorMessage(error)}`);
        report({ ...base, outcome: 'skipped', reason: { code, message: errorMessage(error) }, entry: null });
      } finally {
        await rm(path, { force: true });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  if (verified.length === 0) {
    const seqs = candidates.map((c) => c.seq);
    throw new SyncError(
      'SNAPSHOT_CORRUPT',
      `No snapshot in ${store.location} verifies: found ${candidates.length} snapshot object(s) (seq ${Math.min(...seqs)}..${Math.max(...seqs)}) and ${chunkObjects} chunk(s); ` +
        `${findings.map((f) => `seq ${f.seq}: ${f.reason?.code ?? f.outcome}`).join('; ')}. No manifest was written and nothing was deleted. ` +
        `Restore from another copy of the store, or point the app at a new prefix to start empty.`,
    );
  }
  return { manifest: assembleManifest(verified), findings, unrecognized, chunkObjects };
}

/**
 * Publishes a rebuilt manifest, create-only (`ifNoneMatch: '*'`): a manifest that appeared meanwhile (a
 * writer started, someone put the old one back) is never replaced. `store` retrying (the CLI's is):
 * a retried write whose first attempt landed comes back CONFLICT and is recognized below.
 */
export async function publishRebuiltManifest(store: ObjectStore, manifest: Manifest): Promise<{ etag: string }> {
  const body = encodeManifest(manifest);
  try {
    return await store.writeSmall(MANIFEST_KEY, body, { ifNoneMatch: '*' });
  } catch (error) {
    if (!isSyncError(error, 'CONFLICT')) throw error;
    // A retried write whose first attempt landed (response lost) finds its own manifest: that is success.
    const current = await store.readSmall(MANIFEST_KEY).catch(() => null);
    if (current && current.body.equals(body)) return { etag: current.etag };
    let what = 'one';
    try {
      if (current) what = `one at seq ${decodeManifest(current.body, store.location).seq}`;
    } catch {
      what = 'an unreadable one';
    }
    throw new SyncError(
      'CONFLICT',
      `A ${MANIFEST_KEY} appeared in ${store.location} while the manifest was being rebuilt (${what}): a writer started there, or someone put it back. ` +
        `It was not replaced. Check it with \`npx drizzle-libsql-blob status\`; rebuild only if it is removed again.`,
      { cause: error },
    );
  }
}
