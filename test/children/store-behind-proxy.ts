/**
 * Child for test/store/azure-blob-store.test.ts: with a proxy configured (HTTP_PROXY, and NO_PROXY
 * naming Azurite's host so the SDK still reaches it directly), every store operation goes through the
 * SDK. Prints what each operation returned and whether the SDK was loaded.
 * argv: CONNECTION_STRING CONTAINER
 */
import { createRequire } from 'node:module';
import { azureBlobStore } from '../../src/store/azure-blob-store.ts';

const [connectionString, container] = process.argv.slice(2) as [string, string];
const store = azureBlobStore({ connectionString, container, prefix: 'p' });
await store.probe();
const { etag } = await store.writeSmall('manifest.json', Buffer.from('v1'), { ifNoneMatch: '*' });
const conflict = await store.writeSmall('manifest.json', Buffer.from('v2'), { ifNoneMatch: '*' }).then(() => 'none', (error: { code?: string }) => error.code);
await store.acquireLease('manifest.json', '00000000-0000-4000-8000-000000000001', 15);
const leased = (await store.readSmall('manifest.json'))!.leased;
await store.renewLease('manifest.json', '00000000-0000-4000-8000-000000000001');
await store.writeSmall('manifest.json', Buffer.from('v2'), { ifMatch: etag, leaseId: '00000000-0000-4000-8000-000000000001' });
await store.releaseLease('manifest.json', '00000000-0000-4000-8000-000000000001');
await store.uploadBuffer('chunks/a', Buffer.from('chunk-a'));
const parts: Buffer[] = [];
for await (const part of store.download('chunks/a')) parts.push(part);
const listed = (await store.list('')).map((o) => `${o.key}:${o.size}`);
await store.delete('chunks/a');
await store.delete('chunks/a'); // already gone: fine
const after = (await store.list('chunks/')).length;
const sdkLoaded = Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes('/node_modules/@azure/storage-blob/'));
console.log('result ' + JSON.stringify({ conflict, leased, read: (await store.readSmall('manifest.json'))!.body.toString(), chunk: Buffer.concat(parts).toString(), listed, after, sdkLoaded }));
