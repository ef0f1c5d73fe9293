/**
 * Cold start of ours, as a user's container runs it: plain `node` (no tsx, no loader) on an empty
 * folder, importing the library from its compiled build, then drizzle() (which restores from the store)
 * and one SELECT. Spawned by bench/litestream.ts; one JSON line per event on stdout:
 *   {"event":"first-query", ...timings}   as soon as the SELECT has answered (the parent's clock stops here)
 *   {"event":"closed", peakRssAboveIdle}  after $sync.close(), so work that runs after open (a background
 *                                         check) is inside the memory peak too
 * argv[2]: JSON { libUrl, dbUrl, connectionString, container, prefix, probeId }.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const status = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;
const job = JSON.parse(process.argv[2]);
const t0 = performance.now();
const [lib, { sql }] = await Promise.all([import(job.libUrl), import('drizzle-orm')]);
const importMs = performance.now() - t0;

// Idle = the process with everything imported; VmHWM reset to it (Linux >= 4.0), so the peak is the restore's.
const idleRss = status('VmRSS');
let hwmReset = true;
try {
  writeFileSync('/proc/self/clear_refs', '5');
} catch {
  hwmReset = false;
}
const t1 = performance.now();
const db = await lib.drizzle({
  connection: { url: job.dbUrl },
  store: lib.azureBlobStore({ connectionString: job.connectionString, container: job.container, prefix: job.prefix }),
  restore: 'if-exists',
  snapshot: { debounceMs: 1e9, maxCommits: 1e9, maxIntervalMs: 1e9 },
  shutdown: { signals: false, timeoutMs: 600_000 },
  log: false,
});
const t2 = performance.now();
const rows = await db.all(sql`SELECT id FROM documents WHERE id = ${job.probeId}`);
const t3 = performance.now();
if (rows.length !== 1) throw new Error('the restored database lacks a known row');
if (db.$sync.status().restoredFrom === null) throw new Error('drizzle() did not restore from the store');
process.stdout.write(`${JSON.stringify({ event: 'first-query', sinceProcessStartMs: t3, importMs, hydrateMs: t2 - t1, queryMs: t3 - t2 })}\n`);
await db.$sync.close();
process.stdout.write(`${JSON.stringify({ event: 'closed', peakRssAboveIdle: hwmReset ? status('VmHWM') - idleRss : null, idleRss })}\n`);
