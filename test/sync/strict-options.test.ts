/**
 * Strict options end to end: a misspelled option at any level of drizzle() or of a store factory is
 * CONFIG naming the key and the closest valid one, and nothing is created or contacted first: no local
 * folder, file or lock, no store request, no key provider call, no backup folder, no container.
 * Each refusal has a control beside it (the same options spelled right do create those things), so the
 * absence asserted is one the test can see go wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { drizzle, type DrizzleBlobConfig } from '../../src/drizzle.ts';
import { azureBlobStore } from '../../src/store/azure-blob-store.ts';
import { directoryStore } from '../../src/store/directory-store.ts';
import { SyncError } from '../../src/errors.ts';
import { countingStore } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const env = useAzuriteAndTempDir('strict-options');

/** The CONFIG error `fn` throws (sync or async), asserting its code. */
async function configError(fn: () => unknown): Promise<SyncError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof SyncError, `expected a SyncError, got ${String(error)}`);
    assert.equal(error.code, 'CONFIG', error.message);
    return error;
  }
  assert.fail('accepted');
}

const misspelled: [string, Partial<DrizzleBlobConfig>, string][] = [
  ['top level', { restor: 'required' } as Partial<DrizzleBlobConfig>, "unknown option 'restor' — did you mean 'restore'?"],
  ['top level (a whole level)', { snapshots: { debounceMs: 10 } } as Partial<DrizzleBlobConfig>, "unknown option 'snapshots' — did you mean 'snapshot'?"],
  ['drizzle\'s own', { loger: true } as Partial<DrizzleBlobConfig>, "unknown option 'loger' — did you mean 'logger'?"],
  ['snapshot', { snapshot: { debounceMS: 10 } as never }, "unknown option 'snapshot.debounceMS' — did you mean 'snapshot.debounceMs'?"],
  ['snapshot.retain', { snapshot: { retain: { cont: 2 } as never } }, "unknown option 'snapshot.retain.cont' — did you mean 'snapshot.retain.count'?"],
  ['lease', { lease: { durationSecs: 30 } as never }, "unknown option 'lease.durationSecs' — did you mean 'lease.durationSec'?"],
  ['replica', { replica: { pollMS: 100 } as never }, "unknown option 'replica.pollMS' — did you mean 'replica.pollMs'?"],
  ['shutdown', { shutdown: { signal: false } as never }, "unknown option 'shutdown.signal' — did you mean 'shutdown.signals'?"],
  ['retry', { retry: { retires: 1 } as never }, "unknown option 'retry.retires' — did you mean 'retry.retries'?"],
  ['metrics', { metrics: { meters: {} } as never }, "unknown option 'metrics.meters' — did you mean 'metrics.meter'?"],
  ['restore', { restore: { sq: 1 } as never }, "unknown option 'restore.sq' — did you mean 'restore.seq'?"],
  ['wrong type of a level', { snapshot: 5 as never }, 'snapshot must be an object such as { debounceMs: 2000 }; got 5.'],
  ['wrong type of a value', { snapshot: { debounceMs: '2s' as never } }, 'snapshot.debounceMs must be a number >= 0, got "2s".'],
];

test('drizzle(): a misspelled option at each level is CONFIG with a suggestion, and leaves no folder, file or store request', async () => {
  for (const [index, [level, options, message]] of misspelled.entries()) {
    const root = join(env.dir.path, `dir-${index}`);
    const store = countingStore(directoryStore({ dir: join(root, 'backups') }));
    let keyProviderCalled = false;
    const error = await configError(() =>
      drizzle({
        connection: { url: `file:${join(root, 'data', 'app.db')}` },
        store,
        log: false,
        // A valid key provider: with the options refused it must not be asked for the key either.
        encryption: { key: () => ((keyProviderCalled = true), Buffer.alloc(32, 1)) },
        ...options,
        shutdown: { signals: false, ...options.shutdown },
      }),
    );
    assert.equal(error.message, message, level);
    assert.equal(existsSync(root), false, `${level}: ${root} was created`);
    assert.deepEqual(Object.values(store.calls).filter((n) => n > 0), [], `${level}: store calls ${JSON.stringify(store.calls)}`);
    assert.equal(keyProviderCalled, false, `${level}: the key provider was called`);
  }

  // encryption: its own level, checked as early (the key provider is not called).
  const root = join(env.dir.path, 'dir-encryption');
  let called = false;
  const error = await configError(() =>
    drizzle({
      connection: { url: `file:${join(root, 'data', 'app.db')}` },
      store: directoryStore({ dir: join(root, 'backups') }),
      log: false,
      shutdown: { signals: false },
      encryption: { key: () => ((called = true), Buffer.alloc(32, 1)), kye: 'x' } as never,
    }),
  );
  assert.equal(error.message, "unknown option 'encryption.kye' — did you mean 'encryption.key'?");
  assert.equal(existsSync(root), false);
  assert.equal(called, false);

  // Control: the same options spelled right create the folder, the file and the backups, and call the provider.
  const good = join(env.dir.path, 'dir-control');
  const db = await drizzle({
    connection: { url: `file:${join(good, 'data', 'app.db')}` },
    store: directoryStore({ dir: join(good, 'backups') }),
    log: false,
    shutdown: { signals: false },
    snapshot: { debounceMs: 10, retain: { count: 2 } },
    restore: 'if-exists',
    encryption: { key: () => ((called = true), Buffer.alloc(32, 1)) },
  });
  await db.$sync.close();
  assert.equal(called, true);
  assert.ok(existsSync(join(good, 'data', 'app.db')));
  assert.ok(existsSync(join(good, 'backups')));
});

test('directoryStore(): an unknown option is CONFIG with a suggestion, and the folder is not created', async () => {
  const dir = join(env.dir.path, 'store-typo', 'backups');
  const error = await configError(() => directoryStore({ dir, prefx: 'app' } as never));
  assert.equal(error.message, "directoryStore: unknown option 'prefx' — did you mean 'prefix'?");
  const wrongType = await configError(() => directoryStore({ dir, prefix: 5 } as never));
  assert.match(wrongType.message, /^directoryStore: prefix must be a string/);
  assert.equal(existsSync(join(env.dir.path, 'store-typo')), false);
});

test('Azurite: a misspelled azureBlobStore() or drizzle() option creates no container and makes no request', async () => {
  const { connectionString } = env.azurite;
  const service = BlobServiceClient.fromConnectionString(connectionString);
  const containers = async () => {
    const names: string[] = [];
    for await (const container of service.listContainers()) names.push(container.name);
    return names;
  };

  const storeError = await configError(() => azureBlobStore({ connectionString, container: 'strict-a', createContainer: true, contaner: 'strict-b' } as never));
  assert.equal(storeError.message, "azureBlobStore: unknown option 'contaner' — did you mean 'container'?");

  const root = join(env.dir.path, 'azure');
  const store = countingStore(azureBlobStore({ connectionString, container: 'strict-c', createContainer: true }));
  const error = await configError(() =>
    drizzle({ connection: { url: `file:${join(root, 'app.db')}` }, store, log: false, shutdown: { signals: false }, snapshot: { debounceMS: 10 } as never }),
  );
  assert.equal(error.message, "unknown option 'snapshot.debounceMS' — did you mean 'snapshot.debounceMs'?");
  assert.deepEqual(Object.values(store.calls).filter((n) => n > 0), []);
  assert.equal(existsSync(root), false);
  assert.deepEqual(await containers(), []);

  // Control: spelled right, the same store creates its container.
  const db = await drizzle({ connection: { url: `file:${join(root, 'app.db')}` }, store, log: false, shutdown: { signals: false }, snapshot: { debounceMs: 10 } });
  await db.$sync.close();
  assert.deepEqual(await containers(), ['strict-c']);
  assert.ok(readdirSync(root).includes('app.db'));
});
