/**
 * The plain signed requests of src/store/azure-rest.ts (probe, small reads, leases, restore chunks).
 * Shared-key and SAS signing are proven end to end against Azurite (test/store/azure-blob-store.test.ts,
 * test/sync/*, test/faults/network.test.ts); here: the string-to-sign's layout, when the SDK keeps the
 * job, and against a real local HTTP server the parts Azurite cannot show (bearer tokens, which it only
 * takes over HTTPS with OAuth on) and the retry rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TokenCredential } from '@azure/core-auth';
import { azureRest, parseBlobList, stringToSign } from '../../src/store/azure-rest.ts';

const rangeGetter = (credential: TokenCredential, env: NodeJS.ProcessEnv) => {
  const rest = azureRest({ kind: 'token', credential }, env);
  return rest && rest.getRange.bind(rest);
};

test('stringToSign: the verb, eleven standard headers, x-ms- headers sorted, /account/path, query sorted and lower-cased', () => {
  const url = new URL('http://127.0.0.1:10000/devstoreaccount1/c/p/chunks/ab?comp=x&B=2&b=1');
  const headers = { 'x-ms-version': 'V', 'x-ms-date': 'D', 'x-ms-range': 'bytes=0-9', 'if-match': '"0x1"' };
  assert.equal(
    stringToSign('GET', 'devstoreaccount1', url, headers),
    'GET\n\n\n\n\n\n\n\n"0x1"\n\n\n\nx-ms-date:D\nx-ms-range:bytes=0-9\nx-ms-version:V\n/devstoreaccount1/devstoreaccount1/c/p/chunks/ab\nb:1,2\ncomp:x',
  );
  // A PUT without a body signs an empty Content-Length (service versions from 2015-02-21).
  assert.equal(
    stringToSign('PUT', 'a', new URL('https://a.blob.core.windows.net/c/manifest.json?comp=lease'), { 'content-length': '0', 'x-ms-lease-action': 'renew' }),
    'PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-lease-action:renew\n/a/c/manifest.json\ncomp:lease',
  );
});

test('the SDK keeps the job when a proxy is configured', () => {
  const sharedKey = { kind: 'sharedKey', accountName: 'a', accountKey: Buffer.from('k') } as const;
  assert.equal(typeof azureRest(sharedKey, {}), 'object');
  for (const name of ['HTTPS_PROXY', 'http_proxy', 'ALL_PROXY']) assert.equal(azureRest(sharedKey, { [name]: 'http://proxy:3128' }), undefined, name);
});

/** A real HTTP server answering each request with the next scripted reply; records what it got. */
async function scriptedServer(replies: Array<{ status: number; headers?: Record<string, string>; body?: string }>) {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    const reply = replies.shift() ?? { status: 500 };
    res.writeHead(reply.status, reply.headers ?? {});
    res.end(reply.body ?? '');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/acct/c/blob`;
  return { url, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const partial = (body: string, size: number) => ({ status: 206, headers: { 'content-range': `bytes 0-${body.length - 1}/${size}`, 'content-length': String(body.length), etag: '"e1"' }, body });
const request = (count: number) => ({ offset: 0, count, signal: new AbortController().signal, onProgress() {} });

test('bearer token: sent as Authorization, fetched once while valid, renewed when it nears expiry', async () => {
  const server = await scriptedServer([partial('abc', 3), partial('abc', 3), partial('abc', 3)]);
  // t1 expires in a minute (inside the renewal margin), t2 in an hour.
  const lifetimes = [60_000, 60 * 60_000];
  let calls = 0;
  const credential = { getToken: async () => ({ token: `t${++calls}`, expiresOnTimestamp: Date.now() + lifetimes[calls - 1]! }) };
  try {
    const get = rangeGetter(credential, {})!;
    const first = await get(server.url, request(3));
    assert.deepEqual({ body: first.body.toString(), size: first.size, etag: first.etag }, { body: 'abc', size: 3, etag: '"e1"' });
    await get(server.url, request(3));
    await get(server.url, request(3));
    assert.deepEqual(server.seen.map((h) => h.authorization), ['Bearer t1', 'Bearer t2', 'Bearer t2']);
    assert.equal(calls, 2);
    assert.equal(server.seen[0]!['x-ms-range'], 'bytes=0-2');
  } finally {
    await server.close();
  }
});

test('retries: a 503 is retried and then served; a 404 is not retried and carries the service code', async () => {
  const credential = { getToken: async () => ({ token: 't', expiresOnTimestamp: Date.now() + 60 * 60_000 }) };
  const flaky = await scriptedServer([{ status: 503 }, partial('xy', 2)]);
  try {
    const got = await rangeGetter(credential, {})!(flaky.url, request(2));
    assert.equal(got.body.toString(), 'xy');
    assert.equal(flaky.seen.length, 2);
  } finally {
    await flaky.close();
  }
  const missing = await scriptedServer([{ status: 404, headers: { 'x-ms-error-code': 'BlobNotFound' }, body: '<Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.</Message></Error>' }]);
  try {
    await assert.rejects(rangeGetter(credential, {})!(missing.url, request(2)), (error: Error & { statusCode?: number; code?: string }) => {
      assert.deepEqual({ name: error.name, statusCode: error.statusCode, code: error.code, message: error.message }, { name: 'RestError', statusCode: 404, code: 'BlobNotFound', message: 'The specified blob does not exist.' });
      return true;
    });
    assert.equal(missing.seen.length, 1);
  } finally {
    await missing.close();
  }
});

test('parseBlobList: names (XML-escaped, or URL-encoded when Encoded="true"), sizes, times, the next marker', () => {
  const xml = Buffer.from(
    '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/" ContainerName="c"><Prefix>p/</Prefix><MaxResults>2</MaxResults><Blobs>' +
      '<Blob><Name>p/chunks/a&amp;b</Name><Properties><Last-Modified>Mon, 30 Nov 2026 18:00:00 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>12</Content-Length></Properties><OrMetadata /></Blob>' +
      '<Blob><Name Encoded="true">p/odd%0Aname</Name><Properties><Last-Modified>Mon, 30 Nov 2026 18:00:01 GMT</Last-Modified><Content-Length>0</Content-Length></Properties></Blob>' +
      '</Blobs><NextMarker>2!12!MDAw&amp;</NextMarker></EnumerationResults>',
  );
  assert.deepEqual(parseBlobList(xml), {
    blobs: [
      { name: 'p/chunks/a&b', size: 12, lastModified: new Date('2026-11-30T18:00:00Z') },
      { name: 'p/odd\nname', size: 0, lastModified: new Date('2026-11-30T18:00:01Z') },
    ],
    nextMarker: '2!12!MDAw&',
  });
  assert.deepEqual(parseBlobList(Buffer.from('<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>')), { blobs: [], nextMarker: '' });
  assert.throws(() => parseBlobList(Buffer.from('<EnumerationResults><Blobs><Blob><Name>x</Name></Blob></Blobs></EnumerationResults>')), /cannot read/);
});
