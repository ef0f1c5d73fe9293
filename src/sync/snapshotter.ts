import { createHash, randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { SyncError, errorMessage, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { ObjectStore, StoredObject } from '../store/store.ts';
import type { Codec } from './codec.ts';
import type { SidecarState } from '../local/sidecar.ts';
import type { WriterLease } from './lease.ts';
import { MANIFEST_KEY, applyRetention, deltaChain, encodeManifest, isOwnLeftover, latestSnapshot, nextLineage, snapshotKey, type Lineage, type Manifest, type RetentionPolicy, type SnapshotEntry } from './manifest.ts';
import { readHead, type RemoteHead } from './restore.ts';
import { POOL_SIZE, runInWorker, startWorkerJob, warmWorkers, workersReady } from './run-in-worker.ts';
import { CHUNK_PREFIX, chunkKey, decodeChunkIndex, encodeChunkIndex, type ChunkIndex } from './chunks/chunk-index.ts';
import type { ChunkKeys } from './chunks/encryption.ts';
import type { ChunksRecord, ChunksResult, DeltaResult } from './worker-protocol.ts';
import { ChangedPages, type ScanResult } from './wal/changed-pages.ts';
import { databaseFileStamp, readWalIndex } from './wal/wal-scan.ts';
import type { SchemaPosition } from './schema-position.ts';

/** Unpublished snapshot objects younger than this may belong to an upload in flight. */
const ORPHAN_MIN_AGE_MS = 3_600_000;

/** Chunks uploaded at once: memory is chunk size x this. */
const UPLOAD_CONCURRENCY = 4;

/** After a compaction failed, the next one starts no sooner than this (the deltas go on meanwhile). */
const COMPACTION_RETRY_MS = 30_000;

/**
 * A compaction: a chunk set read (one pinned read transaction, in a worker) and uploaded beside the
 * deltas, so an upload never waits seconds for one. Published by a later upload together with a
 * level-1 delta on it carrying every page changed since its pin (the record watches them), in one
 * manifest write; dropped when the record or the store moved on without it.
 */
interface Compaction {
  /** The chunk set it replaces: the record's baseline when it started. */
  baseline: string;
  /** When its image was pinned (its restore point's createdAt) and the record position it holds the file up to. */
  at: string;
  upTo: number;
  /** Chunks it may reference: garbage collection leaves them alone until it is published or dropped. */
  chunks: Set<string>;
  /** Settles (never rejects) once its chunks are in the store (`ready`) or it failed (`failed`). */
  done: Promise<void>;
  ready?: { result: ChunksResult; wholeFile: boolean; known: Map<string, KnownChunk> };
  failed?: unknown;
  /** New chunks it read (uploaded or about to be): deleted when it is dropped, ready or not. */
  fresh: ChunksResult['fresh'];
  /** Stops its worker job (reading chunks): the drop's first step. */
  abort(): Promise<void>;
  /**
   * Set by a drop: it stops at its next chunk (read or upload). A drop runs in an upload, and a
   * compaction gives that upload up to 50 ms per chunk: waiting for all of them took seconds.
   */
  dropping?: boolean;
}

/**
 * Every this many uploads that read only the chunks the page record names, one reads the whole file
 * again: whatever the record might ever have missed is then in the store within this many uploads.
 */
export const WHOLE_FILE_EVERY = 32;

/** The checkpointer's side of the page record (src/sync/checkpointer.ts): the record, and a pause for reading the WAL. */
export interface WalAccess {
  record: ChangedPages | undefined;
  /** Until resume(): no checkpoint scans the WAL; one in flight may still fold what it scanned. */
  pause(): Promise<void>;
  resume(): void;
  /** Resolves once every fold of the checkpoint in flight has its outcome in the record (see recordScanAfterFolds). */
  folded(): Promise<void>;
}

/** Deltas on one chunk set stop once their stored bytes reach this share of the chunk set's... */
export const DELTA_BYTES_SHARE = 0.1;
/** ...or this, if more (a small database's chunk set is small). */
export const DELTA_MIN_BYTES = 4 << 20;
/**
 * A delta is built in memory (its pages, then their lz4): one that would carry more pages than this is a
 * chunk set instead. 1% of 1M rows updated at random changes ~80 MiB of pages (rows and an index): as a
 * delta 36 MiB uploaded in 1.3 s and a peak of about +225 MiB; as a chunk set 272 MiB in 6.7 s.
 */
export const MAX_DELTA_PAGE_BYTES = 128 << 20;

/**
 * Every this many deltas, one (level 1) extends the previous level-1 delta (or the chunk set) instead of
 * the latest and carries every page changed since: a restore point's chain then holds at most
 * maxDeltas / LEVEL_SPAN level-1 deltas plus LEVEL_SPAN - 1 others, not every delta (a restore pays
 * per object: 200 deltas of a few KiB cost 2.5x a 100k-row chunk set's restore).
 */
export const LEVEL_SPAN = 16;
/**
 * A level-1 delta due by count is not made while it would carry again more than this (a burst's pages,
 * say): callers wait on that upload (a 5.5 MiB level-1 delta took 400 ms on Azurite at 100 writes/s,
 * and held 40 durable() calls past 100 ms). An anchor starts the level instead (ANCHOR_MAX_CHAIN), or
 * on a long chain a compaction, which carries them in the background; level-0 deltas meanwhile...
 */
export const LEVEL_CARRY_BYTES = 1 << 20;
/** ...up to this many, past which the level-1 delta is made whatever it carries (compactions failing, say). */
export const LEVEL_SPAN_MAX = 16 * LEVEL_SPAN;
/**
 * A level-0 delta carrying more than LEVEL_CARRY_BYTES, or due as a level-1 delta that would carry
 * more, starts a level itself (an anchor): the next level-1 delta extends it rather than carrying the
 * level's pages again. The anchor's chain is the latest's plus one, so anchors lengthen chains: one is
 * made only while the latest's chain holds fewer deltas than this.
 */
export const ANCHOR_MAX_CHAIN = 4 * LEVEL_SPAN;

/**
 * What an upload writes: the whole file as chunks, only the chunks changed since `baseline`, or a page
 * delta on `parent`, which may start a compaction (a chunk set read and uploaded beside the deltas, see
 * Snapshotter) reading the chunks changed since its base, or every WHOLE_FILE_EVERY-th the whole file.
 */
export type UploadPlan =
  | { kind: 'whole-file'; why: string }
  | { kind: 'touched-chunks'; baseline: SnapshotEntry }
  | { kind: 'delta'; parent: SnapshotEntry; base: SnapshotEntry; level: 0 | 1; anchor?: true; compact?: 'touched-chunks' | 'whole-file' };

/**
 * What the next upload may be (pure; `levelPageBytes`: the pages the deltas since the last level-1
 * carried). Anything short of the whole file needs the page record whole
 * and holding its pages against the store's latest restore point: the record's head is that point,
 * and its chain starts at the record's baseline (so the pages since then are exactly what the store
 * lacks). A roll-back is recorded on a whole-file read. Then a delta, and once its chain passes
 * `maxDeltas` or the byte bounds it also starts a compaction (unless one is `compacting` already: the
 * chain grows until that one is published). A change too large for a delta is a chunk set, reading
 * the changed chunks, or every WHOLE_FILE_EVERY-th chunk set the whole file.
 */
export function planUpload(
  record: Pick<ChangedPages, 'lost' | 'baselineKey' | 'headKey' | 'uploadsSinceWholeFile'> & Partial<Pick<ChangedPages, 'levelKey' | 'deltasSinceLevel' | 'deltasSinceBaseline'>> | undefined,
  snapshots: readonly SnapshotEntry[],
  rollingBack: boolean,
  maxDeltas: number,
  pendingPageBytes: number,
  compacting = false,
  levelPageBytes = Number.POSITIVE_INFINITY,
): UploadPlan {
  const latest = snapshots[0];
  if (!record) return { kind: 'whole-file', why: 'the first upload of this process starts the record of changed pages' };
  if (record.lost !== undefined) return { kind: 'whole-file', why: `the record of changed pages broke: ${record.lost}` };
  if (!latest) return { kind: 'whole-file', why: 'the store has no restore point yet' };
  if (rollingBack) return { kind: 'whole-file', why: 'a roll-back is recorded on a whole-file upload' };
  const chain = deltaChain(snapshots, latest);
  if (!chain || chain.base.key !== record.baselineKey || record.headKey !== latest.key) {
    return { kind: 'whole-file', why: "the store's latest restore point is not the one the record of changed pages extends" };
  }
  const wholeFileDue = record.uploadsSinceWholeFile >= WHOLE_FILE_EVERY - 1;
  if (maxDeltas > 0 && pendingPageBytes <= MAX_DELTA_PAGE_BYTES) {
    // What a restore of the latest downloads on top of its chunk set, and every delta on that chunk set.
    const deltaBytes = chain.deltas.reduce((sum, d) => sum + d.compressedBytes, 0);
    // Retention may have dropped deltas off the latest's chain: the record counts them all.
    const deltasOnBase = Math.max(record.deltasSinceBaseline ?? 0, snapshots.filter((s) => s.kind === 'delta' && s.base === chain.base.key).length);
    const byteBound = Math.max(DELTA_MIN_BYTES, DELTA_BYTES_SHARE * chain.base.compressedBytes);
    // Level 1 every LEVEL_SPAN-th delta while it carries little again, or sooner when it costs at most
    // this upload again: the pages the level-0 deltas since carried are no more than the pending ones
    // (a burst's large delta then starts a level instead of being carried again in a callers' upload).
    // A large delta, or one due by count on a heavy level, is an anchor instead while chains are short;
    // on a long chain a heavy level waits for a compaction (at most LEVEL_SPAN_MAX deltas).
    const sinceLevel = record.deltasSinceLevel ?? 0;
    const byCount = sinceLevel >= LEVEL_SPAN - 1;
    const light = levelPageBytes <= LEVEL_CARRY_BYTES;
    const canAnchor = chain.deltas.length < ANCHOR_MAX_CHAIN;
    const levelDue = sinceLevel > 0 && (levelPageBytes <= pendingPageBytes || (byCount && light) || sinceLevel >= LEVEL_SPAN_MAX - 1);
    const anchor = !levelDue && canAnchor && (pendingPageBytes > LEVEL_CARRY_BYTES || (byCount && !light));
    const heavyLevel = byCount && !levelDue && !anchor;
    const compact = compacting || (deltasOnBase < maxDeltas && deltaBytes < byteBound && !heavyLevel) ? {} : { compact: wholeFileDue ? ('whole-file' as const) : ('touched-chunks' as const) };
    const levelParent = levelDue ? snapshots.find((s) => s.key === record.levelKey) : undefined;
    if (levelParent && (levelParent.key === chain.base.key || chain.deltas.includes(levelParent))) return { kind: 'delta', parent: levelParent, base: chain.base, level: 1, ...compact };
    return { kind: 'delta', parent: latest, base: chain.base, level: 0, ...(anchor ? { anchor } : {}), ...compact };
  }
  if (wholeFileDue) return { kind: 'whole-file', why: `every ${WHOLE_FILE_EVERY}th chunk set reads the whole file` };
  return { kind: 'touched-chunks', baseline: chain.base };
}

export interface SnapshotInfo {
  seq: number;
  generation: string;
  key: string;
  at: string;
  bytes: number;
  compressedBytes: number;
  sha256: string;
  durationMs: number;
  /** False when the database was byte-identical to the latest snapshot, so nothing was uploaded. */
  uploaded: boolean;
  /** Commits this snapshot covers (filled in by the controller). */
  commits: number;
  /**
   * Bytes of the database this snapshot read: the whole file, or (incremental, following the page
   * record) only the chunks holding pages changed since the last upload.
   */
  readBytes: number;
  /** What was uploaded: a full copy, a chunk set, or a page delta. */
  kind: 'full' | 'chunks' | 'delta';
  /** Its restore point's place in drizzle's migration history (filled in by the controller; absent: none applied, or full mode). */
  schema?: SchemaPosition;
}

interface SnapshotterOptions {
  /** A retrying store (`retrying()`): every call here is retried there, transient failures only. */
  store: ObjectStore;
  dbPath: string;
  codec: Codec;
  retention: RetentionPolicy;
  log: SyncLogger;
  /** Every manifest write carries its id: the store refuses it once another instance holds the lease. */
  lease: WriterLease;
  /** 'full': one compressed copy per snapshot. 'incremental': content-addressed chunks, only new ones uploaded. */
  mode: 'full' | 'incremental';
  /** Incremental: bytes per chunk (whole pages). */
  chunkSize: number;
  /** Incremental: page deltas on one chunk set before the next chunk set (0: none). */
  maxDeltas: number;
  /** Incremental: encrypt chunks (AES-256-GCM) with these keys. */
  keys: ChunkKeys | undefined;
  /** Incremental: unreferenced chunks are deleted this long after they became unreferenced. */
  gcGraceMs: number;
  /** Called just before the manifest write, so a crash right after it can be recognized at the next start. */
  beforePublish: (entry: SnapshotEntry) => void;
  /** drizzle's migrations table, read for each restore point's schema position. */
  migrationsTable: string;
  /** Names a position in the app's migrations journal (its tag), when the app gave its folder. */
  labelSchema?: (position: SchemaPosition) => SchemaPosition;
}

/**
 * Takes one consistent copy off the main thread, uploads it as an immutable blob, then publishes the
 * manifest with a conditional write so an older writer can never replace a newer snapshot. A crash
 * anywhere before the manifest write leaves the previous manifest valid.
 */
export class Snapshotter {
  readonly #o: SnapshotterOptions;
  /** The store's head as we last saw or wrote it; undefined until read (restore: 'skip'). */
  #head: RemoteHead | null | undefined;
  /** Chunk indexes read or written by this process (immutable, so cached by key). */
  readonly #indexes = new Map<string, ChunkIndex>();
  /** Garbage chunks deleted since the last publish (dropped from the next manifest's list). */
  readonly #deletedGarbage = new Set<string>();
  /** Garbage chunks found written again: their grace period starts over. */
  readonly #remarked = new Map<string, string>();
  /** Whether this process has listed the store's chunks for orphans yet. */
  #swept = false;
  /** The deletions after the publishes so far, one after the other (see #tidyLater). */
  #tidying: Promise<void> = Promise.resolve();
  /** Whether this process has swept unpublished snapshot objects yet. */
  #sweptSnapshots = false;
  /** Incremental mode, once the controller attached the checkpointer: the page record. */
  #wal: WalAccess | undefined;
  /** A record started at start-up (seedRecord), handed to the checkpointer when it is attached. */
  #seed: ChangedPages | undefined;
  /** The compaction running beside the deltas, or ready to be published; at most one. */
  #compaction: Compaction | undefined;
  /** After a failed compaction: no new one before this (ms since epoch). */
  #compactionRetryAt = 0;
  /** Told when a compaction is ready, so an upload publishes it without waiting for the next commit. */
  #onCompacted: (() => void) | undefined;
  /** A compaction being started (up to its pin), not yet in #compaction. */
  #compactionStarting: Promise<void> | undefined;
  /** The last turn at the WAL taken (see #takeWal). */
  #walTurn: Promise<void> = Promise.resolve();
  /**
   * Uploads running in the foreground (snapshot() calls): a compaction's worker and its chunk uploads
   * give way while it is not 0 (shared with the worker), so an upload that callers wait for gets the
   * CPU and the store first. 1M rows on 2 cores, 100 writes/s with durable(): p99 227 ms without.
   */
  readonly #foreground = new Int32Array(new SharedArrayBuffer(4));
  #foregroundWaiters: Array<() => void> = [];

  constructor(options: SnapshotterOptions, head: RemoteHead | null | undefined) {
    this.#o = options;
    this.#head = head;
  }

  /** The writer's checkpointer: incremental snapshots keep the page record with it (full mode does not). */
  attachWal(wal: WalAccess): void {
    if (this.#o.mode !== 'incremental') return;
    this.#wal = wal;
    if (this.#seed && !wal.record) wal.record = this.#seed;
    this.#seed = undefined;
  }

  /**
   * The local file is, page for page, the store's latest restore point `entry` (restored from it just
   * now, or kept clean at it), and the app has not written yet: the record of changed pages starts here,
   * so the first upload can be a delta on `entry` instead of a whole-file read (and a start that changes
   * nothing uploads nothing). Only on a WAL with no frame: its first commit then opens a fresh WAL
   * (scanVerdict's fresh-WAL case, the file's stamp taken now) or continues this one. The pages between
   * `entry`'s chunk set and `entry` are not known here: the next chunk set reads the whole file.
   */
  seedRecord(entry: SnapshotEntry): void {
    if (this.#o.mode !== 'incremental' || (entry.kind !== 'chunks' && entry.kind !== 'delta')) return;
    const chain = deltaChain(this.#head?.manifest.snapshots ?? [], entry);
    if (!chain) return;
    // Synchronous (two small reads, once per start): see wal-scan.ts.
    const index = readWalIndex(this.#o.dbPath);
    if (index === 'unstable' || (index && index.mxFrame !== 0)) return;
    const fileStamp = databaseFileStamp(this.#o.dbPath);
    const record = new ChangedPages({ salt: index ? index.salt.toString('hex') : '', frame: 0, base: 0, folded: index !== null, fileStamp });
    record.baselineKey = chain.base.key;
    record.headKey = record.levelKey = entry.key;
    record.deltasSinceBaseline = chain.deltas.length;
    if (entry.kind === 'delta') record.uploadsSinceWholeFile = WHOLE_FILE_EVERY;
    this.#seed = record;
  }

  /** `listener` runs when a compaction has its chunks in the store: the next upload publishes it. */
  onCompacted(listener: () => void): void {
    this.#onCompacted = listener;
  }

  /** False only when the store is known to hold no restore point yet (a first deploy): nothing earlier to come back to. */
  get storeHasRestorePoint(): boolean {
    return this.#head === undefined || (this.#head?.manifest.snapshots.length ?? 0) > 0;
  }

  /** Whether a compaction is running or waiting to be published. */
  get compacting(): boolean {
    return this.#compaction !== undefined || this.#compactionStarting !== undefined;
  }

  /**
   * A turn at the WAL: the checkpointer paused and no other turn of this snapshotter's running (each
   * reads the WAL past the record's cursor and applies it to the record: two at once would break it).
   * The returned function ends the turn.
   */
  async #takeWal(wal: WalAccess): Promise<() => void> {
    const previous = this.#walTurn;
    let release!: () => void;
    this.#walTurn = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      await wal.pause();
    } catch (error) {
      release();
      throw error;
    }
    let left = false;
    return () => {
      if (left) return;
      left = true;
      wal.resume();
      release();
    };
  }

  /** Resolves once no upload runs in the foreground, or after 50 ms (a compaction gives way, it is not starved). */
  #foregroundIdle(): Promise<void> {
    if (Atomics.load(this.#foreground, 0) === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 50);
      this.#foregroundWaiters.push(() => (clearTimeout(timer), resolve()));
    });
  }

  /** The schema position with its name in the app's migrations journal (labelSchema), when the app gave its folder. */
  #label(position: SchemaPosition): SchemaPosition {
    return this.#o.labelSchema?.(position) ?? position;
  }

  /** Waits for the deletions that follow the publishes so far (retention, garbage, leftovers) to be done. */
  settleTidy(): Promise<void> {
    return this.#tidying;
  }

  /**
   * Runs `step` (deletions after a publish) after the earlier ones, beside the uploads: callers of an
   * upload wait for its publish only (a compaction's old chunk set leaving retention took 190 ms of
   * deletes inside a durable() call). Best effort, as each step is.
   */
  #tidyLater(step: () => Promise<void>): void {
    this.#tidying = this.#tidying.then(step).catch((error: unknown) => this.#o.log.warn({ error: errorMessage(error) }, 'could not tidy the store after a publish'));
  }

  /** Waits for the compaction running (if any) to have its chunks in the store; true if one is then ready to publish. */
  async settleCompaction(): Promise<boolean> {
    await this.#compactionStarting;
    await this.#compaction?.done;
    return this.#compaction?.ready !== undefined;
  }

  /**
   * @param rolledBackTo set on the first snapshot after a point-in-time restore, so the manifest records
   *   that the roll-back happened (and a restart with the same target does not roll back again).
   */
  async snapshot(state: SidecarState, rolledBackTo?: SnapshotEntry['rolledBackTo']): Promise<{ info: SnapshotInfo; entry: SnapshotEntry }> {
    if (this.#o.mode === 'incremental') {
      Atomics.add(this.#foreground, 0, 1);
      try {
        return await this.#snapshotChunks(state, rolledBackTo);
      } finally {
        if (Atomics.sub(this.#foreground, 0, 1) === 1) {
          Atomics.notify(this.#foreground, 0);
          const woken = this.#foregroundWaiters;
          this.#foregroundWaiters = [];
          for (const wake of woken) wake();
        }
      }
    }
    const { store, dbPath, codec } = this.#o;
    const started = performance.now();
    const tag = randomBytes(6).toString('hex');
    const rawPath = `${dbPath}.snap-${tag}.raw`;
    const outPath = `${dbPath}.snap-${tag}.out`;
    let uploadedKey: string | undefined;
    try {
      const copy = await runInWorker({ op: 'snapshot', dbPath, rawPath, outPath, codec, migrationsTable: this.#o.migrationsTable });
      const head = await this.#resolveHead(state);
      const at = new Date().toISOString();

      const latest = head && latestSnapshot(head.manifest);
      if (latest && latest.sha256 === copy.sha256 && !rolledBackTo) {
        // Unchanged since the latest snapshot: no upload, no manifest write, no storage request.
        return {
          entry: latest,
          info: { seq: latest.seq, generation: latest.generation, key: latest.key, at, bytes: copy.rawBytes, compressedBytes: copy.compressedBytes, sha256: copy.sha256, durationMs: performance.now() - started, uploaded: false, commits: 0, readBytes: copy.rawBytes, kind: 'full' },
        };
      }

      const seq = Math.max(head?.manifest.seq ?? 0, state.seq) + 1;
      const generation = state.generation;
      const key = snapshotKey(generation, seq, codec, randomBytes(4).toString('hex'));
      const entry: SnapshotEntry = {
        seq,
        generation,
        key,
        codec,
        bytes: copy.rawBytes,
        sha256: copy.sha256,
        compressedBytes: copy.compressedBytes,
        createdAt: at,
        schema: this.#label(copy.schema),
        ...(rolledBackTo ? { rolledBackTo } : {}),
      };
      const metadata = { sha256: copy.sha256, bytes: String(copy.rawBytes), seq: String(seq), generation, codec };
      await store.uploadFile(key, outPath, metadata);
      uploadedKey = key;

      const snapshots = applyRetention([entry, ...(head?.manifest.snapshots ?? [])], this.#o.retention);
      await this.#publishAndTidy(head, entry, snapshots, head?.manifest.garbage);
      uploadedKey = undefined; // published: no longer ours to clean up
      return {
        entry,
        info: { seq, generation, key, at, bytes: copy.rawBytes, compressedBytes: copy.compressedBytes, sha256: copy.sha256, durationMs: performance.now() - started, uploaded: true, commits: 0, readBytes: copy.rawBytes, kind: 'full' },
      };
    } finally {
      await rm(rawPath, { force: true });
      await rm(outPath, { force: true });
      if (uploadedKey) await store.delete(uploadedKey).catch(() => undefined); // never referenced by a manifest
    }
  }

  /**
   * Incremental: the worker reads the live page image in one read transaction, addresses every chunk
   * and encodes only those no retained snapshot has; they are uploaded, then the chunk index, then the
   * manifest. Chunks that no retained snapshot references any more go on the manifest's garbage list
   * and are deleted once older than the grace period.
   */
  async #snapshotChunks(state: SidecarState, rolledBackTo: SnapshotEntry['rolledBackTo']): Promise<{ info: SnapshotInfo; entry: SnapshotEntry }> {
    const { store, dbPath, chunkSize, keys } = this.#o;
    const started = performance.now();
    const spoolPath = `${dbPath}.snap-${randomBytes(6).toString('hex')}.spool`;
    let indexKey: string | undefined;
    try {
      const head = await this.#resolveHead(state);
      const previous = head?.manifest.snapshots ?? [];
      if (this.#compaction?.failed) await this.#dropCompaction('it failed');
      if (!rolledBackTo) {
        if (this.#compaction?.ready && head) {
          const compacted = await this.#publishCompaction(state, head, started);
          if (compacted) return compacted;
        }
        const delta = await this.#snapshotDelta(state, head, started);
        if (delta) return delta;
      }
      // A chunk set read here replaces whatever a compaction would have published (and may upload the same chunks).
      await this.#dropCompaction('an upload reads a chunk set now');
      await this.#tidying; // its listing below sees the store after the deletions so far
      // One listing per snapshot: a chunk counts as already stored only if the store has it now (a chunk
      // lost to an operator or a lifecycle rule is uploaded again instead of being referenced blindly).
      const stored = await this.#storedChunks();
      const known = await this.#knownChunks(previous, stored);
      const { result, upTo, wholeFile } = await this.#readChunks({ dbPath, chunkSize, known: [...known.keys()], keys, spoolPath, migrationsTable: this.#o.migrationsTable }, previous, rolledBackTo !== undefined);
      const record = this.#wal?.record;
      const at = new Date().toISOString();
      // Before the unchanged check: a re-uploaded lost chunk repairs every snapshot that references it.
      await this.#uploadFresh(spoolPath, result.fresh);
      const latest = head && latestSnapshot(head.manifest);
      if (latest && latest.kind === 'chunks' && latest.sha256 === result.sha256 && !rolledBackTo) {
        record?.uploaded(upTo, wholeFile, latest.key); // the file is, page for page, the latest snapshot
        return {
          entry: latest,
          info: { seq: latest.seq, generation: latest.generation, key: latest.key, at, bytes: result.rawBytes, compressedBytes: 0, sha256: result.sha256, durationMs: performance.now() - started, uploaded: false, commits: 0, readBytes: readBytesOf(result, chunkSize), kind: 'chunks' },
        };
      }

      const seq = Math.max(head?.manifest.seq ?? 0, state.seq) + 1;
      const { index, indexBody, entry } = chunkSetOf(result, known, { seq, generation: state.generation, createdAt: at, chunkSize, keys, schema: this.#label(result.schema), ...(rolledBackTo ? { rolledBackTo } : {}) });
      indexKey = entry.key;
      await store.uploadBuffer(indexKey, indexBody);
      this.#indexes.set(indexKey, index);
      const garbage = await this.#publishRetained(head, entry, previous, at, stored);
      indexKey = undefined; // published
      record?.uploaded(upTo, wholeFile, entry.key);
      this.#tidyLater(() => this.#collectGarbage(garbage));
      return {
        entry,
        info: { seq, generation: entry.generation, key: entry.key, at, bytes: result.rawBytes, compressedBytes: result.compressedBytes, sha256: result.sha256, durationMs: performance.now() - started, uploaded: true, commits: 0, readBytes: readBytesOf(result, chunkSize), kind: 'chunks' },
      };
    } finally {
      await rm(spoolPath, { force: true });
      if (indexKey) await store.delete(indexKey).catch(() => undefined); // never published
    }
  }

  /**
   * A page delta, when the plan allows one: the 'delta' op reads (checkpointer paused) the WAL past the
   * record's cursor and the pages changed since the last upload, as of one read transaction; the delta
   * is uploaded as one object and published as the new latest restore point, naming the one it extends.
   * Undefined when this upload must be a chunk set (the plan, or a scan that broke the record).
   */
  async #snapshotDelta(state: SidecarState, head: RemoteHead | null, started: number): Promise<{ info: SnapshotInfo; entry: SnapshotEntry } | undefined> {
    const { store, dbPath, keys, maxDeltas } = this.#o;
    const wal = this.#wal;
    if (!wal || !head || maxDeltas === 0) return undefined;
    const snapshots = head.manifest.snapshots;
    let op;
    let upTo;
    let plan: UploadPlan;
    const leave = await this.#takeWal(wal);
    try {
      const record = wal.record;
      const pageSize = this.#pageSizeOf(snapshots) ?? 4096;
      plan = planUpload(record, snapshots, false, maxDeltas, (record?.size ?? 0) * pageSize, this.compacting || Date.now() < this.#compactionRetryAt, (record?.sinceLevelSize ?? 0) * pageSize);
      if (plan.kind !== 'delta') return undefined;
      // A level-1 delta carries every page since its parent (the level-0 deltas' pages again).
      const pages = plan.level === 1 ? record!.pagesSinceLevel() : record!.pagesUpTo(Number.POSITIVE_INFINITY);
      op = await runInWorker({ op: 'delta', dbPath, keys, record: { cursor: { ...record!.cursor }, pages }, migrationsTable: this.#o.migrationsTable });
      upTo = await recordScanAfterFolds(wal, op.scan, op.start);
    } finally {
      leave();
    }
    const record = wal.record!;
    if (!op.delta || record.lost !== undefined) {
      this.#o.log.info({ why: record.lost }, 'this snapshot reads the whole file: the record of changed pages broke');
      return undefined;
    }
    const at = new Date().toISOString();
    const { parent, base, level } = plan;
    const delta = op.delta;
    const readBytes = delta.pages * delta.pageSize;
    const latest = snapshots[0]!;
    if (delta.pages === 0) {
      record.deltaUploaded(upTo, latest.key); // nothing changed since the latest restore point (nor since a level-1 parent)
      return {
        entry: latest,
        info: { seq: latest.seq, generation: latest.generation, key: latest.key, at, bytes: latest.bytes, compressedBytes: 0, sha256: latest.sha256, durationMs: performance.now() - started, uploaded: false, commits: 0, readBytes, kind: 'delta' },
      };
    }
    const seq = Math.max(head.manifest.seq, state.seq) + 1;
    const generation = state.generation;
    const entry = deltaEntryOf(delta, { seq, generation, parent: parent.key, base: base.key, createdAt: at, keys, schema: this.#label(delta.schema) });
    let key: string | undefined = entry.key;
    try {
      await store.uploadBuffer(key, Buffer.from(delta.stored.buffer, delta.stored.byteOffset, delta.stored.byteLength));
      // Chunk sets dropped by retention: their chunks go on the garbage list, as after a chunk set.
      const stored = this.#swept ? new Map<string, StoredObject>() : await this.#storedChunks();
      const garbage = await this.#publishRetained(head, entry, snapshots, at, stored);
      key = undefined; // published
      record.deltaUploaded(upTo, entry.key, level === 1 || plan.anchor ? 1 : 0); // an anchor starts a level as a level-1 delta does
      this.#tidyLater(() => this.#collectGarbage(garbage));
    } finally {
      if (key) await store.delete(key).catch(() => undefined); // never published
    }
    // A writer uploading deltas will compact: the pool's workers boot and load the driver now, not
    // beside the uploads of a compaction's start (whose job takes the worker the deltas had used).
    warmWorkers(POOL_SIZE, { libsql: true });
    if (plan.compact && !this.compacting) {
      // Not awaited: the callers of this upload are answered now. Its turn at the WAL (up to its pin)
      // goes before the next upload's.
      const starting = this.#startCompaction(plan.compact, base)
        .catch((error: unknown) => {
          this.#compactionRetryAt = Date.now() + COMPACTION_RETRY_MS;
          this.#o.log.warn({ error: errorMessage(error) }, 'could not start a compaction; deltas go on');
        })
        .finally(() => {
          if (this.#compactionStarting === starting) this.#compactionStarting = undefined;
        });
      this.#compactionStarting = starting;
    }
    return {
      entry,
      info: { seq, generation, key: entry.key, at, bytes: entry.bytes, compressedBytes: entry.compressedBytes, sha256: entry.sha256, durationMs: performance.now() - started, uploaded: true, commits: 0, readBytes, kind: 'delta' },
    };
  }

  /**
   * Starts a compaction of the chunk set `base` (the upload that calls this just published a delta on
   * it): the chunks the record names since `base` (or, `whole-file`, every chunk) are read in a worker
   * under one pin. The WAL goes back to the checkpointer and the deltas as soon as the image is pinned
   * and the frames past the record's cursor read (the op's announce): that scan goes into the record,
   * which from then on watches every page changed after the pin. The chunks are uploaded in the
   * background; the index waits for the publish (it is named by the publish's seq).
   */
  async #startCompaction(kind: 'touched-chunks' | 'whole-file', base: SnapshotEntry): Promise<void> {
    const wal = this.#wal;
    if (!wal || this.#compaction) return;
    const { dbPath, chunkSize, keys, log } = this.#o;
    const snapshots = this.#head?.manifest.snapshots ?? [];
    const stored = await this.#storedChunks();
    const known = await this.#knownChunks(snapshots, stored);
    const baseline = kind === 'touched-chunks' ? await this.#indexOf(base).catch(() => undefined) : undefined;
    const spoolPath = `${dbPath}.snap-${randomBytes(6).toString('hex')}.spool`;
    // Its job holds a worker for seconds: the others are booted first, so no delta or checkpoint waits for one.
    await workersReady(POOL_SIZE);
    const resume = await this.#takeWal(wal);
    try {
      const record = wal.record;
      if (!record || record.lost !== undefined || record.baselineKey !== base.key) return;
      const compaction: Compaction = { baseline: base.key, at: '', upTo: 0, chunks: new Set(known.keys()), done: Promise.resolve(), fresh: [], abort: async () => {} };
      const chunksRecord: ChunksRecord = {
        cursor: { ...record.cursor },
        pages: baseline ? record.pagesSinceBaseline() : [],
        ...(baseline && baseline.chunkSize === chunkSize ? { baseline: { chunks: baseline.chunks, bytes: baseline.bytes, pageSize: baseline.pageSize } } : {}),
        announce: true,
      };
      let pinned!: () => void;
      const pin = new Promise<void>((resolve) => (pinned = resolve));
      /** The pinned scan going into the record: within this turn at the WAL, even if the job fails meanwhile. */
      let taking: Promise<void> | undefined;
      const job = startWorkerJob(
        { op: 'chunks', dbPath, chunkSize, known: [...known.keys()], keys, spoolPath, record: chunksRecord, yieldTo: this.#foreground.buffer as SharedArrayBuffer, migrationsTable: this.#o.migrationsTable },
        {
          onPinned: ({ scan, start }) => {
            taking = recordScanAfterFolds(wal, scan, start).then((upTo) => {
              compaction.at = new Date().toISOString();
              compaction.upTo = upTo;
              wal.record?.watch(upTo);
              resume();
              pinned();
            });
          },
        },
      );
      compaction.abort = () => job.abort();
      compaction.done = (async () => {
        const began = performance.now();
        try {
          const result = await job.result;
          for (const f of result.fresh) compaction.chunks.add(f.address);
          compaction.fresh = result.fresh;
          await this.#uploadFresh(spoolPath, result.fresh, 1, async () => {
            await this.#foregroundIdle();
            if (compaction.dropping) throw new SyncError('SNAPSHOT_FAILED', 'The compaction was dropped.');
          });
          compaction.ready = { result, wholeFile: result.readChunks === result.chunks.length, known };
          log.info({ readChunks: result.readChunks, freshChunks: result.fresh.length, compressedBytes: result.compressedBytes, durationMs: Math.round(performance.now() - began) }, 'compaction uploaded; the next upload publishes it');
        } catch (error) {
          compaction.failed = error;
          // Stopped by a drop: not a failure (no warning, no back-off); the drop reports it.
          if (!compaction.dropping) {
            this.#compactionRetryAt = Date.now() + COMPACTION_RETRY_MS;
            log.warn({ error: errorMessage(error) }, 'compaction failed; deltas go on, and a compaction starts again later');
          }
        } finally {
          await rm(spoolPath, { force: true });
        }
        if (this.#compaction === compaction) this.#onCompacted?.();
      })();
      this.#compaction = compaction;
      await Promise.race([pin, compaction.done]);
      await taking;
    } finally {
      resume();
    }
  }

  /**
   * Publishes the ready compaction: a delta op reads (checkpointer paused) every page changed since its
   * pin, and the chunk set's index, that level-1 delta on it (unless nothing changed since) and the
   * manifest listing both go to the store. Undefined (the compaction dropped) when the record or the
   * store moved on without it, or the pages since would not fit a delta: the upload goes on as usual.
   */
  async #publishCompaction(state: SidecarState, head: RemoteHead, started: number): Promise<{ info: SnapshotInfo; entry: SnapshotEntry } | undefined> {
    const compaction = this.#compaction!;
    const ready = compaction.ready!;
    const { store, dbPath, keys, chunkSize } = this.#o;
    const wal = this.#wal!;
    const snapshots = head.manifest.snapshots;
    const pageSize = ready.result.pageSize;
    let op;
    let upTo = 0;
    let drop: string | undefined;
    const leave = await this.#takeWal(wal);
    try {
      const record = wal.record;
      const plan = planUpload(record, snapshots, false, this.#o.maxDeltas, 0, true);
      const pages = record?.pagesSinceWatch() ?? [];
      if (!record || plan.kind !== 'delta' || plan.base.key !== compaction.baseline || record.watchedFrom !== compaction.upTo) drop = plan.kind === 'delta' ? "the record no longer follows the compaction's base" : 'why' in plan ? plan.why : 'deltas are off';
      else if (pages.length * pageSize > MAX_DELTA_PAGE_BYTES) drop = 'the pages changed since its pin are too many for one delta';
      else {
        op = await runInWorker({ op: 'delta', dbPath, keys, record: { cursor: { ...record.cursor }, pages }, migrationsTable: this.#o.migrationsTable });
        upTo = await recordScanAfterFolds(wal, op.scan, op.start);
      }
    } finally {
      leave();
    }
    const record = wal.record!;
    if (!drop && (!op?.delta || record.lost !== undefined)) drop = `the record of changed pages broke: ${record.lost}`;
    if (drop !== undefined || !op?.delta) {
      await this.#dropCompaction(drop ?? 'no delta');
      return undefined;
    }
    const { result, wholeFile, known } = ready;
    const at = new Date().toISOString();
    const generation = state.generation;
    const seq = Math.max(head.manifest.seq, state.seq) + 1;
    // Its restore point is the file as of the pin, older than the deltas published meanwhile.
    const { index, indexBody, entry: chunkSet } = chunkSetOf(result, known, { seq, generation, createdAt: compaction.at, chunkSize, keys, schema: this.#label(result.schema) });
    const delta = op.delta;
    const bridge = delta.pages === 0 ? undefined : deltaEntryOf(delta, { seq: seq + 1, generation, parent: chunkSet.key, base: chunkSet.key, createdAt: at, keys, schema: this.#label(delta.schema) });
    const unpublished = [chunkSet.key, ...(bridge ? [bridge.key] : [])];
    try {
      await store.uploadBuffer(chunkSet.key, indexBody);
      this.#indexes.set(chunkSet.key, index);
      if (bridge) await store.uploadBuffer(bridge.key, Buffer.from(delta.stored.buffer, delta.stored.byteOffset, delta.stored.byteLength));
      const stored = this.#swept ? new Map<string, StoredObject>() : await this.#storedChunks();
      const garbage = await this.#publishRetained(head, bridge ? [bridge, chunkSet] : [chunkSet], snapshots, at, stored);
      unpublished.length = 0;
      record.compacted(upTo, wholeFile, chunkSet.key, bridge?.key);
      this.#compaction = undefined;
      this.#o.log.info({ seq, readChunks: result.readChunks, compressedBytes: result.compressedBytes, bridgePages: delta.pages }, 'compaction published');
      this.#tidyLater(() => this.#collectGarbage(garbage));
    } finally {
      for (const key of unpublished) await store.delete(key).catch(() => undefined);
    }
    const latest = bridge ?? chunkSet;
    return {
      entry: latest,
      info: {
        seq: latest.seq,
        generation,
        key: latest.key,
        at,
        bytes: latest.bytes,
        compressedBytes: (bridge?.compressedBytes ?? 0) + result.compressedBytes,
        sha256: latest.sha256,
        durationMs: performance.now() - started,
        uploaded: true,
        commits: 0,
        readBytes: delta.pages * delta.pageSize,
        kind: bridge ? 'delta' : 'chunks',
      },
    };
  }

  /**
   * Drops the compaction (running: once its uploads settle). Its new chunks are deleted: nothing
   * published references them (a chunk set read in an upload waits for this first), and an upload that
   * reads a chunk set later uploads what it needs again.
   */
  async #dropCompaction(why: string): Promise<void> {
    await this.#compactionStarting;
    const compaction = this.#compaction;
    if (!compaction) return;
    // Not ready yet: stopped at its next chunk. One that failed on its own is not reported again.
    const failedAlready = compaction.failed !== undefined;
    if (!compaction.ready && !failedAlready) {
      compaction.dropping = true;
      await compaction.abort();
    }
    await compaction.done;
    if (this.#compaction !== compaction) return;
    this.#wal?.record?.unwatch();
    // Every chunk it read that was new (uploaded, or not yet: deleting a missing blob is a no-op).
    const fresh = compaction.fresh;
    for (const f of fresh) await this.#o.store.delete(chunkKey(f.address)).catch(() => undefined);
    this.#compaction = undefined;
    if (!failedAlready) this.#o.log.info({ why, chunksDeleted: fresh.length, stoppedEarly: compaction.dropping === true }, 'compaction dropped');
  }

  /** The page size of the newest chunk set this process has the index of (no request). */
  #pageSizeOf(snapshots: readonly SnapshotEntry[]): number | undefined {
    for (const entry of snapshots) {
      const index = entry.kind === 'chunks' ? this.#indexes.get(entry.key) : undefined;
      if (index) return index.pageSize;
    }
    return undefined;
  }

  /**
   * Runs the 'chunks' op. With the page record: the checkpointer pauses (the op reads the WAL past the
   * record's cursor; no other scan may run meanwhile), and when the record holds its pages against the
   * latest snapshot only the chunks holding them are read. The op's scan goes into the record (a record
   * starts with the first whole-file read). `upTo`: the record position the image holds everything up
   * to (the WAL index's last frame before the image was pinned; frames after it may be in the image
   * too, and stay recorded: an upload then carries them twice, never misses them).
   */
  async #readChunks(
    request: { dbPath: string; chunkSize: number; known: string[]; keys: ChunkKeys | undefined; spoolPath: string; migrationsTable: string },
    snapshots: readonly SnapshotEntry[],
    rollingBack: boolean,
  ): Promise<{ result: ChunksResult; upTo: number; wholeFile: boolean }> {
    const wal = this.#wal;
    if (!wal) {
      const result = await runInWorker({ op: 'chunks', ...request });
      return { result, upTo: 0, wholeFile: true };
    }
    const leave = await this.#takeWal(wal);
    try {
      const record = wal.record;
      const plan = planUpload(record, snapshots, rollingBack, 0, 0);
      const baseline = plan.kind === 'touched-chunks' ? await this.#indexOf(plan.baseline).catch(() => undefined) : undefined;
      const chunksRecord: ChunksRecord = {
        cursor: record ? { ...record.cursor } : null,
        pages: baseline ? record!.pagesSinceBaseline() : [],
        ...(baseline && baseline.chunkSize === request.chunkSize ? { baseline: { chunks: baseline.chunks, bytes: baseline.bytes, pageSize: baseline.pageSize } } : {}),
      };
      const result = await runInWorker({ op: 'chunks', ...request, record: chunksRecord });
      const wholeFile = result.readChunks === result.chunks.length;
      const upTo = await recordScanAfterFolds(wal, result.scan!, result.start ?? null);
      const broke = wal.record?.lost;
      if (broke) this.#o.log.info({ why: broke }, 'this snapshot reads the whole file: the record of changed pages broke');
      return { result, upTo, wholeFile };
    } finally {
      leave();
    }
  }

  /**
   * Address -> object of every chunk in the store now (one paged LIST; at 1M rows ~600 chunks fit one
   * page). A chunk deleted by someone else between this listing and the publish is not caught here:
   * our own GC never deletes a chunk a retained snapshot references, and the next snapshot's listing
   * misses it and uploads it again, which repairs every snapshot referencing it (chunks are
   * content-addressed). Lifecycle rules that delete `chunks/` by age are therefore unsafe.
   */
  async #storedChunks(): Promise<Map<string, StoredObject>> {
    const listed = await this.#o.store.list(CHUNK_PREFIX);
    return new Map(listed.map((o) => [o.key.slice(CHUNK_PREFIX.length), o]));
  }

  /**
   * Address -> stored size and digest of every chunk the retained chunked snapshots (newest first)
   * reference and the store still holds (what need not be uploaded again).
   */
  async #knownChunks(entries: SnapshotEntry[], stored: Map<string, StoredObject>): Promise<Map<string, KnownChunk>> {
    return knownChunks(await Promise.all(entries.map((e) => this.#indexOf(e).catch(() => undefined))), stored); // unreadable: its chunks are simply uploaded again
  }

  async #indexOf(entry: SnapshotEntry): Promise<ChunkIndex | undefined> {
    if (entry.kind !== 'chunks') return undefined;
    const cached = this.#indexes.get(entry.key);
    if (cached) return cached;
    const object = await this.#o.store.readSmall(entry.key);
    if (!object) return undefined;
    const index = decodeChunkIndex(object.body, entry.key);
    this.#indexes.set(entry.key, index);
    return index;
  }

  /**
   * New chunks, read back from the spool a few at a time (memory: chunk size x concurrency). A
   * compaction's: one at a time, each after the upload running in the foreground (see #foregroundIdle).
   */
  async #uploadFresh(spoolPath: string, fresh: ChunksResult['fresh'], lanes = UPLOAD_CONCURRENCY, beforeEach?: () => Promise<void>): Promise<void> {
    const { store } = this.#o;
    const file = await open(spoolPath, 'r');
    try {
      const queue = [...fresh];
      const largest = fresh.reduce((max, f) => Math.max(max, f.length), 0);
      const next = async (): Promise<void> => {
        // One buffer per lane, reused for every chunk it uploads (a store call is done with its body once
        // it settles): a new 1 MiB Buffer per chunk (600 at 1M rows) made the app's thread run major GCs
        // of 60-90 ms for the external memory alone.
        let buffer: Buffer | undefined;
        for (let item = queue.shift(); item; item = queue.shift()) {
          buffer ??= Buffer.allocUnsafe(largest);
          const body = buffer.subarray(0, item.length);
          await beforeEach?.();
          const { bytesRead } = await file.read(body, 0, item.length, item.offset);
          if (bytesRead !== item.length) throw new SyncError('SNAPSHOT_FAILED', `The snapshot's spool file ${spoolPath} ended early (chunk ${item.address.slice(0, 16)}…); the snapshot will be retried.`);
          await store.uploadBuffer(chunkKey(item.address), body);
        }
      };
      await Promise.all(Array.from({ length: lanes }, next));
    } finally {
      await file.close();
    }
  }

  /**
   * The next garbage list: what it was (minus chunks referenced again or already deleted), plus chunks
   * only the dropped snapshots referenced, plus (once per process) chunks no manifest references at all
   * (left by a snapshot that died before publishing).
   */
  /**
   * The next manifest's garbage list, and the listed chunks found deleted since (forgotten once that
   * manifest is published: a deletion finishing meanwhile is still known to the next computation).
   */
  async #garbage(manifest: Manifest | undefined, previous: SnapshotEntry[], retained: SnapshotEntry[], now: string, stored: Map<string, StoredObject>): Promise<{ garbage: NonNullable<Manifest['garbage']>; deleted: string[] }> {
    // A compaction's chunks count as referenced until it is published (its index then) or dropped.
    const referenced = new Set<string>(this.#compaction?.chunks);
    for (const entry of retained) for (const address of (await this.#indexOf(entry).catch(() => undefined))?.chunks ?? []) referenced.add(address);
    const next = new Map<string, string>();
    const deleted: string[] = [];
    for (const g of manifest?.garbage ?? []) {
      if (this.#deletedGarbage.has(g.address)) deleted.push(g.address);
      else if (!referenced.has(g.address)) next.set(g.address, this.#remarked.get(g.address) ?? g.since);
      this.#remarked.delete(g.address);
    }
    const kept = new Set(retained.map((e) => e.key));
    for (const dropped of previous) {
      if (kept.has(dropped.key)) continue;
      for (const address of (await this.#indexOf(dropped).catch(() => undefined))?.chunks ?? []) if (!referenced.has(address) && !next.has(address)) next.set(address, now);
    }
    if (!this.#swept) {
      this.#swept = true;
      // Only leftovers of this manifest's own history: never chunks of an earlier one (a manifest lost or replaced).
      for (const [address, object] of stored) {
        if (!referenced.has(address) && !next.has(address) && isOwnLeftover(object.lastModified, manifest?.lineage, Date.parse(now), 0)) next.set(address, now);
      }
    }
    return { garbage: [...next].map(([address, since]) => ({ address, since })), deleted };
  }

  /**
   * Deletes garbage past the grace period. Conditional on the chunk not having been written since it
   * became garbage, so a chunk uploaded again meanwhile (by anyone) survives. Best effort.
   */
  async #collectGarbage(garbage: NonNullable<Manifest['garbage']>): Promise<void> {
    const due = garbage.filter((g) => Date.now() - Date.parse(g.since) >= this.#o.gcGraceMs);
    for (const g of due) {
      // Last-Modified is coarse (Azure: seconds): a chunk written in the same tick it became garbage is kept (and re-marked).
      const resolution = this.#o.store.timeResolutionMs ?? 1000;
      const ifUnmodifiedSince = new Date(Math.floor(Date.parse(g.since) / resolution) * resolution - resolution);
      try {
        await this.#o.store.delete(chunkKey(g.address), { ifUnmodifiedSince });
        this.#deletedGarbage.add(g.address);
      } catch (error) {
        if (isSyncError(error, 'CONFLICT')) this.#remarked.set(g.address, new Date().toISOString());
        else this.#o.log.warn({ address: g.address, error: String(error) }, 'could not delete an unreferenced chunk');
      }
    }
  }

  /** In skip mode the head is read on the first snapshot, and only a head this file descends from is accepted. */
  async #resolveHead(state: SidecarState): Promise<RemoteHead | null> {
    if (this.#head !== undefined) return this.#head;
    const head = await readHead(this.#o.store);
    if (head && head.manifest.seq > 0 && !(head.manifest.seq === state.seq && head.manifest.generation === state.generation)) {
      throw new SyncError(
        'DIVERGED',
        `${this.#o.store.location} already holds snapshot seq ${head.manifest.seq}, which this local database (started with restore: 'skip') does not descend from; ` +
          `refusing to replace it. Restart with restore enabled to continue from the backup.`,
      );
    }
    this.#head = head;
    return head;
  }

  /**
   * Publishes `entries` (newest first: the new latest, and the chunk set a compaction's delta extends)
   * on top of `previous` (the head's list) with what retention keeps and the next
   * garbage list; returns that list, collected by the caller once it has recorded the publish.
   */
  async #publishRetained(head: RemoteHead | null, entries: SnapshotEntry | SnapshotEntry[], previous: SnapshotEntry[], at: string, stored: Map<string, StoredObject>): Promise<NonNullable<Manifest['garbage']>> {
    const added = Array.isArray(entries) ? entries : [entries];
    const entry = added[0]!;
    const snapshots = applyRetention([...added, ...previous], this.#o.retention);
    const { garbage, deleted } = await this.#garbage(head?.manifest, previous, snapshots, at, stored);
    await this.#publishAndTidy(head, entry, snapshots, garbage.length > 0 ? garbage : undefined);
    for (const address of deleted) this.#deletedGarbage.delete(address);
    return garbage;
  }

  /**
   * Publishes `entry` as the latest with the retained `snapshots` on top of `head`, then, beside the
   * next uploads (#tidyLater), deletes the snapshots that dropped out and, once per process, unpublished leftovers.
   */
  async #publishAndTidy(head: RemoteHead | null, entry: SnapshotEntry, snapshots: SnapshotEntry[], garbage: Manifest['garbage']): Promise<void> {
    const lineage = nextLineage(head?.manifest, Date.now(), () => randomBytes(8).toString('hex'));
    const manifest: Manifest = { format: 1, generation: entry.generation, seq: entry.seq, snapshots, ...(garbage ? { garbage } : {}), lineage };
    this.#o.beforePublish(entry);
    const etag = await this.#publish(manifest, head);
    this.#head = { etag, manifest };
    const previous = head?.manifest.snapshots ?? [];
    this.#tidyLater(async () => {
      await this.#evict(previous, manifest);
      await this.#sweepOrphans(manifest, head?.manifest.lineage);
    });
  }

  async #publish(manifest: Manifest, head: RemoteHead | null): Promise<string> {
    const { store, lease } = this.#o;
    const condition = head ? { ifMatch: head.etag, leaseId: lease.id } : { ifNoneMatch: '*' as const, leaseId: lease.id };
    // Retried by the store on transient failures; a retry whose first attempt landed comes back CONFLICT (below).
    const write = () => store.writeSmall(MANIFEST_KEY, encodeManifest(manifest), condition);
    try {
      // After an outage the lease may have lapsed (nobody else took it): renew or re-take it first.
      await lease.ensureFresh();
      try {
        return (await write()).etag;
      } catch (error) {
        if (!isSyncError(error, 'LEASE_LOST')) throw error;
        // Refused for the lease: it lapsed since. Re-take it once with the same id (LEASE_LOST if another
        // instance holds it), then the same conditional write: If-Match still fences a writer published past.
        await lease.retake(error);
        return (await write()).etag;
      }
    } catch (error) {
      if (isSyncError(error, 'LEASE_LOST') || isSyncError(error, 'LEASE_HELD')) {
        // Fenced by the store itself: another instance holds the lease now.
        lease.lost(error);
        throw new SyncError('LEASE_LOST', `The store refused this instance's manifest write: another instance holds the writer lease on ${store.location}. This instance stopped snapshotting and refuses writes.`, { cause: error });
      }
      if (!isSyncError(error, 'CONFLICT')) throw error;
      // A retried write (ours or the SDK's) whose first attempt landed with its response lost sees its
      // own manifest as a conflict: the blob key is unique to this attempt, so it tells us apart.
      const current = await readHead(store).catch(() => null);
      if (current && latestSnapshot(current.manifest)?.key === latestSnapshot(manifest)?.key) return current.etag;
      // The manifest is leased by us: only a writer holding the lease since could have changed it.
      lease.lost(error);
      throw new SyncError(
        'LEASE_LOST',
        `Another writer published to ${store.location} since this instance last read it (its writer lease was lost); this instance stopped snapshotting and refuses writes so it cannot overwrite newer data. ` +
          `Restart it to continue from the newer snapshot.`,
        { cause: error },
      );
    }
  }

  /**
   * Once per process: snapshot objects no manifest entry references (uploaded by a run that died
   * before publishing) are deleted, if older than an hour so an upload still in flight elsewhere is
   * never touched, and only if written under this manifest's lineage (see `isOwnLeftover`). Best effort.
   */
  async #sweepOrphans(manifest: Manifest, lineage: Lineage | undefined): Promise<void> {
    if (this.#sweptSnapshots) return;
    if (!lineage) return; // a new or replaced manifest: whatever is stored may be an earlier history's
    this.#sweptSnapshots = true;
    const referenced = new Set(manifest.snapshots.map((s) => s.key));
    try {
      for (const object of await this.#o.store.list('snapshots/')) {
        if (!referenced.has(object.key) && isOwnLeftover(object.lastModified, lineage, Date.now(), ORPHAN_MIN_AGE_MS)) await this.#o.store.delete(object.key);
      }
    } catch (error) {
      this.#o.log.warn({ error: String(error) }, 'could not sweep unpublished snapshot objects');
    }
  }

  /** Deletes blobs that dropped out of retention. Best effort: a leftover blob costs storage, not data. */
  async #evict(previous: SnapshotEntry[], manifest: Manifest): Promise<void> {
    const kept = new Set(manifest.snapshots.map((s) => s.key));
    for (const old of previous) {
      if (kept.has(old.key)) continue;
      await this.#o.store.delete(old.key).catch((error: unknown) => this.#o.log.warn({ key: old.key, error: String(error) }, 'could not delete an old snapshot'));
    }
  }
}

/** What a new index records for a chunk it references: its stored size and the digest of its stored bytes ('' when unknown). */
export interface KnownChunk {
  size: number;
  digest: string;
}

/**
 * Address -> stored size and digest of the chunks a new snapshot may reference without uploading them:
 * referenced by one of these (retained) indexes, newest first, and present in the store's listing.
 * Anything else is uploaded. The newest index that names a chunk describes it: a chunk lost and
 * uploaded again was described anew by the snapshot that uploaded it.
 */
/**
 * A chunk set's index and manifest entry from a 'chunks' op's result: each chunk described by the upload
 * that stored it (new ones) or by the index that already references it (`known`).
 */
function chunkSetOf(
  result: ChunksResult,
  known: ReadonlyMap<string, KnownChunk>,
  at: { seq: number; generation: string; createdAt: string; chunkSize: number; keys: ChunkKeys | undefined; schema: SchemaPosition; rolledBackTo?: SnapshotEntry['rolledBackTo'] },
): { index: ChunkIndex; indexBody: Buffer; entry: SnapshotEntry } {
  const { seq, generation, createdAt, chunkSize, keys, schema, rolledBackTo } = at;
  const fresh = new Map<string, KnownChunk>(result.fresh.map((f) => [f.address, { size: f.length, digest: f.digest }]));
  const described = result.chunks.map((a) => fresh.get(a) ?? known.get(a)!);
  const storedSizes = described.map((c) => c.size);
  const index: ChunkIndex = { format: 1, bytes: result.rawBytes, pageSize: result.pageSize, chunkSize, chunks: result.chunks, stored: storedSizes, digests: described.map((c) => c.digest), ...(keys ? { keyId: keys.keyId } : {}) };
  const indexBody = encodeChunkIndex(index);
  const entry: SnapshotEntry = {
    seq,
    generation,
    key: snapshotKey(generation, seq, 'chunks', randomBytes(4).toString('hex')),
    kind: 'chunks',
    indexSha256: createHash('sha256').update(indexBody).digest('hex'),
    codec: 'lz4',
    bytes: result.rawBytes,
    sha256: result.sha256,
    compressedBytes: storedSizes.reduce((a, b) => a + b, 0),
    createdAt,
    ...(keys ? { keyId: keys.keyId } : {}),
    schema,
    ...(rolledBackTo ? { rolledBackTo } : {}),
  };
  return { index, indexBody, entry };
}

/** The manifest entry of a page delta a 'delta' op built, extending `parent` on the chunk set `base`. */
function deltaEntryOf(
  delta: NonNullable<DeltaResult['delta']>,
  at: { seq: number; generation: string; parent: string; base: string; createdAt: string; keys: ChunkKeys | undefined; schema: SchemaPosition },
): SnapshotEntry {
  const { seq, generation, parent, base, createdAt, keys, schema } = at;
  return {
    seq,
    generation,
    key: snapshotKey(generation, seq, 'delta', randomBytes(4).toString('hex')),
    kind: 'delta',
    parent,
    base,
    pages: delta.pages,
    codec: 'lz4',
    bytes: delta.pageCount * delta.pageSize,
    sha256: delta.sha256,
    compressedBytes: delta.stored.byteLength,
    createdAt,
    ...(keys ? { keyId: keys.keyId } : {}),
    schema,
  };
}

/** Bytes a 'chunks' op read: its chunks read, at most the file (the last chunk may be short). */
function readBytesOf(result: ChunksResult, chunkSize: number): number {
  return Math.min(result.rawBytes, result.readChunks * chunkSize);
}

/**
 * A 'chunks' op's scan into the record (a first one starts the record), and the position the image holds
 * everything up to: the frame the WAL index showed before the pin, in its generation; if that generation
 * is neither the record's nor the scan's, the record's position before the scan (conservative).
 */
function recordScan(wal: WalAccess, scan: ScanResult, start: { salt: string; frame: number } | null): number {
  let record = wal.record;
  if (!record) {
    if (scan.broken) return 0; // the next upload starts the record
    // No WAL index yet (a file just restored or copied in): the record starts on the fresh WAL the app's
    // first commit creates, recognized by the database file's stamp (scanVerdict's fresh-WAL case).
    if (scan.salt === '' && !scan.fileStamp) return 0;
    record = new ChangedPages({ salt: scan.salt, frame: scan.from, base: 0, folded: false, ...(scan.salt === '' ? { fileStamp: scan.fileStamp! } : {}) });
    wal.record = record;
    record.apply(scan);
    return start && start.salt === scan.salt ? start.frame : 0;
  }
  const before = { salt: record.cursor.salt, base: record.cursor.base, position: record.position };
  record.apply(scan);
  if (!start) return before.position;
  if (start.salt === record.cursor.salt) return record.cursor.base + start.frame;
  if (start.salt === before.salt) return before.base + start.frame;
  return before.position;
}

/**
 * recordScan once the record can judge the scan: one of the WAL's next generation is judged by whether
 * the last one was folded to its end, which a fold of the checkpoint in flight (it ran beside this scan)
 * may not have said yet.
 */
async function recordScanAfterFolds(wal: WalAccess, scan: ScanResult, start: { salt: string; frame: number } | null): Promise<number> {
  if (wal.record && scan.salt !== wal.record.cursor.salt) await wal.folded();
  return recordScan(wal, scan, start);
}

export function knownChunks(indexes: ReadonlyArray<ChunkIndex | undefined>, stored: ReadonlyMap<string, unknown>): Map<string, KnownChunk> {
  const known = new Map<string, KnownChunk>();
  for (const index of indexes) {
    index?.chunks.forEach((address, i) => {
      if (stored.has(address) && !known.has(address)) known.set(address, { size: index.stored[i]!, digest: index.digests?.[i] ?? '' });
    });
  }
  return known;
}
