/**
 * A store that keeps failing: scheduled snapshots back off (retryBaseMs doubling), and commits made
 * during the backoff do not shorten it (issue 11 bug 1: each commit re-armed the debounce, 16 failed
 * attempts in 19 s). Once the store heals, the retry lands every commit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { directoryStore, SyncError, type SnapshotStore } from 'drizzle-libsql-blob';
import { nextEvent, notes, open, tempDir } from '../helpers/fixtures.ts';

test('failed snapshots back off; a steady stream of commits does not shorten the backoff; the retry lands them all once healed', async (t) => {
  const dir = await tempDir('backoff');
  const inner = directoryStore({ dir: join(dir.path, 'store') });
  let failing = true;
  const refuse = () => Promise.reject(new SyncError('STORE_UNREACHABLE', 'injected: store down', { transient: true }));
  const store: SnapshotStore = {
    ...inner,
    uploadBuffer: (key, body) => (failing ? refuse() : inner.uploadBuffer(key, body)),
    uploadFile: (key, path, metadata) => (failing ? refuse() : inner.uploadFile(key, path, metadata)),
  };
  const db = await open(join(dir.path, 'app.db'), store, {
    snapshot: { debounceMs: 10, maxIntervalMs: 600_000, retryBaseMs: 400, retryMaxMs: 10_000 },
    retry: { retries: 0, minTimeoutMs: 1, maxTimeoutMs: 1 },
  });
  t.after(() => db.$sync.close().catch(() => undefined));
  t.after(() => dir.cleanup()); // after close(): node:test runs after-hooks in the order they were added
  const attempts: number[] = [];
  const started = Date.now();
  db.$sync.on('snapshot-error', () => attempts.push(Date.now() - started));

  // Commits every 10 ms until 1.5 s after the first failure (the first upload boots a worker and reads
  // the whole file: 1.1 s after the start once on a loaded CI machine, leaving no room for a retry in a
  // window counted from the start). Backoff from that failure: retries at ~+400, ~+1200, ~+2800 ms, so
  // at most 3 attempts fit; re-arming the 10 ms debounce per commit would make dozens.
  let written = 0;
  const deadline = started + 30_000;
  while ((attempts.length === 0 || Date.now() - started - attempts[0]! < 1500) && Date.now() < deadline) {
    await db.insert(notes).values({ body: `row ${written++}` });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(attempts.length >= 2, `the failing store was retried (attempts at ${attempts.join(', ')} ms)`);
  assert.ok(attempts.length <= 3, `commits shortened the backoff: ${attempts.length} attempts in 1.5 s at ${attempts.join(', ')} ms`);
  for (let i = 2; i < attempts.length; i++) {
    assert.ok(attempts[i]! - attempts[i - 1]! >= (attempts[i - 1]! - attempts[i - 2]!) * 1.5, `the gaps grow: ${attempts.join(', ')}`);
  }
  assert.equal(db.$sync.status().role, 'writer', 'a transient failure never stops the writer');

  failing = false;
  const landed = await nextEvent(db.$sync, 'snapshot', () => true, 10_000);
  assert.ok(landed.uploaded);
  assert.equal(db.$sync.status().pendingCommits, 0, `every commit is in the store (${written} written)`);
});
