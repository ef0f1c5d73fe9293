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
import { inspect } from 'node:util';
import { join } from 'node:path';
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { asc } from 'drizzle-orm';
import { azureBlobStore, drizzle, storeFromEnv, SyncError, type DrizzleBlobConfig, type Leaser, type SnapshotStore, type SyncErrorCode, type SyncLogger } from 'drizzle-libsql-blob';
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

/** The SAS URL the last `sas()` call made (its signature is that case's secret). */
let lastSas = '';
function sas(options: { permissions: string; startsOn: Date; expiresOn: Date }): string {
  const credential = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
  const query = generateBlobSASQueryParameters({ containerName: container, permissions: ContainerSASPermissions.parse(options.permissions), startsOn: options.startsOn, expiresOn: options.expiresOn }, credential);
  lastSas = `${azurite.blobEndpoint}/${container}?${query.toString()}`;
  return lastSas;
}

/** A well-formed key that is not the account's. */
const wrongKeyConnectionString = () => azurite.connectionString.replace(azurite.accountKey, Buffer.alloc(64, 7).toString('base64'));

const HOUR = 3_600_000;

interface Case {
  name: string;
  code: SyncErrorCode;
  /** Key phrases the message must contain: what to fix. */
  message: RegExp[];
  /** Builds the store (may throw: a mistake caught by azureBlobStore itself) and the options; the local file is given. */
  run(dbUrl: string): Promise<unknown>;
  /** The secrets this case hands the library (account key, SAS signature): none may be echoed. */
  secrets(): string[];
}

/** Every line the library logged during the current case (reset per case). */
let logged: string[] = [];
const captureLog: SyncLogger = {
  info: (fields, message) => void logged.push(`info ${message ?? ''} ${JSON.stringify(fields)}`),
  warn: (fields, message) => void logged.push(`warn ${message ?? ''} ${JSON.stringify(fields)}`),
  error: (fields, message) => void logged.push(`error ${message ?? ''} ${JSON.stringify(fields)}`),
};

const open_ = (dbUrl: string, store: SnapshotStore, extra: Partial<DrizzleBlobConfig<typeof schema>> = {}) =>
  drizzle({ connection: { url: dbUrl }, schema, store, log: captureLog, shutdown: { signals: false }, retry: { retries: 0 }, ...extra });

/** The secret part of a connection string: its AccountKey. */
function accountKeyOf(connectionString: string): string[] {
  const key = /AccountKey=([^;]+)/.exec(connectionString)?.[1];
  return key ? [key] : [];
}

/** The secret part of a SAS URL: its signature. */
function sasSignatureOf(url: string): string[] {
  const sig = new URL(url).searchParams.get('sig');
  return sig ? [sig] : [];
}

/**
 * Everything an app could print of an error: message and stack of the error and of every cause, and
 * util.inspect of the whole chain (what a logger's error serializer shows).
 */
function errorText(error: unknown): string {
  const parts: string[] = [inspect(error, { depth: 8 })];
  const seen = new Set<unknown>();
  for (let e: unknown = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    parts.push(String(e), e.message, e.stack ?? '');
  }
  return parts.join('\n');
}

/** No form of any secret (as is, URL-encoded, or its first 12 characters) appears in `text`. */
function assertNoSecret(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) {
    for (const form of new Set([secret, encodeURIComponent(secret), secret.slice(0, 12), encodeURIComponent(secret).slice(0, 12)])) {
      assert.ok(!text.includes(form), `${where} echoes a secret (${form.slice(0, 4)}…)`);
    }
  }
}

const CASES: Case[] = [
  {
    name: 'missing container',
    code: 'STORE_NOT_FOUND',
    message: [/Container "no-such-container" does not exist/, /az storage container create/, /createContainer: true/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'no-such-container', prefix: PREFIX })),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'missing container, role writer',
    code: 'STORE_NOT_FOUND',
    message: [/createContainer: true/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'no-such-container', prefix: PREFIX }), { role: 'writer' }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'wrong account key',
    code: 'STORE_AUTH',
    message: [/access denied/, /check the account key \/ connection string/],
    run: async (url) =>
      open_(url, azureBlobStore({ connectionString: wrongKeyConnectionString(), container, prefix: PREFIX })),
    secrets: () => accountKeyOf(wrongKeyConnectionString()),
  },
  {
    name: 'wrong account name',
    code: 'STORE_AUTH',
    message: [/check the account key \/ connection string/],
    run: async (url) =>
      open_(url, azureBlobStore({ connectionString: azurite.connectionString.replace(`AccountName=${azurite.accountName}`, 'AccountName=someoneelse'), container, prefix: PREFIX })),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'expired SAS',
    code: 'STORE_AUTH',
    message: [/SAS token/, /expired/],
    run: async (url) => open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'racwdl', startsOn: new Date(Date.now() - 2 * HOUR), expiresOn: new Date(Date.now() - HOUR) }), prefix: PREFIX })),
    secrets: () => sasSignatureOf(lastSas),
  },
  {
    name: 'SAS not valid yet',
    code: 'STORE_AUTH',
    message: [/SAS token/, /not yet valid/],
    run: async (url) => open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'racwdl', startsOn: new Date(Date.now() + HOUR), expiresOn: new Date(Date.now() + 2 * HOUR) }), prefix: PREFIX })),
    secrets: () => sasSignatureOf(lastSas),
  },
  {
    name: 'SAS without write permission, role writer',
    code: 'STORE_AUTH',
    message: [/SAS token/, /permissions \(needs read, write, delete, list\)/],
    run: async (url) =>
      open_(url, azureBlobStore({ containerUrl: sas({ permissions: 'rl', startsOn: new Date(Date.now() - HOUR), expiresOn: new Date(Date.now() + HOUR) }), prefix: PREFIX }), { role: 'writer' }),
    secrets: () => sasSignatureOf(lastSas),
  },
  {
    name: 'malformed connection string',
    code: 'CONFIG',
    message: [/connectionString is malformed/, /DefaultEndpointsProtocol=https;AccountName=\.\.\.;AccountKey=\.\.\./],
    run: async (url) => open_(url, azureBlobStore({ connectionString: 'AccountName=devstoreaccount1;this is not a connection string', container, prefix: PREFIX })),
    secrets: () => [],
  },
  {
    name: 'empty connection string from the environment',
    code: 'CONFIG',
    message: [/AZURE_STORAGE_CONTAINER\/AZURE_STORAGE_PREFIX are set but no account is/, /AZURE_STORAGE_CONNECTION_STRING/],
    run: async (url) => open_(url, storeFromEnv({ AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: PREFIX })),
    secrets: () => [],
  },
  {
    name: 'malformed connection string from the environment',
    code: 'CONFIG',
    message: [/connectionString is malformed/],
    run: async (url) => open_(url, storeFromEnv({ AZURE_STORAGE_CONNECTION_STRING: 'garbage', AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: PREFIX })),
    secrets: () => [],
  },
  {
    name: 'invalid container name',
    code: 'CONFIG',
    message: [/not a valid container name/, /lowercase letters, digits and single hyphens/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container: 'My_Backups', prefix: PREFIX })),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'snapshot.debounceMs: -1',
    code: 'CONFIG',
    message: [/snapshot\.debounceMs must be a number >= 0/, /-1/],
    run: async (url) => open_(url, goodStore(), { snapshot: { debounceMs: -1 } }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: "restore: 'sometimes'",
    code: 'CONFIG',
    message: [/restore must be 'required', 'if-exists', 'skip'/, /sometimes/],
    run: async (url) => open_(url, goodStore(), { restore: 'sometimes' as never }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: "role: 'boss'",
    code: 'CONFIG',
    message: [/role must be 'auto', 'writer' or 'replica'/, /boss/],
    run: async (url) => open_(url, goodStore(), { role: 'boss' as never }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'lease: { durationSec: 5 }',
    code: 'CONFIG',
    message: [/lease\.durationSec must be/, /15/],
    run: async (url) => open_(url, goodStore(), { lease: { durationSec: 5 } }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'lease: { durationSec: 90 }',
    code: 'CONFIG',
    message: [/lease\.durationSec must be a whole number of seconds from 15 to 60/],
    run: async (url) => open_(url, goodStore(), { lease: { durationSec: 90 } }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'snapshot.maxIntervalMs below debounceMs',
    code: 'CONFIG',
    message: [/snapshot\.maxIntervalMs \(10\) must not be smaller than snapshot\.debounceMs \(20\)/],
    run: async (url) => open_(url, goodStore(), { snapshot: { debounceMs: 20, maxIntervalMs: 10 } }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: "synchronous: 'off'",
    code: 'CONFIG',
    message: [/synchronous must be 'normal' or 'full'/],
    run: async (url) => open_(url, goodStore(), { synchronous: 'off' as never }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'retry.retries: -1',
    code: 'CONFIG',
    message: [/retry\.retries must be a number >= 0/],
    run: async (url) => open_(url, goodStore(), { retry: { retries: -1 } }),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'requestTimeoutMs: 0',
    code: 'CONFIG',
    message: [/requestTimeoutMs must be a positive number/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container, prefix: PREFIX, requestTimeoutMs: 0 })),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: 'not a file url (a libSQL server url is the scale-out path: test/sync/remote.test.ts)',
    code: 'CONFIG',
    message: [/connection\.url must be a local file URL such as "file:\.\/data\/app\.db"/],
    run: async () => open_('postgres://db.example.com', goodStore()),
    secrets: () => accountKeyOf(azurite.connectionString),
  },
  {
    name: "wrong prefix with restore: 'required'",
    code: 'NO_BACKUP',
    message: [/restore: 'required'/, /check the container and prefix/],
    run: async (url) => open_(url, azureBlobStore({ connectionString: azurite.connectionString, container, prefix: 'app-typo' }), { restore: 'required' }),
    secrets: () => accountKeyOf(azurite.connectionString),
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
      logged = [];
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
      const secrets = c.secrets();
      if (c.name.includes('SAS') || c.name.includes('account key')) assert.ok(secrets.length > 0, 'the case knows its secret');
      assertNoSecret(errorText(error), secrets, 'the error (message, stack, cause chain, inspect)');
      assertNoSecret(logged.join('\n'), secrets, 'the sync log');
      assert.doesNotMatch(errorText(error) + logged.join('\n'), /sig=(?!REDACTED)[^&\s]/, 'never echoes a SAS signature (the SDK prints sig=REDACTED)');

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
