/**
 * Fault injection, part 1c: bad configuration against a real Azurite that holds a good backup.
 *
 * Every case calls the real drizzle() (or azureBlobStore()/storeFromEnv() where the mistake is caught
 * there) and must:
 *  - reject with a SyncError of the expected code, whose message names the fix (a regex on the key phrase);
 *  - leave the store untouched: the backup container's manifest bytes and ETag, and every blob's name
 *    and ETag, are the same before and after, and no container was created or removed;
 *  - leave no local database behind: the local directory is absent or empty (no db, -wal, -shm,
 *    sidecar or restore temp file).
 * Finally the backup still restores completely (nothing acknowledged before was lost).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { asc } from 'drizzle-orm';
import { azureBlobStore, drizzle, storeFromEnv, SyncError, type DrizzleBlobConfig, type SnapshotStore, type SyncErrorCode } from 'drizzle-libsql-blob';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { notes, open, schema, tempDir } from '../helpers/fixtures.ts';
import { faultSummary } from '../helpers/fault-report.ts';

const PREFIX = 'app';
const ROWS = 50;

let azurite: Azurite;
let service: BlobServiceClient;
let root: Awaited<ReturnType<typeof tempDir>>;
/** The container holding the good backup every case must leave alone. */
let container: string;
let bodies: string[];

before(async () => {
  azurite = await startAzurite();
  service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  root = await tempDir('fault-config');
  container = `cfg-${randomBytes(4).toString('hex')}`;
  await service.createContainer(container);
  const db = await open(join(root.path, 'seed', 'app.db'), goodStore());
  bodies = Array.from({ length: ROWS }, (_, i) => `kept ${i}`);
  await db.insert(notes).values(bodies.map((body) => ({ body })));
  await db.$sync.close(); // final snapshot, lease released
});
after(async () => {
  await azurite?.stop();
  await root?.cleanup();
});

const goodStore = () => azureBlobStore({ connectionString: azurite.connectionString, container, prefix: PREFIX });

/** Everything a case could have touched: the containers, every blob with its ETag, the manifest's bytes. */
async function storeState(): Promise<string> {
  const containers: string[] = [];
  for await (const c of service.listContainers()) containers.push(c.name);
  const blobs: string[] = [];
  const client = service.getContainerClient(container);
  for await (const b of client.listBlobsFlat()) blobs.push(`${b.name} ${b.properties.etag} ${b.properties.contentLength}`);
  const manifest = client.getBlobClient(`${PREFIX}/${MANIFEST_KEY}`);
  const props = await manifest.getProperties();
  const body = (await manifest.downloadToBuffer()).toString('base64');
  return JSON.stringify({ containers: containers.sort(), blobs: blobs.sort(), manifest: { etag: props.etag, body } }, null, 1);
}

function sas(options: { permissions: string; startsOn: Date; expiresOn: Date }): string {
  const credential = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
  const query = generateBlobSASQueryParameters({ containerName: container, permissions: ContainerSASPermissions.parse(options.permissions), startsOn: options.startsOn, expiresOn: options.expiresOn }, credential);
  return `${azurite.blobEndpoint}/${container}?${query.toString()}`;
}

const HOUR = 3_600_000;

interface Case {
  name: string;
  code: SyncErrorCode;
  /** Key phrases the message must contain: what to fix. */
  message: RegExp[];
  /** Builds the store (may throw: a mistake caught by azureBlobStore itself) and the options; the local file is given. */
  run(dbUrl: string): Promise<unknown>;
}

const open_ = (dbUrl: string, store: SnapshotStore, extra: Partial<DrizzleBlobConfig<typeof schema>> = {}) =>
  drizzle({ connection: { url: dbUrl }, schema, store, log: false, shutdown: { signals: false }, retry: { retries: 0 }, ...extra });

const CASES: Case[] = [
  {
    name: 'missing container',
    code: 'STORE_NOT_FOUND',
    message: [/Container "no-such-container" does not exist/, /az storage container create/, /createContainer: true/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'no-such-container', prefix: PREFIX })),
  },
  {
    name: 'missing container, role writer',
    code: 'STORE_NOT_FOUND',
    message: [/createContainer: true/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'no-such-container', prefix: PREFIX }), { role: 'writer' }),
  },
  {
    name: 'wrong account key',
    code: 'STORE_AUTH',
    message: [/access denied/, /check the account key \/ connection string/],
    run: async (url) =>
      open_(url, azureBlobStore({ connectionString: azurite.connectionString.replace(azurite.accountKey, Buffer.alloc(64, 7).toString('base64')), container, prefix: PREFIX })),
  },
  {
    name: 'wrong account name',
    code: 'STORE_AUTH',
    message: [/check the account key \/ connection string/],
    run: async (url) =>
      open_(url, azureBlobStore({ connectionString: azurite.connectionString.replace(`AccountName=${azurite.accountName}`, 'AccountName=someoneelse'), container, prefix: PREFIX })),
  },
  {
    name: 'expired SAS',
    code: 'STORE_AUTH',
    message: [/SAS token/, /expired/],
    run: async (url) => open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'racwdl', startsOn: new Date(Date.now() - 2 * HOUR), expiresOn: new Date(Date.now() - HOUR) }), prefix: PREFIX })),
  },
  {
    name: 'SAS not valid yet',
    code: 'STORE_AUTH',
    message: [/SAS token/, /not yet valid/],
    run: async (url) => open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'racwdl', startsOn: new Date(Date.now() + HOUR), expiresOn: new Date(Date.now() + 2 * HOUR) }), prefix: PREFIX })),
  },
  {
    name: 'SAS without write permission, role writer',
    code: 'STORE_AUTH',
    message: [/SAS token/, /permissions \(needs read, write, delete, list\)/],
    run: async (url) =>
      open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'rl', startsOn: new Date(Date.now() - HOUR), expiresOn: new Date(Date.now() + HOUR) }), prefix: PREFIX }), { role: 'writer' }),
  },
  {
    name: 'malformed connection string',
    code: 'CONFIG',
    message: [/connectionString is malformed/, /DefaultEndpointsProtocol=https;AccountName=\.\.\.;AccountKey=\.\.\./],
    run: async (url) => open_(url, azureBlobStore({ connectionString: 'AccountName=devstoreaccount1;this is not a connection string', container, prefix: PREFIX })),
  },
  {
    name: 'empty connection string from the environment',
    code: 'CONFIG',
    message: [/AZURE_STORAGE_CONTAINER\/AZURE_STORAGE_PREFIX are set but no account is/, /AZURE_STORAGE_CONNECTION_STRING/],
    run: async (url) => open_(url, storeFromEnv({ AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: PREFIX })),
  },
  {
    name: 'malformed connection string from the environment',
    code: 'CONFIG',
    message: [/connectionString is malformed/],
    run: async (url) => open_(url, storeFromEnv({ AZURE_STORAGE_CONNECTION_STRING: 'garbage', AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: PREFIX })),
  },
  {
    name: 'invalid container name',
    code: 'CONFIG',
    message: [/not a valid container name/, /lowercase letters, digits and single hyphens/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'My_Backups', prefix: PREFIX })),
  },
  {
    name: 'snapshot.debounceMs: -1',
    code: 'CONFIG',
    message: [/snapshot\.debounceMs must be a number >= 0/, /-1/],
    run: async (url) => open_(url, goodStore(), { snapshot: { debounceMs: -1 } }),
  },
  {
    name: "restore: 'sometimes'",
    code: 'CONFIG',
    message: [/restore must be 'required', 'if-exists', 'skip'/, /sometimes/],
    run: async (url) => open_(url, goodStore(), { restore: 'sometimes' as never }),
  },
  {
    name: "role: 'boss'",
    code: 'CONFIG',
    message: [/role must be 'auto', 'writer' or 'replica'/, /boss/],
    run: async (url) => open_(url, goodStore(), { role: 'boss' as never }),
  },
  {
    name: 'lease: { durationSec: 5 }',
    code: 'CONFIG',
    message: [/lease\.durationSec must be/, /15/],
    run: async (url) => open_(url, goodStore(), { lease: { durationSec: 5 } }),
  },
  {
    name: 'lease: { durationSec: 90 }',
    code: 'CONFIG',
    message: [/lease\.durationSec must be a whole number of seconds from 15 to 60/],
    run: async (url) => open_(url, goodStore(), { lease: { durationSec: 90 } }),
  },
  {
    name: 'snapshot.maxIntervalMs below debounceMs',
    code: 'CONFIG',
    message: [/snapshot\.maxIntervalMs \(10\) must not be smaller than snapshot\.debounceMs \(20\)/],
    run: async (url) => open_(url, goodStore(), { snapshot: { debounceMs: 20, maxIntervalMs: 10 } }),
  },
  {
    name: "synchronous: 'off'",
    code: 'CONFIG',
    message: [/synchronous must be 'normal' or 'full'/],
    run: async (url) => open_(url, goodStore(), { synchronous: 'off' as never }),
  },
  {
    name: 'retry.retries: -1',
    code: 'CONFIG',
    message: [/retry\.retries must be a number >= 0/],
    run: async (url) => open_(url, goodStore(), { retry: { retries: -1 } }),
  },
  {
    name: 'requestTimeoutMs: 0',
    code: 'CONFIG',
    message: [/requestTimeoutMs must be a positive number/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container, prefix: PREFIX, requestTimeoutMs: 0 })),
  },
  {
    name: 'remote libSQL url',
    code: 'CONFIG',
    message: [/connection\.url must be a local file URL such as "file:\.\/data\/app\.db"/],
    run: async () => open_('libsql://db.example.com', goodStore()),
  },
  {
    name: "wrong prefix with restore: 'required'",
    code: 'NO_BACKUP',
    message: [/restore: 'required'/, /check the container and prefix/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container, prefix: 'app-typo' }), { restore: 'required' }),
  },
];

test('bad configuration fails with a SyncError naming the fix, touches no store and leaves no local database', { timeout: 120_000 }, async (t) => {
  const startedAt = performance.now();
  let runs = 0;
  let untouched = 0;
  let clean = 0;
  for (const c of CASES) {
    await t.test(c.name, async () => {
      const local = join(root.path, 'cases', c.name.replace(/[^a-z0-9]+/gi, '-'));
      const before = await storeState();
      let error: unknown;
      try {
        const db = await c.run(`file:${join(local, 'app.db')}`);
        await (db as { $sync?: { close(): Promise<void> } })?.$sync?.close();
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof SyncError, `expected a SyncError ${c.code}, got ${error === undefined ? 'success' : String(error)}`);
      assert.equal(error.code, c.code, error.message);
      for (const pattern of c.message) assert.match(error.message, pattern);
      assert.doesNotMatch(error.message, new RegExp(azurite.accountKey.slice(0, 20).replace(/[+/]/g, '\\$&')), 'never echoes the account key');
      assert.doesNotMatch(error.message, /sig=/, 'never echoes a SAS signature');

      assert.equal(await storeState(), before, 'the store was touched');
      untouched++;
      // The file lock (<db>.lock) stays: it is never deleted, and means nothing without a holder.
      const left = existsSync(local) ? (await readdir(local)).filter((name) => !name.endsWith('.lock')) : [];
      assert.deepEqual(left, [], 'a local file was left behind');
      clean++;
      runs++;
    });
  }

  // The backup is intact and complete after all of that.
  const fresh = join(root.path, 'after', 'app.db');
  const db = await drizzle({ connection: { url: `file:${fresh}` }, schema, store: goodStore(), log: false, restore: 'required', role: 'replica', shutdown: { signals: false } });
  const restored = (await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id))).map((r) => r.body);
  await db.$sync.close();
  const lost = bodies.filter((b) => !restored.includes(b)).length;

  faultSummary(
    t,
    'config',
    { runs: CASES.length, faults: CASES.length, passed: runs, acked: bodies.length, lost, 'store-untouched': untouched, 'local-clean': clean },
    startedAt,
  );
  assert.equal(lost, 0);
  assert.deepEqual(restored, bodies);
  assert.equal(runs, CASES.length, 'every case passed');
});
