import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { CredentialUnavailableError } from '@azure/identity';
import { azureBlobStore } from '../../src/store/azure-blob-store.ts';
import { SyncError } from '../../src/errors.ts';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';
import { spawnTs, waitForLine } from '../helpers/child.ts';
import { once } from 'node:events';

let azurite: Azurite;
let service: BlobServiceClient;
let dir: string;
let counter = 0;

/** A fresh container name per test so tests never see each other's blobs. */
const containerName = () => `t${++counter}-${randomBytes(4).toString('hex')}`;

async function newContainer(): Promise<string> {
  const name = containerName();
  await service.createContainer(name);
  return name;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Asserts a promise rejects with a SyncError of `code`, and returns that error for further checks. */
async function rejectsWith(promise: Promise<unknown>, code: SyncError['code']): Promise<SyncError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SyncError, `expected SyncError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected rejection with ${code}`);
}

function throwsWith(fn: () => unknown, code: SyncError['code'], pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => error instanceof SyncError && error.code === code && pattern.test(error.message));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function sasUrl(container: string, permissions: string, expiresOn: Date): string {
  const credential = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
  const sas = generateBlobSASQueryParameters(
    { containerName: container, permissions: ContainerSASPermissions.parse(permissions), startsOn: new Date(Date.now() - 10 * 60_000), expiresOn },
    credential,
  );
  return `${azurite.blobEndpoint}/${container}?${sas.toString()}`;
}

before(async () => {
  azurite = await startAzurite();
  service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  dir = await mkdtemp(join(tmpdir(), 'azure-store-test-'));
});

after(async () => {
  await azurite?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('azureBlobStore against Azurite', () => {
  test('uploadFile / downloadToFile round-trip a multi-block file with metadata', async () => {
    const container = await newContainer();
    const store = azureBlobStore({ connectionString: azurite.connectionString, container, prefix: 'app1' });
    await store.probe();
    assert.equal(store.location, `azure://${azurite.accountName}/${container}/app1`);

    const data = randomBytes(20 * 1024 * 1024 + 123); // 3 blocks, the last one partial
    const source = join(dir, 'big.bin');
    await writeFile(source, data);
    await store.uploadFile('snapshots/big.bin', source, { sha256: sha256(data), codec: 'lz4' });

    const props = await service.getContainerClient(container).getBlobClient('app1/snapshots/big.bin').getProperties();
    assert.deepEqual(props.metadata, { sha256: sha256(data), codec: 'lz4' });
    assert.equal(props.contentLength, data.length);

    const target = join(dir, 'big.out');
    await writeFile(target, 'stale content that must be truncated away, longer than nothing');
    const { bytes } = await store.downloadToFile('snapshots/big.bin', target);
    assert.equal(bytes, data.length);
    assert.equal(sha256(await readFile(target)), sha256(data));

    // Small and empty files take the single-shot / no-range paths.
    for (const size of [0, 1000]) {
      const small = randomBytes(size);
      await writeFile(join(dir, `s${size}`), small);
      await store.uploadFile(`snapshots/s${size}`, join(dir, `s${size}`));
      assert.equal((await store.downloadToFile(`snapshots/s${size}`, join(dir, `s${size}.out`))).bytes, size);
      assert.deepEqual(await readFile(join(dir, `s${size}.out`)), small);
    }
  });

  test('download: a small blob arrives whole; a blob replaced mid-download fails instead of splicing two versions', async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer() });
    const small = randomBytes(300_000);
    await store.uploadBuffer('chunks/small', small);
    const parts: Buffer[] = [];
    for await (const part of store.download('chunks/small')) parts.push(part);
    assert.equal(parts.length, 1, 'a blob under one block comes as one piece');
    assert.deepEqual(parts[0], small);

    // 6 blocks of 8 MiB: the first GET plus 4 ranges are in flight at once, the last range is requested
    // only after the consumer takes the first block, i.e. after the blob below has been replaced.
    const big = randomBytes(5 * 8 * 1024 * 1024 + 1000);
    await store.uploadBuffer('snapshots/big', big);
    const reader = store.download('snapshots/big')[Symbol.asyncIterator]();
    const first = await reader.next();
    assert.equal(first.done, false, 'the first block arrives');
    await store.uploadBuffer('snapshots/big', randomBytes(big.length));
    const rest = (async () => {
      for (let next = await reader.next(); !next.done; next = await reader.next());
    })();
    const error = await rejectsWith(rest, 'CONFLICT');
    assert.match(error.message, /changed since it was read/);
  });

  test('downloadToFile of a missing blob is NOT_FOUND and creates no file', async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer() });
    const target = join(dir, 'never.out');
    await rejectsWith(store.downloadToFile('nope.bin', target), 'NOT_FOUND');
    await assert.rejects(stat(target), { code: 'ENOENT' });
  });

  test('readSmall on a missing key resolves null', async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer() });
    assert.equal(await store.readSmall('manifest.json'), null);
  });

  test("writeSmall with ifNoneMatch '*' creates once, then CONFLICT", async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer(), prefix: 'db' });
    const { etag } = await store.writeSmall('manifest.json', Buffer.from('{"v":1}'), { ifNoneMatch: '*' });
    const error = await rejectsWith(store.writeSmall('manifest.json', Buffer.from('{"v":2}'), { ifNoneMatch: '*' }), 'CONFLICT');
    assert.equal(error.transient, false);
    assert.ok(error.cause, 'keeps the SDK error as cause');
    const read = await store.readSmall('manifest.json');
    assert.deepEqual(read, { body: Buffer.from('{"v":1}'), etag, leased: false });
  });

  test('writeSmall with a stale ifMatch is CONFLICT, with the current etag it succeeds', async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer() });
    const first = await store.writeSmall('manifest.json', Buffer.from('one'), { ifNoneMatch: '*' });
    const second = await store.writeSmall('manifest.json', Buffer.from('two'), { ifMatch: first.etag });
    assert.notEqual(second.etag, first.etag);
    await rejectsWith(store.writeSmall('manifest.json', Buffer.from('three'), { ifMatch: first.etag }), 'CONFLICT');
    // ifMatch on a key that does not exist also loses (412), rather than creating it.
    await rejectsWith(store.writeSmall('other.json', Buffer.from('x'), { ifMatch: first.etag }), 'CONFLICT');
    const third = await store.writeSmall('manifest.json', Buffer.from('three'), { ifMatch: second.etag });
    assert.deepEqual(await store.readSmall('manifest.json'), { body: Buffer.from('three'), etag: third.etag, leased: false });
  });

  test('list returns keys relative to the store prefix, with sizes', async () => {
    const container = await newContainer();
    const store = azureBlobStore({ connectionString: azurite.connectionString, container, prefix: '/app1/' });
    const sibling = azureBlobStore({ connectionString: azurite.connectionString, container, prefix: 'app10' });
    const root = azureBlobStore({ connectionString: azurite.connectionString, container });
    await store.writeSmall('snapshots/b', Buffer.alloc(7), { ifNoneMatch: '*' });
    await store.writeSmall('snapshots/a', Buffer.alloc(3), { ifNoneMatch: '*' });
    await store.writeSmall('manifest.json', Buffer.alloc(1), { ifNoneMatch: '*' });
    await sibling.writeSmall('snapshots/z', Buffer.alloc(1), { ifNoneMatch: '*' });

    const listed = await store.list('snapshots/');
    assert.deepEqual(listed.map(({ key, size }) => ({ key, size })), [
      { key: 'snapshots/a', size: 3 },
      { key: 'snapshots/b', size: 7 },
    ]);
    assert.ok(listed.every((item) => item.lastModified instanceof Date));
    assert.deepEqual((await store.list('')).map((item) => item.key), ['manifest.json', 'snapshots/a', 'snapshots/b']);
    assert.deepEqual((await root.list('app1')).map((item) => item.key), ['app1/manifest.json', 'app1/snapshots/a', 'app1/snapshots/b', 'app10/snapshots/z']);
    assert.deepEqual(await store.list('nothing-here/'), []);
  });

  test('delete is idempotent', async () => {
    const store = azureBlobStore({ connectionString: azurite.connectionString, container: await newContainer() });
    await store.writeSmall('k', Buffer.from('x'), { ifNoneMatch: '*' });
    await store.delete('k');
    await store.delete('k');
    assert.equal(await store.readSmall('k'), null);
  });

  test('a wrong account key is STORE_AUTH naming the key', async () => {
    const container = await newContainer();
    const wrongKey = Buffer.alloc(64, 7).toString('base64');
    const connectionString = azurite.connectionString.replace(azurite.accountKey, wrongKey);
    const store = azureBlobStore({ connectionString, container });
    const error = await rejectsWith(store.probe(), 'STORE_AUTH');
    assert.match(error.message, /account key/);
    assert.equal(error.transient, false);
    assert.ok(!error.message.includes(wrongKey), 'never echoes the key');
  });

  test('an endpoint nobody listens on is a transient STORE_UNREACHABLE', async () => {
    const port = await freePort();
    const connectionString = azurite.connectionString.replace(`:${azurite.port}/`, `:${port}/`);
    const store = azureBlobStore({ connectionString, container: 'backups', requestTimeoutMs: 5_000 });
    const error = await rejectsWith(store.probe(), 'STORE_UNREACHABLE');
    assert.equal(error.transient, true);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    await rejectsWith(store.readSmall('manifest.json'), 'STORE_UNREACHABLE');
  });

  test('a missing container is STORE_NOT_FOUND; createContainer: true creates it', async () => {
    const container = containerName();
    const plain = azureBlobStore({ connectionString: azurite.connectionString, container });
    const error = await rejectsWith(plain.probe(), 'STORE_NOT_FOUND');
    assert.match(error.message, new RegExp(`${container}.*createContainer: true`));
    // Object reads must not look like "no backup": a missing container is not a missing manifest.
    await rejectsWith(plain.readSmall('manifest.json'), 'STORE_NOT_FOUND');
    await rejectsWith(plain.list(''), 'STORE_NOT_FOUND');

    const creating = azureBlobStore({ connectionString: azurite.connectionString, container, createContainer: true });
    await creating.probe();
    assert.equal(await service.getContainerClient(container).exists(), true);
    await creating.probe(); // and again once it exists
    await plain.probe();
  });

  test('bad options throw CONFIG naming the option', () => {
    const cs = azurite.connectionString;
    throwsWith(() => azureBlobStore({ connectionString: cs } as never), 'CONFIG', /container is required/);
    throwsWith(() => azureBlobStore({ connectionString: cs, container: 'Bad_Name' }), 'CONFIG', /not a valid container name/);
    throwsWith(() => azureBlobStore({ connectionString: 'AccountName=x;nonsense', container: 'c1c' }), 'CONFIG', /connectionString is malformed/);
    throwsWith(() => azureBlobStore({ connectionString: '', container: 'c1c' }), 'CONFIG', /connectionString is empty/);
    throwsWith(() => azureBlobStore({ container: 'c1c' } as never), 'CONFIG', /exactly one of connectionString, accountUrl or containerUrl/);
    throwsWith(() => azureBlobStore({ connectionString: cs, accountUrl: 'https://a.blob.core.windows.net', container: 'c1c' } as never), 'CONFIG', /exactly one/);
    throwsWith(() => azureBlobStore({ accountUrl: 'not a url', container: 'c1c' }), 'CONFIG', /accountUrl must be an http\(s\) URL/);
    throwsWith(() => azureBlobStore({ accountUrl: 'http://a.blob.core.windows.net', container: 'c1c' }), 'CONFIG', /accountUrl must use https/);
    throwsWith(() => azureBlobStore({ containerUrl: `${azurite.blobEndpoint}/c1c` }), 'CONFIG', /containerUrl has no SAS token/);
    throwsWith(() => azureBlobStore({ containerUrl: 'https://a.blob.core.windows.net/c1c', credential: {} as never }), 'CONFIG', /credential must be a TokenCredential/);
    throwsWith(() => azureBlobStore({ connectionString: cs, container: 'c1c', requestTimeoutMs: 0 }), 'CONFIG', /requestTimeoutMs/);
    throwsWith(() => azureBlobStore({ connectionString: cs, container: 'c1c', prefix: 'a//b' }), 'CONFIG', /prefix/);
    throwsWith(() => azureBlobStore(undefined as never), 'CONFIG', /options object/);
  });

  test('an Azure AD credential that cannot get a token is STORE_AUTH explaining managed identity / az login', async () => {
    const credential = { getToken: async () => { throw new CredentialUnavailableError('no managed identity endpoint'); } };
    const store = azureBlobStore({ accountUrl: 'https://127.0.0.1:1', credential, container: 'backups', requestTimeoutMs: 5_000 });
    const error = await rejectsWith(store.probe(), 'STORE_AUTH');
    assert.match(error.message, /managed identity/);
    assert.match(error.message, /az login/);
    assert.ok(error.cause instanceof CredentialUnavailableError);
  });

  test('a SAS containerUrl works end to end; an expired or under-privileged SAS is STORE_AUTH', async () => {
    const container = await newContainer();
    const url = sasUrl(container, 'rwdl', new Date(Date.now() + 60 * 60_000));
    const store = azureBlobStore({ containerUrl: url, prefix: 'p' });
    assert.equal(store.location, `azure://${azurite.accountName}/${container}/p`);
    await store.probe();
    const { etag } = await store.writeSmall('manifest.json', Buffer.from('m'), { ifNoneMatch: '*' });
    assert.deepEqual(await store.readSmall('manifest.json'), { body: Buffer.from('m'), etag, leased: false });
    await writeFile(join(dir, 'sas.bin'), 'hello');
    await store.uploadFile('snap.bin', join(dir, 'sas.bin'), { a: 'b' });
    assert.equal((await store.downloadToFile('snap.bin', join(dir, 'sas.out'))).bytes, 5);
    assert.deepEqual((await store.list('')).map((item) => item.key), ['manifest.json', 'snap.bin']);
    await store.delete('snap.bin');

    const expired = azureBlobStore({ containerUrl: sasUrl(container, 'rwdl', new Date(Date.now() - 60_000)) });
    const error = await rejectsWith(expired.probe(), 'STORE_AUTH');
    assert.match(error.message, /SAS token/);
    assert.ok(!error.message.includes('sig='), 'never echoes the SAS');

    const readOnly = azureBlobStore({ containerUrl: sasUrl(container, 'rl', new Date(Date.now() + 60 * 60_000)) });
    await readOnly.probe();
    const denied = await rejectsWith(readOnly.writeSmall('x', Buffer.from('x'), { ifNoneMatch: '*' }), 'STORE_AUTH');
    assert.match(denied.message, /AuthorizationPermissionMismatch.*write, delete, list/);
  });

  describe('through a faulty TCP proxy', () => {
    const viaProxy = async (requestTimeoutMs: number) => {
      const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: azurite.port });
      const connectionString = azurite.connectionString.replace(`:${azurite.port}/`, `:${proxy.port}/`);
      const container = await newContainer();
      return { proxy, store: azureBlobStore({ connectionString, container, requestTimeoutMs }) };
    };

    test("'pass' and a delay work; 'blackhole' gives a bounded transient STORE_UNREACHABLE", async () => {
      const { proxy, store } = await viaProxy(1_000);
      try {
        await store.probe(); // leaves a pooled keep-alive connection that the blackhole must also catch
        proxy.setMode({ delayMs: 50 });
        await store.writeSmall('m', Buffer.from('slow'), { ifNoneMatch: '*' });
        proxy.setMode('blackhole');
        const started = Date.now();
        const error = await rejectsWith(store.probe(), 'STORE_UNREACHABLE');
        assert.equal(error.transient, true);
        assert.match(error.message, /no response within 1000 ms/);
        assert.ok(Date.now() - started < 10_000, 'bounded by the watchdog, not hanging');
        await rejectsWith(store.readSmall('m'), 'STORE_UNREACHABLE');
        await writeFile(join(dir, 'bh.bin'), randomBytes(64 * 1024));
        await rejectsWith(store.uploadFile('bh.bin', join(dir, 'bh.bin')), 'STORE_UNREACHABLE');
        proxy.setMode('pass');
        assert.deepEqual((await store.readSmall('m'))?.body, Buffer.from('slow'));
        assert.ok(proxy.connections >= 2);
      } finally {
        await proxy.close();
      }
    });

    test("'drop' and 'reset' give a transient STORE_UNREACHABLE", async () => {
      const { proxy, store } = await viaProxy(5_000);
      try {
        await store.probe();
        for (const mode of ['drop', 'reset'] as const) {
          proxy.setMode(mode);
          const error = await rejectsWith(store.probe(), 'STORE_UNREACHABLE');
          assert.equal(error.transient, true, `${mode}: ${error.message}`);
        }
      } finally {
        await proxy.close();
      }
    });
  });

  test('behind a proxy (which only the SDK honours) every operation goes through the SDK and behaves the same', async () => {
    const container = await newContainer();
    // NO_PROXY names Azurite's host, so the SDK reaches it directly; HTTP_PROXY alone makes the store use the SDK.
    const child = spawnTs('test/children/store-behind-proxy.ts', [azurite.connectionString, container], { HTTP_PROXY: 'http://127.0.0.1:9', NO_PROXY: '127.0.0.1,localhost' });
    const line = await waitForLine(child, 'result ');
    await once(child, 'exit');
    assert.deepEqual(JSON.parse(line.slice('result '.length)), {
      conflict: 'CONFLICT',
      leased: true,
      read: 'v2',
      chunk: 'chunk-a',
      listed: ['chunks/a:7', 'manifest.json:2'],
      after: 0,
      sdkLoaded: true,
    });
  });
});
