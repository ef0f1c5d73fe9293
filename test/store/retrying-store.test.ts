/**
 * retrying(store, policy, log): the one place store calls are retried. Over a real directory store,
 * with faults injected at chosen calls: transient failures are retried and logged, others fail at
 * once; a conditional write whose first attempt landed comes back CONFLICT (for the caller to
 * resolve); a download is retried only until its first chunk; retryWhole restarts a stream that
 * broke mid-way, but not a failure the store already retried; the policy is applied once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { directoryStore, SyncError, type Leaser, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { retrying, retryWhole } from '../../src/store/retrying-store.ts';
import { withProgress } from '../../src/cli/progress.ts';
import { publishRebuiltManifest } from '../../src/sync/manifest-rebuild.ts';
import { MANIFEST_KEY, encodeManifest, type Manifest } from '../../src/sync/manifest.ts';
import { isCode, tempDir } from '../helpers/fixtures.ts';

const POLICY = { retries: 2, minTimeoutMs: 1, maxTimeoutMs: 2 };
const transient = () => new SyncError('STORE_UNREACHABLE', 'injected: connection reset', { transient: true });

function recordingLog(): SyncLogger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info() {}, error() {}, warn: (_fields: object, message?: string) => void warnings.push(message ?? '') };
}

async function withStore(fn: (store: SnapshotStore) => Promise<void>): Promise<void> {
  const dir = await tempDir('retrying');
  try {
    await fn(directoryStore({ dir: dir.path }));
  } finally {
    await dir.cleanup();
  }
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

test('transient failures are retried (and logged) up to the policy; other failures fail at once', async () => {
  await withStore(async (inner) => {
    await inner.uploadBuffer('k', Buffer.from('v'));
    let reads = 0;
    let failReads = 2;
    const flaky: SnapshotStore = { ...inner, readSmall: (key) => (reads++, failReads-- > 0 ? Promise.reject(transient()) : inner.readSmall(key)) };
    const log = recordingLog();
    const store = retrying(flaky, POLICY, log);
    assert.equal((await store.readSmall('k'))?.body.toString(), 'v');
    assert.equal(reads, 3, 'two failures, then the read');
    assert.equal(log.warnings.length, 2);
    assert.match(log.warnings[0]!, /read k failed \(attempt 1, 2 left\)/);

    reads = 0;
    failReads = 10;
    await assert.rejects(store.readSmall('k'), isCode('STORE_UNREACHABLE'));
    assert.equal(reads, 3, 'the first attempt and two retries');

    let writes = 0;
    const conflicting: SnapshotStore = { ...inner, writeSmall: () => (writes++, Promise.reject(new SyncError('CONFLICT', 'injected'))) };
    await assert.rejects(retrying(conflicting, POLICY, log).writeSmall('k', Buffer.from('x'), { ifNoneMatch: '*' }), isCode('CONFLICT'));
    assert.equal(writes, 1, 'a conflict is not retried');
  });
});

test('a conditional write whose first attempt landed (response lost) comes back CONFLICT, and publishRebuiltManifest recognizes its own manifest', async () => {
  await withStore(async (inner) => {
    let lost = 1;
    const lossy: SnapshotStore = {
      ...inner,
      async writeSmall(key, body, condition) {
        const result = await inner.writeSmall(key, body, condition);
        if (lost-- > 0) throw transient(); // landed, but the caller never hears of it
        return result;
      },
    };
    const manifest: Manifest = { format: 1, generation: 'g', seq: 0, snapshots: [] };
    const store = retrying(lossy, POLICY, recordingLog());
    await assert.rejects(store.writeSmall('other.json', Buffer.from('x'), { ifNoneMatch: '*' }), isCode('CONFLICT'));
    lost = 1;
    const { etag } = await publishRebuiltManifest(store, manifest);
    const current = await inner.readSmall(MANIFEST_KEY);
    assert.equal(current?.etag, etag);
    assert.deepEqual(current?.body, encodeManifest(manifest));
  });
});

test('download is retried until its first chunk arrives, never after', async () => {
  await withStore(async (inner) => {
    const body = Buffer.alloc(100_000, 7);
    await inner.uploadBuffer('blob', body);
    let opened = 0;
    let mode: 'fail-before' | 'fail-after' = 'fail-before';
    let failures = 1;
    const flaky: SnapshotStore = {
      ...inner,
      async *download(key) {
        opened++;
        if (mode === 'fail-before' && failures-- > 0) throw transient();
        for await (const part of inner.download(key)) {
          yield part.subarray(0, 10);
          if (mode === 'fail-after') throw transient();
          yield part.subarray(10);
        }
      },
    };
    const store = retrying(flaky, POLICY, recordingLog());
    assert.deepEqual(await collect(store.download('blob')), body);
    assert.equal(opened, 2, 'the failed open, then the download');

    opened = 0;
    mode = 'fail-after';
    await assert.rejects(collect(store.download('blob')), isCode('STORE_UNREACHABLE'));
    assert.equal(opened, 1, 'bytes were handed on: not retried by the store');

    // retryWhole restarts the whole consumer of a stream that broke mid-way...
    let runs = 0;
    await assert.rejects(retryWhole(store, 'decode blob', () => (runs++, collect(store.download('blob')))), isCode('STORE_UNREACHABLE'));
    assert.equal(runs, 3, 'the first run and two restarts');

    // ...but not one whose failure the store already retried to the end.
    opened = 0;
    runs = 0;
    mode = 'fail-before';
    failures = 100;
    await assert.rejects(retryWhole(store, 'decode blob', () => (runs++, collect(store.download('blob')))), isCode('STORE_UNREACHABLE'));
    assert.equal(runs, 1, 'not retried twice over');
    assert.equal(opened, 3, 'the store retried the open');

    // A store that is not retrying: retryWhole runs once.
    runs = 0;
    await assert.rejects(retryWhole(flaky, 'decode blob', () => (runs++, collect(flaky.download('blob')))), isCode('STORE_UNREACHABLE'));
    assert.equal(runs, 1);
  });
});

test('the policy is applied once: an already retrying store (also behind a Proxy) is returned as it is; lease calls pass through', async () => {
  await withStore(async (inner) => {
    let reads = 0;
    const failing: SnapshotStore = { ...inner, readSmall: () => (reads++, Promise.reject(transient())) };
    const once = retrying(failing, POLICY, recordingLog());
    assert.equal(retrying(once, { ...POLICY, retries: 5 }, recordingLog()), once);
    const proxied = withProgress(once, () => undefined, () => undefined);
    await assert.rejects(retrying(proxied, { ...POLICY, retries: 5 }, recordingLog()).readSmall('k'), isCode('STORE_UNREACHABLE'));
    assert.equal(reads, 3, 'retried by the first policy only');

    await inner.writeSmall(MANIFEST_KEY, Buffer.from('{}'), { ifNoneMatch: '*' });
    await once.acquireLease(MANIFEST_KEY, 'ours', 15);
    assert.equal((await inner.readSmall(MANIFEST_KEY))?.leased, true);
    await once.releaseLease(MANIFEST_KEY, 'ours');
    assert.equal((await inner.readSmall(MANIFEST_KEY))?.leased, false);
  });
});
