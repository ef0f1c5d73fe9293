/** Which connections drizzle() hands straight to drizzle-orm/libsql (the scale-out path, src/remote.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRemoteConnection } from '../../src/remote.ts';

test('isRemoteConnection: a libSQL server / Turso URL, or an embedded replica (syncUrl)', () => {
  const rows: Array<[unknown, boolean]> = [
    ['libsql://db-org.turso.io', true],
    ['LIBSQL://db-org.turso.io', true],
    ['http://127.0.0.1:8080', true],
    ['https://db-org.turso.io', true],
    ['ws://127.0.0.1:8080', true],
    ['wss://db-org.turso.io', true],
    [{ url: 'libsql://db-org.turso.io', authToken: 't' }, true],
    [{ url: 'https://db-org.turso.io' }, true],
    [{ url: 'file:./data/replica.db', syncUrl: 'libsql://db-org.turso.io', authToken: 't' }, true],
    ['file:./data/app.db', false],
    [{ url: 'file:./data/app.db' }, false],
    [{ url: 'file:./data/app.db', syncUrl: '' }, false],
    [{ url: 'file:./data/app.db', syncUrl: undefined }, false],
    [':memory:', false],
    ['./data/app.db', false],
    ['libsql', false],
    ['ftp://host/db', false],
    [{ url: 42 }, false],
    [{}, false],
    [null, false],
    [undefined, false],
  ];
  for (const [connection, expected] of rows) assert.equal(isRemoteConnection(connection), expected, JSON.stringify(connection) ?? String(connection));
});
