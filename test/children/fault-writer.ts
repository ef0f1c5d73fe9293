/**
 * Child process for test/faults/kill.test.ts: a writer that never stops until it is SIGKILLed.
 *
 * It opens the library on an Azure store (Azurite) through a pass-through wrapper that prints the
 * snapshot's phases, then inserts rows with increasing ids and calls flush() or durable() forever,
 * printing `ACK <maxId>` each time one resolved (every id <= maxId is then durable in the store).
 *
 * Usage: fault-writer.ts <dbPath>
 * Env: FAULT_CONNECTION_STRING, FAULT_CONTAINER, FAULT_PREFIX, FAULT_DEBOUNCE_MS (default 10),
 * FAULT_GATE=1 (print LOADED once the modules are loaded, then open the database only after a GO line
 * on stdin; EOF instead exits 0). `GO die-after=upload-done|manifest-done` makes the child SIGKILL
 * itself the moment the snapshot upload (or the manifest write) has completed, before it does anything
 * else: an exact kill point between upload and manifest write, or between the manifest write and the
 * writer recording it. `GO big-rows` writes rows of 128 KiB (compressible), so the WAL passes the
 * checkpoint bound (4 MiB) every few acknowledgements: a kill can be aimed at a checkpoint in progress.
 *
 * stdout (one line each, written synchronously: stdout is a pipe):
 *   LOADED                                 (FAULT_GATE=1 only)
 *   OPEN maxId=<n> restoredSeq=<seq|none> role=<writer|replica|n/a> ms=<drizzle() time>
 *   PHASE upload-start | upload-done | manifest-start | manifest-done
 *   CHUNK set|compaction / CHUNK-DONE (around each chunk blob's upload: a chunk set's, a compaction's;
 *                                    compaction when the last manifest this process wrote ends in a delta:
 *                                    a compaction starts only after a delta's publish, a chunk set only
 *                                    with no delta to extend or after the record of changed pages broke)
 *   DYING after <phase>              (die-after only; then SIGKILL)
 *   WROTE <maxId>                    (committed locally, not yet known to be in the store)
 *   ACK <maxId>
 *   ERROR <code> <message>          (then exit 1)
 * stderr: the library's sync log as JSON lines.
 */
import { azureBlobStore, findSyncError, type Leaser, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { createInterface } from 'node:readline';
import { sql } from 'drizzle-orm';
import { notes, open } from '../helpers/fixtures.ts';
import { decodeManifest, latestSnapshot } from '../../src/sync/manifest.ts';

const [dbPath] = process.argv.slice(2);
const { FAULT_CONNECTION_STRING: connectionString, FAULT_CONTAINER: container, FAULT_PREFIX: prefix } = process.env;
if (!dbPath || !connectionString || !container) {
  console.error('usage: FAULT_CONNECTION_STRING=... FAULT_CONTAINER=... fault-writer.ts <dbPath>');
  process.exit(2);
}
const debounceMs = Number(process.env.FAULT_DEBOUNCE_MS ?? 10);

const say = (line: string) => process.stdout.write(`${line}\n`);
/** `GO big-rows`: each row's body is 128 KiB. */
let bigRows = false;
const BIG_BODY = 'x'.repeat(128 * 1024);

/** `GO die-after=<phase>`: SIGKILL ourselves the moment that phase completes (an exact kill point). */
let dieAfter: string | undefined;
function dieIf(phase: string): void {
  if (dieAfter !== phase) return;
  say(`DYING after ${phase}`);
  process.kill(process.pid, 'SIGKILL');
}

/** Forwards every store method unchanged (whatever the interface holds), printing the snapshot's phases. */
function phased(inner: SnapshotStore): SnapshotStore {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(inner)) {
    out[name] = typeof value === 'function' ? (...args: unknown[]) => (value as (...a: unknown[]) => unknown).apply(inner, args) : value;
  }
  const store = out as unknown as SnapshotStore;
  store.uploadFile = async (key, filePath, metadata) => {
    say('PHASE upload-start');
    await inner.uploadFile(key, filePath, metadata);
    say('PHASE upload-done');
    dieIf('upload-done');
  };
  // Incremental snapshots: new chunks, then the chunk index, are one upload phase; a page delta is one object.
  let uploading = false;
  /** The last manifest this process wrote names a delta as its latest restore point (see CHUNK above). */
  let latestIsDelta = false;
  store.uploadBuffer = async (key, body) => {
    if (!uploading) {
      uploading = true;
      say('PHASE upload-start');
    }
    const chunk = key.startsWith('chunks/');
    if (chunk) say(latestIsDelta ? 'CHUNK compaction' : 'CHUNK set');
    await inner.uploadBuffer(key, body);
    if (chunk) say('CHUNK-DONE');
    if (key.endsWith('.chunks.json') || key.endsWith('.delta')) {
      uploading = false;
      say('PHASE upload-done');
      dieIf('upload-done');
    }
  };
  store.writeSmall = async (key, body, condition) => {
    if (key !== 'manifest.json') return inner.writeSmall(key, body, condition);
    say('PHASE manifest-start');
    const result = await inner.writeSmall(key, body, condition);
    latestIsDelta = latestSnapshot(decodeManifest(body, 'fault-writer'))?.kind === 'delta';
    say('PHASE manifest-done');
    dieIf('manifest-done');
    return result;
  };
  return store;
}

const line = (level: string) => (fields: object, message?: string) => process.stderr.write(JSON.stringify({ level, message, ...fields }) + '\n');
const log: SyncLogger = { info: line('info'), warn: line('warn'), error: line('error') };

function fail(error: unknown): never {
  const found = findSyncError(error);
  say(`ERROR ${found?.code ?? 'OTHER'} ${String((found ?? (error as Error))?.message ?? error).replaceAll('\n', ' ')}`);
  process.exit(1);
}

if (process.env.FAULT_GATE === '1') {
  // Pre-spawned by the parent so module loading (~1.5 s here) overlaps the previous run: wait for GO.
  say('LOADED');
  const go = await new Promise<string | undefined>((resolve) => {
    const input = createInterface({ input: process.stdin });
    input.once('line', (l) => resolve(l.trim()));
    input.once('close', () => resolve(undefined));
  });
  const match = go === undefined ? null : /^GO(?: die-after=(upload-done|manifest-done)| (big-rows))?$/.exec(go);
  if (!match) process.exit(0);
  dieAfter = match[1];
  bigRows = match[2] !== undefined;
}
const openStarted = performance.now();

try {
  const db = await open(dbPath, phased(azureBlobStore({ connectionString, container, prefix, requestTimeoutMs: 5_000 })), {
    log,
    // 'writer' fails fast (LEASE_HELD) instead of becoming a replica: a restart on its own local
    // directory must re-take its own lease at once.
    role: 'writer',
    // A chunk set (compaction) after every 4 page deltas: kills land in both kinds of upload.
    snapshot: { debounceMs, maxIntervalMs: 1_000, retryBaseMs: 20, retryMaxMs: 200, maxDeltas: 4 },
    retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 50 },
  });
  const [row] = await db.select({ max: sql<number | null>`max(${notes.id})` }).from(notes);
  let maxId = Number(row?.max ?? 0);
  const status = db.$sync.status() as { restoredFrom: { seq: number } | null; role?: string };
  say(`OPEN maxId=${maxId} restoredSeq=${status.restoredFrom?.seq ?? 'none'} role=${status.role ?? 'n/a'} ms=${Math.round(performance.now() - openStarted)}`);

  for (;;) {
    const batch = 1 + Math.floor(Math.random() * 4);
    for (let i = 0; i < batch; i++) await db.insert(notes).values({ id: ++maxId, body: bigRows ? `row ${maxId} ${BIG_BODY}` : `row ${maxId}` });
    say(`WROTE ${maxId}`);
    // Either acknowledgement: flush() uploads now; durable() waits for an upload covering the commits.
    if (Math.random() < 0.5) await db.$sync.flush();
    else await db.$sync.durable();
    say(`ACK ${maxId}`);
  }
} catch (error) {
  fail(error);
}
