/**
 * A snapshot's worker yields the CPU to the app's thread (nice 10 on Linux); a restore's and a
 * quick_check's do not, and the app's own thread keeps the process's priority.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { directoryStore, drizzle } from 'drizzle-libsql-blob';
import { checkDatabase } from '../../src/sync/restore.ts';
import { BACKGROUND_NICE } from '../../src/sync/thread-priority.ts';
import { tempDir } from '../helpers/fixtures.ts';

/** Nice value of every thread of this process, by thread id (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return nices;
}

const lowered = () => [...threadNices().values()].filter((n) => n === BACKGROUND_NICE).length;

test('a snapshot lowers its worker thread to nice 10; a quick_check does not; the app thread stays at the process priority', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
  const dir = await tempDir('thread-priority');
  try {
    const dbPath = join(dir.path, 'live', 'app.db');
    const db = await drizzle({ connection: { url: `file:${dbPath}` }, store: directoryStore({ dir: join(dir.path, 'store') }), log: false, shutdown: { signals: false, timeoutMs: 20_000 }, snapshot: { debounceMs: 60_000, chunkSize: 65_536 } });
    await db.run(sql`CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)`);
    await db.run(sql`INSERT INTO t (body) SELECT hex(randomblob(100)) FROM generate_series(1, 2000)`);
    const processNice = threadNices().get(process.pid)!;
    await checkDatabase(dbPath); // a pooled worker, foreground work
    assert.equal(lowered(), 0, 'no thread lowered before any snapshot');

    const info = await db.$sync.flush();
    assert.ok(info?.uploaded, 'a snapshot ran');
    assert.ok(lowered() >= 1, `the snapshot's worker runs at nice ${BACKGROUND_NICE}: ${JSON.stringify([...threadNices()])}`);
    assert.equal(threadNices().get(process.pid), processNice, "the app's thread keeps its priority");
    await db.run(sql`INSERT INTO t (body) VALUES ('after')`);
    await db.$sync.close();
  } finally {
    await dir.cleanup();
  }
});
