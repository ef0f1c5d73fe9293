/**
 * Cold start of the Litestream baseline, in the same shape as ours.mjs: plain `node` imports
 * @libsql/client and drizzle-orm (what the app would load), runs `litestream restore` into an empty
 * folder as a child process (what an entrypoint does before the app opens the file), opens the file
 * with drizzle-orm/libsql and runs the same SELECT. One JSON line on stdout when the SELECT has answered.
 * argv[2]: JSON { bin, config, replicaDbPath, outPath, probeId }.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';

const job = JSON.parse(process.argv[2]);
const t0 = performance.now();
const [{ createClient }, { drizzle }, { sql }] = await Promise.all([import('@libsql/client'), import('drizzle-orm/libsql'), import('drizzle-orm')]);
const importMs = performance.now() - t0;
const t1 = performance.now();
await promisify(execFile)(job.bin, ['restore', '-config', job.config, '-o', job.outPath, job.replicaDbPath]);
const t2 = performance.now();
const client = createClient({ url: pathToFileURL(job.outPath).href });
const db = drizzle({ client });
const rows = await db.all(sql`SELECT id FROM documents WHERE id = ${job.probeId}`);
const t3 = performance.now();
if (rows.length !== 1) throw new Error('the restored database lacks a known row');
process.stdout.write(`${JSON.stringify({ event: 'first-query', sinceProcessStartMs: t3, importMs, hydrateMs: t2 - t1, queryMs: t3 - t2 })}\n`);
client.close();
