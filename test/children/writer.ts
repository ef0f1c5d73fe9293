/**
 * Child process for test/sync/shutdown-signal.test.ts. Opens the library with `shutdown: { signals: true }`
 * and a debounce long enough that no snapshot happens on its own, writes K rows, prints `READY <k>`
 * and then waits forever (an interval keeps the event loop alive, so only the library's signal
 * handling can end this process).
 *
 * Usage: writer.ts <dbPath> <k> <mode>
 *   mode `idle`:         after the K rows, nothing is in flight.
 *   mode `transaction`:  READY is printed from inside an open transaction holding one more row; the
 *                        transaction adds a second row and commits only once the library is closing
 *                        (i.e. after the signal arrived), so the final snapshot must wait for it.
 * Store: env DLB_STORE_DIR (directoryStore) or DLB_AZURE_CONNECTION_STRING + DLB_AZURE_CONTAINER
 * (azureBlobStore), with optional DLB_STORE_PREFIX.
 *
 * Sync logs go to stderr as JSON lines; stdout carries only the protocol lines.
 */
import { azureBlobStore, directoryStore, type Leaser, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { notes, open } from '../helpers/fixtures.ts';

const [dbPath, kText, mode = 'idle'] = process.argv.slice(2);
if (!dbPath || !kText || !['idle', 'transaction'].includes(mode)) {
  console.error('usage: writer.ts <dbPath> <k> <idle|transaction>');
  process.exit(2);
}
const k = Number(kText);

function storeFromArgs(): SnapshotStore {
  const prefix = process.env.DLB_STORE_PREFIX || undefined;
  if (process.env.DLB_STORE_DIR) return directoryStore({ dir: process.env.DLB_STORE_DIR, prefix });
  const connectionString = process.env.DLB_AZURE_CONNECTION_STRING;
  const container = process.env.DLB_AZURE_CONTAINER;
  if (!connectionString || !container) throw new Error('set DLB_STORE_DIR or DLB_AZURE_CONNECTION_STRING + DLB_AZURE_CONTAINER');
  return azureBlobStore({ connectionString, container, prefix });
}

const line = (level: string) => (fields: object, message?: string) => process.stderr.write(JSON.stringify({ level, message, ...fields }) + '\n');
const log: SyncLogger = { info: line('info'), warn: line('warn'), error: line('error') };

const keepAlive = setInterval(() => {}, 1 << 30);

const db = await open(dbPath, storeFromArgs(), {
  log,
  shutdown: { signals: true, timeoutMs: 20_000 },
  snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000, maxCommits: 1e9 },
});

for (let i = 1; i <= k; i++) await db.insert(notes).values({ body: `row ${i}` });

if (mode === 'idle') {
  console.log(`READY ${k}`);
} else {
  await db.transaction(async (tx) => {
    await tx.insert(notes).values({ body: 'tx row 1' });
    console.log(`READY ${k}`);
    // Bounded wait for the signal handler to start closing; the commit below then lands while
    // close() is waiting for the write lock this transaction holds.
    const deadline = Date.now() + 30_000;
    while (db.$sync.status().state !== 'closing') {
      if (Date.now() > deadline) throw new Error('no shutdown began within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await tx.insert(notes).values({ body: 'tx row 2' });
  });
  console.log('COMMITTED');
}

// Not reached in practice before the signal; keeps the reference used for linters.
void keepAlive;
