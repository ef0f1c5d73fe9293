/**
 * Fault injection, part 1a: `kill -9` a writer at random points, 50 times, on a real Azurite.
 *
 * The writer is a real child process (test/children/fault-writer.ts) that inserts rows with increasing
 * ids and calls flush() forever, printing `ACK <id>` each time flush() resolved, and `PHASE ...` lines
 * from a pass-through store wrapper around the snapshot's upload and manifest write. Each run targets
 * one point, in turn:
 *  - during the snapshot upload, "between" upload and manifest write, during the manifest write: the
 *    parent waits for the phase line, adds a random 0-20 ms and SIGKILLs;
 *  - a random moment while writing, and a random moment of the library's start-up;
 *  - two exact points where the child SIGKILLs itself: the moment its upload completed (before the
 *    manifest write starts), and the moment its manifest write completed (before it recorded that);
 *  - a chunk upload in progress, any (a chunk set's or a compaction's) and a compaction's (every 4
 *    deltas) in particular: the parent waits for the child's CHUNK line (CHUNK compaction) and kills
 *    0-20 ms later; counted when a CHUNK had no CHUNK-DONE yet;
 *  - a checkpoint in progress: the child writes 128 KiB rows (its WAL passes the checkpoint bound every
 *    few acknowledgements) and the parent polls the WAL index (-shm) until a checkpoint has started
 *    copying frames (nBackfillAttempted past nBackfill: SQLite sets the first when it starts and the
 *    second when it is done), then kills at once; the -shm read after the kill says whether it landed.
 * The child talks to Azurite through a TCP proxy that delays every chunk a few ms, so each request has
 * a window a kill can land in (on loopback a request takes ~1 ms and "during the upload" would be luck).
 *
 * After every kill:
 *  - the store is inspected: a snapshot blob the manifest does not reference means the kill landed
 *    after the upload reached the store and before the manifest write did; a manifest newer than the
 *    local sidecar's seq means the manifest write landed but the writer died before recording it;
 *  - if the manifest changed since the last check, a fresh, empty local directory is opened read-only
 *    (`restore: 'required'`, `role: 'replica'`, never written): the restore must verify (sha256, size,
 *    quick_check) and hold every id up to the highest acknowledged one, contiguous, nothing that was
 *    never written; plus `PRAGMA integrity_check`; the manifest's ETag is unchanged by that reader;
 *  - the manifest only moves forward: compared with the one seen after the previous kill, its seq
 *    never went down, the snapshots both list are identical (history never rewritten), and its
 *    generation never changed;
 *  - the next run restarts the writer on the SAME local directory: its first line must say it opened
 *    (so a kill never leaves a directory the writer cannot restart on), with every row it had
 *    committed locally before the kill (synchronous=NORMAL survives a process crash).
 * Reported, not asserted: snapshot blobs no manifest references and temp files left in the local
 * directory by the kills (the library does not clean either up).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { endianness } from 'node:os';
import { BlobServiceClient } from '@azure/storage-blob';
import { sql } from 'drizzle-orm';
import { azureBlobStore, drizzle, isSyncError, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, decodeManifest, type Manifest } from '../../src/sync/manifest.ts';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { schema, tempDir } from '../helpers/fixtures.ts';
import { faultSummary, randomInt, spawnLineChild, type LineChild } from '../helpers/fault-report.ts';

const CHILD = 'test/children/fault-writer.ts';
const RUNS = Number(process.env.FAULT_KILL_RUNS ?? 50);
/** Per-chunk delay of the proxy between the writer and Azurite (each request then takes >= 2x this). */
const WIRE_DELAY_MS = 6;
const TARGETS = ['upload-start', 'upload-done', 'manifest-start', 'random-running', 'random-startup', 'exact-upload-done', 'exact-manifest-done', 'mid-checkpoint', 'mid-chunk-upload', 'mid-compaction'] as const;
type Target = (typeof TARGETS)[number];
const PREFIX = 'app';

let azurite: Azurite;
let proxy: TcpProxy;
before(async () => {
  azurite = await startAzurite();
  proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: azurite.port });
  proxy.setMode({ delayMs: WIRE_DELAY_MS });
});
after(async () => {
  await proxy?.close();
  await azurite?.stop();
});

interface StoreView {
  seq: number;
  etag: string;
  manifest: Manifest | undefined;
  referenced: Set<string>;
  blobs: Set<string>;
}

async function storeView(store: SnapshotStore): Promise<StoreView> {
  const head = await store.readSmall(MANIFEST_KEY);
  const manifest = head ? decodeManifest(head.body, store.location) : undefined;
  const blobs = new Set((await store.list('snapshots/')).map((o) => o.key));
  return { seq: manifest?.seq ?? 0, etag: head?.etag ?? '', manifest, referenced: new Set(manifest?.snapshots.map((s) => s.key) ?? []), blobs };
}

/**
 * The manifest only moves forward, from one lineage: its seq never goes down; at the same seq it is
 * the same manifest; every snapshot both list is the same snapshot (history is never rewritten or
 * resurrected); the previous latest is still listed unless retention dropped it for newer ones; and
 * the generation, once the first snapshot set it, never changes (one writer on one disk, no roll-back).
 */
function assertManifestForward(prev: Manifest | undefined, now: Manifest | undefined, label: string): void {
  if (!prev) return;
  assert.ok(now, `${label}: the manifest disappeared (it was at seq ${prev.seq})`);
  assert.ok(now.seq >= prev.seq, `${label}: MANIFEST REGRESSION: seq ${prev.seq} -> ${now.seq}`);
  if (now.seq === prev.seq) assert.deepEqual(now, prev, `${label}: the manifest changed but kept seq ${now.seq}`);
  const before = new Map(prev.snapshots.map((e) => [e.seq, e]));
  for (const entry of now.snapshots) {
    if (entry.seq > prev.seq) continue;
    const was = before.get(entry.seq);
    assert.ok(was, `${label}: snapshot seq ${entry.seq} reappeared (the previous manifest at seq ${prev.seq} no longer listed it)`);
    assert.deepEqual(
      { key: entry.key, generation: entry.generation, sha256: entry.sha256 },
      { key: was.key, generation: was.generation, sha256: was.sha256 },
      `${label}: snapshot seq ${entry.seq} was rewritten`,
    );
  }
  const prevLatest = prev.snapshots[0];
  if (prevLatest) {
    assert.ok(
      now.snapshots.some((e) => e.seq === prevLatest.seq) || now.snapshots.every((e) => e.seq > prevLatest.seq),
      `${label}: the previous latest snapshot seq ${prevLatest.seq} was dropped without newer ones replacing it`,
    );
    for (const entry of now.snapshots) assert.equal(entry.generation, prevLatest.generation, `${label}: snapshot seq ${entry.seq} starts another generation`);
  }
  if (prev.generation !== '') assert.equal(now.generation, prev.generation, `${label}: the manifest's generation changed from ${prev.generation} to ${now.generation}`);
  for (let i = 1; i < now.snapshots.length; i++) assert.ok(now.snapshots[i - 1]!.seq > now.snapshots[i]!.seq, `${label}: snapshots are not newest first`);
}

/** Files in the local directory other than the database, its WAL/SHM, its sidecar and its file lock. */
function tempFiles(dbPath: string): number {
  const known = new Set(['app.db', 'app.db-wal', 'app.db-shm', 'app.db.sync.json', 'app.db.lock', 'app.db.lock-journal', 'app.db.lock.json']);
  try {
    return readdirSync(dirname(dbPath)).filter((name) => !known.has(name)).length;
  } catch {
    return 0;
  }
}

/**
 * The WAL index's checkpoint info (https://www.sqlite.org/walformat.html, native byte order): a
 * checkpoint sets nBackfillAttempted (offset 128) when it starts copying frames and nBackfill (offset
 * 96) when it is done; a WAL restart sets both to 0, and a recovery of the index (the first connection
 * after a crash) sets nBackfillAttempted to the WAL's last frame and nBackfill to 0.
 */
function checkpointInfo(dbPath: string): { nBackfill: number; attempted: number } | undefined {
  let shm: Buffer;
  try {
    shm = readFileSync(`${dbPath}-shm`).subarray(0, 136);
  } catch {
    return undefined;
  }
  if (shm.length < 136) return undefined;
  const u32 = (offset: number) => (LITTLE_ENDIAN ? shm.readUInt32LE(offset) : shm.readUInt32BE(offset));
  return { nBackfill: u32(96), attempted: u32(128) };
}

/** A checkpoint started after `since` (attempted moved) and has not finished (nBackfill behind it). */
function checkpointInProgress(now: ReturnType<typeof checkpointInfo>, since: ReturnType<typeof checkpointInfo>): boolean {
  return now !== undefined && now.attempted > now.nBackfill && now.attempted !== since?.attempted;
}
const LITTLE_ENDIAN = endianness() === 'LE';

function sidecarSeq(dbPath: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(`${dbPath}.sync.json`, 'utf8')) as { seq?: number }).seq;
  } catch {
    return undefined;
  }
}

/**
 * Opens the store's latest snapshot in a fresh directory without writing anything and checks it holds
 * ids 1..M (contiguous) with maxAcked <= M <= maxWritten; acknowledged ids missing are added to
 * `tally.lost` (and asserted 0). Returns M, or null when the store holds no backup yet (allowed only
 * while nothing was acknowledged).
 */
async function verifyFreshRestore(store: SnapshotStore, maxAcked: number, maxWritten: number, tally: { lost: number }): Promise<{ hi: number } | null> {
  const fresh = await tempDir('fault-kill-fresh');
  const head = await store.readSmall(MANIFEST_KEY);
  const etagBefore = head?.etag;
  const latestSeq = head ? decodeManifest(head.body, store.location).snapshots[0]?.seq : undefined;
  try {
    let db;
    try {
      db = await drizzle({
        connection: { url: `file:${join(fresh.path, 'app.db')}` },
        schema,
        store,
        log: false,
        restore: 'required',
        role: 'replica', // never takes the lease and never writes
        shutdown: { signals: false },
      });
    } catch (error) {
      if (maxAcked === 0 && isSyncError(error, 'NO_BACKUP')) return null;
      throw error;
    }
    try {
      const status = db.$sync.status() as { restoredFrom: { seq: number; skipped?: unknown[] } | null; role?: string };
      assert.ok(status.restoredFrom, 'the fresh directory was not restored from the store');
      // The newest snapshot itself verified: no fallback past a damaged one.
      assert.deepEqual(status.restoredFrom.skipped ?? [], [], 'a snapshot failed verification and was skipped');
      assert.equal(status.restoredFrom.seq, latestSeq, 'restored an older snapshot than the manifest names');
      if (status.role !== undefined) assert.equal(status.role, 'replica');
      const [integrity] = (await db.all(sql`PRAGMA integrity_check`)) as Array<Record<string, unknown>>;
      assert.equal(Object.values(integrity ?? {})[0], 'ok', 'PRAGMA integrity_check');
      const [stats] = (await db.all(
        sql`SELECT count(*) AS n, coalesce(max(id), 0) AS hi, (SELECT count(*) FROM notes WHERE id <= ${maxAcked}) AS acked FROM notes`,
      )) as Array<{ n: number; hi: number; acked: number }>;
      const { n, hi } = { n: Number(stats!.n), hi: Number(stats!.hi) };
      const lost = maxAcked - Number(stats!.acked);
      tally.lost += lost;
      assert.equal(lost, 0, `${lost} acknowledged commit(s) lost: the store holds ${n} rows up to id ${hi}, ${maxAcked} were acknowledged`);
      assert.ok(hi >= maxAcked, `store holds ids up to ${hi}, but ${maxAcked} was acknowledged`);
      assert.equal(n, hi, `ids are not contiguous: ${n} rows up to id ${hi}`);
      assert.ok(hi <= maxWritten, `store holds id ${hi}, but the writer only ever committed up to ${maxWritten}`);
      return { hi };
    } finally {
      await db.$sync.close();
    }
  } finally {
    assert.equal((await store.readSmall(MANIFEST_KEY))?.etag, etagBefore, 'the read-only restore changed the manifest');
    await fresh.cleanup();
  }
}

test(`kill -9 a writer ${RUNS} times at upload / between / manifest / mid-checkpoint / random points: no acknowledged commit is lost`, { timeout: 300_000 }, async (t) => {
  const startedAt = performance.now();
  const container = `kill-${randomBytes(4).toString('hex')}`;
  await BlobServiceClient.fromConnectionString(azurite.connectionString).createContainer(container);
  const store = azureBlobStore({ connectionString: azurite.connectionString, container, prefix: PREFIX });
  const local = await tempDir('fault-kill');
  const dbPath = join(local.path, 'app.db');
  const env = {
    FAULT_CONNECTION_STRING: azurite.connectionString.replace(`:${azurite.port}/`, `:${proxy.port}/`),
    FAULT_CONTAINER: container,
    FAULT_PREFIX: PREFIX,
    FAULT_DEBOUNCE_MS: '10',
    FAULT_GATE: '1',
  };
  // Each writer is spawned one run ahead and waits for GO, so its module loading (~1.5 s of the
  // ~2 s start here) overlaps the previous run instead of adding to it.
  const spawnWriter = () => spawnLineChild(CHILD, [dbPath], env);
  const go = async (c: LineChild, how?: string) => {
    await c.waitFor(/^LOADED$/, { timeoutMs: 30_000 });
    c.send(how ? `GO ${how}` : 'GO');
  };

  let maxAcked = 0;
  let maxWritten = 0;
  const tally = { lost: 0 };
  let restoresVerified = 0;
  let restartsVerified = 0;
  /** Kills after which the manifest was compared with the one before (it must only move forward). */
  let manifestChecks = 0;
  let openMs = 200; // drizzle() time in the child, refined from the runs
  const killedAt: Record<string, number> = {};
  const landed = { orphanBlob: 0, manifestUnrecorded: 0, midChunkUpload: 0, midCompaction: 0 };
  let view = await storeView(store);
  /** One entry per kill: run, target, last phase printed, what the store saw. */
  const history: string[] = [];
  let child: LineChild | undefined;
  let next: LineChild | undefined = spawnWriter();

  /** Waits for OPEN and checks the restarted writer kept everything it had committed locally. */
  const opened = async (c: LineChild, label: string) => {
    const { match, index } = await c.waitFor(/^OPEN maxId=(\d+) restoredSeq=(\S+) role=(\S+) ms=(\d+)$/, { timeoutMs: 30_000 }).catch((error: Error) => {
      throw new Error(`${label}: the writer did not restart on its own local directory after the previous kill (${history.at(-1) ?? 'none'}): ${error.message}`);
    });
    const localMax = Number(match[1]);
    assert.ok(localMax >= maxWritten, `${label}: restarted writer sees max id ${localMax} locally, but ${maxWritten} was committed before the kill\n${c.tail()}`);
    if (match[3] !== 'n/a') assert.equal(match[3], 'writer', `${label}: the restarted writer did not get its lease back\n${c.tail()}`);
    restartsVerified++;
    openMs = 0.7 * openMs + 0.3 * Number(match[4]);
    return index;
  };
  const collect = (c: LineChild) => {
    for (const l of c.lines) {
      const ack = /^ACK (\d+)$/.exec(l);
      if (ack) maxAcked = Math.max(maxAcked, Number(ack[1]));
      const wrote = /^WROTE (\d+)$/.exec(l);
      if (wrote) maxWritten = Math.max(maxWritten, Number(wrote[1]));
    }
  };
  let verifiedEtag: string | undefined;
  let verifySkipped = 0;
  const verify = async (etag: string) => {
    // The same manifest means the same snapshot, and no acknowledgement can have come without a new
    // manifest: restoring it again would check nothing new.
    if (etag === verifiedEtag) {
      verifySkipped++;
      return;
    }
    const result = await verifyFreshRestore(store, maxAcked, maxWritten, tally);
    if (result) {
      restoresVerified++;
      verifiedEtag = etag;
    }
  };

  const leftovers = () => tempFiles(dbPath);
  const summary = (result: string) =>
    faultSummary(
      t,
      'kill-9',
      {
        runs: RUNS,
        faults: history.length,
        acked: maxAcked,
        lost: tally.lost,
        'restores-verified': restoresVerified,
        'restores-skipped-same-manifest': verifySkipped,
        'restarts-verified': restartsVerified,
        'manifest-forward-checks': manifestChecks,
        'manifest-seq': view.seq,
        'died-after': Object.entries(killedAt)
          .map(([k, v]) => `${k}:${v}`)
          .join(','),
        'store-saw': `orphan-blob:${landed.orphanBlob},manifest-unrecorded:${landed.manifestUnrecorded}`,
        'mid-chunk-upload': landed.midChunkUpload,
        'mid-compaction': landed.midCompaction,
        'orphan-blobs-left': [...view.blobs].filter((k) => !view.referenced.has(k)).length,
        'local-temp-files-left': leftovers(),
        result,
      },
      startedAt,
    );

  try {
    for (let run = 0; run < RUNS; run++) {
      // Run 0 gets one acknowledged snapshot first so that every later kill has something to lose.
      const target: Target = run === 0 ? 'random-running' : TARGETS[(run - 1) % TARGETS.length]!;
      const label = `run ${run} (${target})`;
      const c: LineChild = next!;
      child = c;
      /** The WAL index's checkpoint info once the writer opened (after its recovery of the index). */
      let atOpen: ReturnType<typeof checkpointInfo>;
      await go(c, target.startsWith('exact-') ? `die-after=${target.slice('exact-'.length)}` : target === 'mid-checkpoint' ? 'big-rows' : undefined);
      next = spawnWriter();

      if (target.startsWith('exact-')) {
        // The child kills itself at that exact point; the restart check happens on its OPEN line.
        await opened(c, label);
        await c.waitFor(/^DYING after /, { timeoutMs: 30_000 });
      } else if (target === 'random-startup') {
        // Somewhere in the library's start-up: probe, manifest read, local state, lease, WAL pragmas.
        const exitedEarly = await Promise.race([delay(randomInt(0, Math.round(openMs) + 20)).then(() => false), c.exited.then(() => true)]);
        assert.ok(!exitedEarly, `${label}: the writer exited on its own during start-up\n${c.tail()}`);
      } else {
        const openIndex = await opened(c, label);
        atOpen = checkpointInfo(dbPath);
        if (run === 0) await c.waitFor(/^ACK /, { from: openIndex });
        if (target === 'random-running') {
          await delay(randomInt(0, 300));
        } else if (target === 'mid-chunk-upload' || target === 'mid-compaction') {
          await c.waitFor(target === 'mid-compaction' ? /^CHUNK compaction$/ : /^CHUNK /, { from: openIndex, timeoutMs: 30_000 });
          await delay(randomInt(0, 20));
        } else if (target === 'mid-checkpoint') {
          // Polled synchronously (a 136-byte read) so the kill follows the first sight of a checkpoint at once.
          const until = performance.now() + 15_000;
          while (!checkpointInProgress(checkpointInfo(dbPath), atOpen) && performance.now() < until && c.proc.exitCode === null) await new Promise((resolve) => setImmediate(resolve));
        } else {
          await c.waitFor(new RegExp(`^PHASE ${target}$`), { from: openIndex, timeoutMs: 30_000 });
          await delay(randomInt(0, 20));
        }
      }
      const exit = await c.kill();
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, `${label}: the writer ended on its own before the kill\n${c.tail()}`);
      // Read before anything opens the database again (a new connection would recover the WAL index).
      const diedMidCheckpoint = atOpen !== undefined && checkpointInProgress(checkpointInfo(dbPath), atOpen);

      // What the child had done when it died.
      collect(c);
      const lastPhase = [...c.lines].reverse().find((l) => l.startsWith('PHASE ') || l.startsWith('OPEN ') || l.startsWith('DYING '));
      const died = diedMidCheckpoint ? 'mid-checkpoint' : !lastPhase ? 'startup' : lastPhase.startsWith('OPEN') ? 'running' : lastPhase.startsWith('DYING') ? `exactly-${lastPhase.slice('DYING after '.length)}` : lastPhase.slice('PHASE '.length);
      killedAt[died] = (killedAt[died] ?? 0) + 1;
      const chunks = c.lines.filter((l) => l.startsWith('CHUNK ')); // one CHUNK-DONE per finished upload, in order or not
      const unfinished = chunks.length - c.lines.filter((l) => l === 'CHUNK-DONE').length;
      if (unfinished > 0) landed.midChunkUpload++;
      if (unfinished > 0 && chunks.at(-1) === 'CHUNK compaction') landed.midCompaction++; // a compaction's chunks go up together, none after a chunk set's

      // What the store had seen when it died.
      const now = await storeView(store);
      assertManifestForward(view.manifest, now.manifest, label);
      manifestChecks++;
      const newOrphans = [...now.blobs].filter((k) => !now.referenced.has(k) && !view.blobs.has(k));
      if (newOrphans.length > 0) landed.orphanBlob++;
      const recorded = sidecarSeq(dbPath);
      if (recorded !== undefined && now.seq > recorded) landed.manifestUnrecorded++;
      history.push(
        `run ${run} target=${target} died-after=${died} store-seq=${now.seq} sidecar-seq=${recorded ?? '-'} new-orphan-blobs=${newOrphans.length} acked=${maxAcked} written=${maxWritten}`,
      );
      view = now;

      await verify(now.etag);
    }

    // The last kill too must leave a directory the writer restarts on, and it must publish again.
    child = next!;
    next = undefined;
    await go(child);
    const openIndex = await opened(child, 'final restart');
    await child.waitFor(/^ACK (\d+)$/, { from: openIndex });
    await child.kill();
    collect(child);
    const last = await storeView(store);
    assertManifestForward(view.manifest, last.manifest, 'final restart');
    manifestChecks++;
    view = last;
    await verify(view.etag);

    // Every targeted point was actually hit at least once (for the gap, by the store's own account).
    assert.ok((killedAt['upload-start'] ?? 0) > 0, `no kill landed during an upload: ${JSON.stringify(killedAt)}`);
    assert.ok((killedAt['manifest-start'] ?? 0) > 0, `no kill landed during a manifest write: ${JSON.stringify(killedAt)}`);
    assert.ok(landed.orphanBlob > 0, `no kill landed between an upload reaching the store and the manifest write: ${JSON.stringify(landed)}`);
    assert.ok(landed.midChunkUpload > 0, `no kill landed while a chunk (a compaction's or a chunk set's) was uploading: ${JSON.stringify(landed)}`);
    assert.ok(landed.midCompaction > 0, `no kill landed while a compaction's chunks were uploading: ${JSON.stringify(landed)}`);
    assert.ok((killedAt['mid-checkpoint'] ?? 0) > 0, `no kill landed while a checkpoint was copying frames: ${JSON.stringify(killedAt)}`);
    assert.equal(tally.lost, 0);
    assert.equal(manifestChecks, RUNS + 1, 'the manifest was compared after every kill and the final restart');
    summary('ok');
  } catch (error) {
    summary(`FAILED at ${history.length < RUNS ? `run ${history.length}` : 'the final restart'}`);
    throw error;
  } finally {
    await child?.kill();
    await next?.kill();
    await local.cleanup();
  }
});
