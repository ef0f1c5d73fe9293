/**
 * Child process for crash tests: snapshots once, writes more rows that are NOT snapshotted, prints
 * READY and waits to be killed with SIGKILL.
 * argv: <dbPath> <storeDir> <rowsAfterSnapshot>
 */
import { directoryStore, drizzle } from 'drizzle-libsql-blob';
import { CREATE_NOTES, notes, schema } from '../helpers/fixtures.ts';

const [dbPath, storeDir, rows] = process.argv.slice(2) as [string, string, string];
const db = await drizzle({
  connection: { url: `file:${dbPath}` },
  schema,
  store: directoryStore({ dir: storeDir }),
  log: false,
  snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
});
await db.run(CREATE_NOTES);
await db.insert(notes).values({ body: 'snapshotted' });
await db.$sync.flush();
for (let i = 0; i < Number(rows); i++) await db.insert(notes).values({ body: `unsnapshotted ${i}` });
process.stdout.write(`READY ${db.$sync.status().pendingCommits}\n`);
setInterval(() => {}, 1 << 30);
