/**
 * Child process for test/faults/overlap.test.ts: one app instance of a deploy overlap.
 *
 * Opens the library with role 'auto' on Azurite after a GO line on stdin (so two instances start
 * together), prints its role, and writes only while it is the writer: rows `<name>-<n>`, each followed
 * by flush() and `ACK <body>`. A replica waits for its promotion, then writes the same way. A STOP line
 * closes it cleanly (final snapshot, lease released) and exits 0.
 *
 * Usage: overlap-instance.ts <dbPath> <name>
 * Env: FAULT_CONNECTION_STRING, FAULT_CONTAINER, FAULT_PREFIX, FAULT_LEASE_SEC (default 15)
 * stdout: LOADED | ROLE <writer|replica> | PROMOTED | ACK <body> | REFUSED <code> | CLOSED | ERROR <code> <message>
 */
import { createInterface } from 'node:readline';
import { azureBlobStore, drizzle, findSyncError } from 'drizzle-libsql-blob';
import { CREATE_NOTES, notes } from '../helpers/fixtures.ts';

const [dbPath, name] = process.argv.slice(2);
const { FAULT_CONNECTION_STRING: connectionString, FAULT_CONTAINER: container, FAULT_PREFIX: prefix } = process.env;
if (!dbPath || !name || !connectionString || !container) {
  console.error('usage: FAULT_CONNECTION_STRING=... FAULT_CONTAINER=... overlap-instance.ts <dbPath> <name>');
  process.exit(2);
}
const say = (line: string) => process.stdout.write(`${line}\n`);
const input = createInterface({ input: process.stdin });
const nextLine = () => new Promise<string | undefined>((resolve) => {
  input.once('line', (l) => resolve(l.trim()));
  input.once('close', () => resolve(undefined));
});

say('LOADED');
if ((await nextLine()) !== 'GO') process.exit(0);

try {
  const store = azureBlobStore({ connectionString, container, prefix: prefix ?? 'app', requestTimeoutMs: 5_000 });
  const db = await drizzle({
    connection: { url: `file:${dbPath}` },
    schema: { notes },
    store,
    log: false,
    shutdown: { signals: false },
    role: 'auto',
    lease: { durationSec: Number(process.env.FAULT_LEASE_SEC ?? 15) },
    replica: { pollMs: 50 },
    snapshot: { debounceMs: 600_000, maxIntervalMs: 600_000 },
  });
  if (db.$sync.status().role === 'writer') await db.run(CREATE_NOTES);
  const role = db.$sync.status().role;
  say(`ROLE ${role}`);
  let stopping = false;
  const stop = nextLine().then(() => (stopping = true));

  if (role === 'replica') {
    // A replica's writes are refused...
    try {
      await db.insert(notes).values({ body: `${name}-refused` });
      say('ERROR WROTE_ON_REPLICA a replica accepted a write');
      process.exit(1);
    } catch (error) {
      say(`REFUSED ${findSyncError(error)?.code ?? 'OTHER'}`);
    }
    // ...until it takes over.
    await Promise.race([new Promise<void>((resolve) => db.$sync.once('promoted', () => resolve())), stop]);
    if (!stopping) say('PROMOTED');
  }
  for (let n = 1; !stopping; n++) {
    const body = `${name}-${n}`;
    await db.insert(notes).values({ body });
    await db.$sync.flush();
    say(`ACK ${body}`);
    await new Promise((r) => setImmediate(r));
  }
  await db.$sync.close();
  say('CLOSED');
  process.exit(0);
} catch (error) {
  const found = findSyncError(error);
  say(`ERROR ${found?.code ?? 'OTHER'} ${String((found ?? (error as Error))?.message ?? error).replaceAll('\n', ' ')}`);
  process.exit(1);
}
