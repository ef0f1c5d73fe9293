/**
 * Child process for test/sync/file-lock.test.ts and test/cli/local-file.test.ts: something holding a
 * local database file, in its own process.
 *
 * Usage: lock-app.ts <dbPath> <lock|app>
 *   lock: takes the file lock alone (acquireFileLock, holder 'test child') and prints `READY <pid>`.
 *   app:  a live app: drizzle() with `shutdown: { signals: true }` and a 60 s debounce, writes 3 rows,
 *         flushes (a snapshot in the store), writes 2 more (pending, the sidecar dirty), prints
 *         `READY <pid>`. Each SIGUSR2 writes one more row and prints `ROW <rows in the table>`. A lost
 *         lease prints `LEASE-LOST`. SIGTERM: the library's final snapshot, then the process ends by it.
 * Both then wait forever (an interval keeps the event loop alive).
 * Store (app): env DLB_STORE_DIR (directoryStore) or DLB_AZURE_CONNECTION_STRING + DLB_AZURE_CONTAINER.
 */
import { count } from 'drizzle-orm';
import { azureBlobStore, directoryStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { acquireFileLock } from '../../src/local/file-lock.ts';
import { notes, open } from '../helpers/fixtures.ts';

const [dbPath, mode] = process.argv.slice(2);
if (!dbPath || (mode !== 'lock' && mode !== 'app')) {
  console.error('usage: lock-app.ts <dbPath> <lock|app>');
  process.exit(2);
}
setInterval(() => {}, 1 << 30);

function storeFromEnv(): SnapshotStore {
  if (process.env.DLB_STORE_DIR) return directoryStore({ dir: process.env.DLB_STORE_DIR });
  const connectionString = process.env.DLB_AZURE_CONNECTION_STRING;
  const container = process.env.DLB_AZURE_CONTAINER;
  if (!connectionString || !container) throw new Error('set DLB_STORE_DIR or DLB_AZURE_CONNECTION_STRING + DLB_AZURE_CONTAINER');
  return azureBlobStore({ connectionString, container, prefix: 'app', createContainer: true });
}

if (mode === 'lock') {
  await acquireFileLock(dbPath, 'test child');
  console.log(`READY ${process.pid}`);
} else {
  const db = await open(dbPath, storeFromEnv(), {
    log: false,
    shutdown: { signals: true, timeoutMs: 20_000 },
    snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000, maxCommits: 1e9 },
  });
  db.$sync.on('lease-lost', () => console.log('LEASE-LOST'));
  for (let i = 1; i <= 3; i++) await db.insert(notes).values({ body: `row ${i}` });
  await db.$sync.flush();
  for (let i = 4; i <= 5; i++) await db.insert(notes).values({ body: `row ${i}` });
  process.on('SIGUSR2', () => {
    void (async () => {
      await db.insert(notes).values({ body: 'row after signal' });
      const [row] = await db.select({ n: count() }).from(notes);
      console.log(`ROW ${row!.n}`);
    })().catch((error: unknown) => console.log(`WRITE-FAILED ${String(error)}`));
  });
  console.log(`READY ${process.pid}`);
}
