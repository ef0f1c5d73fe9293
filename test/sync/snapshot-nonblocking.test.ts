/**
 * A snapshot of a 100 MB+ database must not stall writers: the copy (VACUUM INTO), compression and
 * hashing run in a worker thread, the upload is async I/O. A steady writer (one awaited insert at a
 * time through drizzle) keeps committing while `db.$sync.flush()` snapshots, and the longest gap
 * between two consecutive commits must stay far below the snapshot's own duration.
 *
 * Real components only: a real libSQL file, the real directoryStore and a real Azurite.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { createClient } from '@libsql/client';
import { count, eq } from 'drizzle-orm';
import { azureBlobStore, directoryStore, drizzle, type SnapshotInfo, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { CREATE_NOTES, nextEvent, notes, open, schema, tempDir } from '../helpers/fixtures.ts';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';

const ROWS = 110_000;
const MiB = 1024 * 1024;
const MIN_DB_BYTES = 100 * MiB;
const MIN_WRITES_DURING = 20;
const WARMUP_WRITES = 20;
const CASE_TIMEOUT_MS = 240_000;
/**
 * Longest stall allowed between two consecutive writes, and between two consecutive reads, while the
 * snapshot runs, by store. Measured on this 2-core machine with other engineers' tests running beside
 * it (load average 4-5): directory 33-111 ms; Azurite 101-285 ms, always in the last ~300 ms of the
 * snapshot (Azurite and the upload share the two cores; 101 ms at low load). The bounds keep a margin
 * over those and stay far below what a snapshot holding the app's connection costs (its whole
 * duration: 2-6 s here).
 */
const MAX_GAP_MS = { directory: 150, azurite: 500 } as const;

let work: Awaited<ReturnType<typeof tempDir>>;
let seedPath: string;
let azurite: Azurite | undefined;

/** Builds the 100 MB+ seed database once, natively inside SQLite (one statement, one transaction). */
before(async () => {
  work = await tempDir('nonblocking');
  seedPath = join(work.path, 'seed.db');
  const started = performance.now();
  const client = createClient({ url: pathToFileURL(seedPath).href });
  try {
    await client.execute(CREATE_NOTES);
    // ~1 KB of random-ish text per row: a label, 512 random bytes as hex, and a little repeated prose.
    await client.execute({
      sql: `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO notes (body)
            SELECT 'seed ' || i || ' ' || hex(randomblob(480)) || ' the quick brown fox jumps over the lazy dog ' || (i % 97) FROM n`,
      args: [ROWS],
    });
  } finally {
    client.close();
  }
  const { size } = await stat(seedPath);
  console.log(`[snapshot-nonblocking] built seed db: ${ROWS} rows, ${(size / MiB).toFixed(1)} MiB in ${Math.round(performance.now() - started)} ms`);
  assert.ok(size >= MIN_DB_BYTES, `seed database is only ${size} bytes`);
});

after(async () => {
  await azurite?.stop();
  await work?.cleanup();
});

interface Gaps {
  gaps: number[];
  sorted: number[];
  max: number;
  /** When the longest gap began. */
  maxAt: number;
}

/**
 * Every gap between consecutive stamps that overlaps the window [from, to], including the gap that
 * straddles its start and the one that straddles its end.
 */
function gapsDuring(stamps: number[], from: number, to: number): Gaps {
  const gaps: number[] = [];
  let max = -Infinity;
  let maxAt = NaN;
  for (let i = 1; i < stamps.length; i++) {
    if (stamps[i]! > from && stamps[i - 1]! < to) {
      const gap = stamps[i]! - stamps[i - 1]!;
      if (gap > max) [max, maxAt] = [gap, stamps[i - 1]!];
      gaps.push(gap);
    }
  }
  return { gaps, sorted: [...gaps].sort((a, b) => a - b), max, maxAt };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function wipeLocal(dbPath: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm', '.sync.json']) await rm(`${dbPath}${suffix}`, { force: true });
}

async function rowCount(db: { select: Awaited<ReturnType<typeof open>>['select'] }): Promise<number> {
  const [row] = await db.select({ n: count() }).from(notes);
  return row!.n;
}

/**
 * Opens a copy of the seed on `store`, runs a steady writer, snapshots with flush(), measures the
 * gaps between commits during the snapshot, then closes and restores into a wiped local path.
 */
async function snapshotWhileWriting(label: keyof typeof MAX_GAP_MS, store: SnapshotStore): Promise<void> {
  const dir = await tempDir(`nonblocking-${label}`);
  try {
    const dbPath = join(dir.path, 'app.db');
    await copyFile(seedPath, dbPath);
    // No snapshot of its own: only flush() (and close()) may snapshot during this test.
    const db = await open(dbPath, store, { snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000, maxCommits: 1e9 } });
    assert.equal(await rowCount(db), ROWS);

    // The writer: one insert at a time, awaited, yielding to the event loop between writes the way
    // request handlers do (a pure microtask loop would starve every timer and I/O callback).
    const stamps: number[] = [];
    let stop = false;
    let written = 0;
    let warmedUp!: () => void;
    const warm = new Promise<void>((resolve) => (warmedUp = resolve));
    const writer = (async () => {
      while (!stop) {
        await db.insert(notes).values({ body: `live ${written + 1} ${'x'.repeat(200)}` });
        written++;
        stamps.push(performance.now());
        if (written === WARMUP_WRITES) warmedUp();
        await yieldToEventLoop();
      }
    })();
    // A reader beside it: one awaited indexed SELECT at a time, yielding between them like the writer.
    const readStamps: number[] = [];
    let read = 0;
    const reader = (async () => {
      while (!stop) {
        const id = 1 + ((read * 7919) % ROWS);
        const [row] = await db.select({ body: notes.body }).from(notes).where(eq(notes.id, id));
        assert.ok(row, `row ${id} is readable`);
        read++;
        readStamps.push(performance.now());
        await yieldToEventLoop();
      }
    })();
    // Fail fast if the writer dies before warming up.
    await Promise.race([warm, writer.then(() => assert.fail('writer stopped before warming up')), reader.then(() => assert.fail('reader stopped early'))]);

    const event = nextEvent(db.$sync, 'snapshot', undefined, CASE_TIMEOUT_MS);
    const startedAt = performance.now();
    let info: SnapshotInfo | null;
    try {
      info = await db.$sync.flush();
    } finally {
      stop = true;
      await writer;
      await reader;
    }
    const endedAt = performance.now();
    const emitted = await event;
    assert.ok(info, 'flush() returned no snapshot although the database had pending commits');
    assert.equal(emitted.sha256, info.sha256, "the 'snapshot' event and flush() describe the same snapshot");
    assert.equal(info.uploaded, true);

    const writes = gapsDuring(stamps, startedAt, endedAt);
    const reads = gapsDuring(readStamps, startedAt, endedAt);
    assert.ok(writes.gaps.length > 0, 'no commits overlapped the snapshot');
    assert.ok(reads.gaps.length > 0, 'no reads overlapped the snapshot');
    const maxGap = writes.max;
    const writesDuring = stamps.filter((t) => t >= startedAt && t <= endedAt).length;
    const readsDuring = readStamps.filter((t) => t >= startedAt && t <= endedAt).length;
    const flushMs = endedAt - startedAt;
    const describe = (g: Gaps) => `gap max ${g.max.toFixed(1)} ms (at +${Math.round(g.maxAt - startedAt)} ms), p99 ${percentile(g.sorted, 99).toFixed(1)} ms, median ${percentile(g.sorted, 50).toFixed(2)} ms`;
    console.log(
      `[snapshot-nonblocking:${label}] db ${(info.bytes / MiB).toFixed(1)} MiB (lz4 ${(info.compressedBytes / MiB).toFixed(1)} MiB), ` +
        `snapshot ${Math.round(emitted.durationMs)} ms (flush ${Math.round(flushMs)} ms); writes during ${writesDuring}: ${describe(writes)}; ` +
        `reads during ${readsDuring}: ${describe(reads)}; max/duration ${(maxGap / emitted.durationMs).toFixed(3)}`,
    );

    assert.ok(info.bytes >= MIN_DB_BYTES, `snapshot covered only ${info.bytes} uncompressed bytes, expected >= ${MIN_DB_BYTES}`);
    assert.ok(writesDuring >= MIN_WRITES_DURING, `only ${writesDuring} writes completed during a ${Math.round(flushMs)} ms snapshot`);
    assert.ok(readsDuring >= MIN_WRITES_DURING, `only ${readsDuring} reads completed during a ${Math.round(flushMs)} ms snapshot`);
    assert.ok(
      maxGap < emitted.durationMs / 4,
      `longest gap between writes (${maxGap.toFixed(1)} ms) is not far below the snapshot duration (${Math.round(emitted.durationMs)} ms)`,
    );
    // Absolute bounds: a stall as long as a small snapshot would pass the ratio above.
    const bound = MAX_GAP_MS[label];
    assert.ok(writes.max < bound, `longest gap between two writes during the snapshot: ${writes.max.toFixed(1)} ms (bound ${bound} ms)`);
    assert.ok(reads.max < bound, `longest gap between two reads during the snapshot: ${reads.max.toFixed(1)} ms (bound ${bound} ms)`);

    // close() takes a final snapshot covering the writes made during and after the first one.
    const liveRows = written;
    assert.equal(await rowCount(db), ROWS + liveRows);
    await db.$sync.close();
    assert.equal(db.$sync.status().pendingCommits, 0, 'close() left commits out of the store');

    await wipeLocal(dbPath);
    // drizzle() directly rather than open(): no CREATE TABLE, so closing this copy has nothing to snapshot.
    const db2 = await drizzle({ connection: { url: `file:${dbPath}` }, schema, store, log: false, restore: 'required', shutdown: { signals: false } });
    try {
      const restoredFrom = db2.$sync.status().restoredFrom;
      assert.ok(restoredFrom, 'reopening a wiped path did not restore from the store');
      assert.ok(restoredFrom.seq > info.seq, `restored seq ${restoredFrom.seq} is not the final snapshot (flush snapshot was seq ${info.seq})`);
      assert.equal(await rowCount(db2), ROWS + liveRows, 'rows written during the snapshot are missing after restore');
      const [last] = await db2.select({ body: notes.body }).from(notes).orderBy(notes.id).limit(1).offset(ROWS + liveRows - 1);
      assert.match(last!.body, new RegExp(`^live ${liveRows} `));
      console.log(`[snapshot-nonblocking:${label}] restored seq ${restoredFrom.seq}, ${(restoredFrom.bytes / MiB).toFixed(1)} MiB in ${Math.round(restoredFrom.durationMs)} ms, rows ${ROWS} + ${liveRows}`);
    } finally {
      await db2.$sync.close();
    }
  } finally {
    await dir.cleanup();
  }
}

describe('a snapshot of a 100 MB+ database does not block writers', () => {
  test('directoryStore', { timeout: CASE_TIMEOUT_MS }, async () => {
    const backups = await tempDir('nonblocking-store');
    try {
      await snapshotWhileWriting('directory', directoryStore({ dir: backups.path, prefix: 'app' }));
    } finally {
      await backups.cleanup();
    }
  });

  test('azureBlobStore on Azurite', { timeout: CASE_TIMEOUT_MS }, async () => {
    azurite = await startAzurite();
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: 'nonblocking', prefix: 'app', createContainer: true });
    await snapshotWhileWriting('azurite', store);
  });
});
