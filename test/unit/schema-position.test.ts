/** A restore point's place in drizzle's migration history (issue 15): read from __drizzle_migrations, validated in the manifest. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@libsql/client';
import { NO_MIGRATIONS, describeSchemaPosition, readSchemaPosition } from '../../src/sync/schema-position.ts';
import { decodeManifest, encodeManifest, type Manifest } from '../../src/sync/manifest.ts';
import { isSyncError } from '../../src/errors.ts';

test('readSchemaPosition: none without the table or rows; else the count and the last migration by created_at', async () => {
  const client = createClient({ url: ':memory:' });
  const execute = (sql: string, args: Array<string | number> = []) => client.execute({ sql, args });
  try {
    assert.deepEqual(await readSchemaPosition(execute), NO_MIGRATIONS, 'no table');
    await client.execute('CREATE TABLE "__drizzle_migrations" (id INTEGER PRIMARY KEY AUTOINCREMENT, hash text NOT NULL, created_at numeric)');
    assert.deepEqual(await readSchemaPosition(execute), NO_MIGRATIONS, 'no row');
    await client.execute("INSERT INTO __drizzle_migrations (hash, created_at) VALUES ('aa', 200), ('bb', 100)");
    assert.deepEqual(await readSchemaPosition(execute), { migrations: 2, hash: 'aa', createdAt: 200 }, 'the last by created_at, not by id');
    assert.deepEqual(await readSchemaPosition(execute, 'other_table'), NO_MIGRATIONS, 'another table name');
    await client.execute('CREATE TABLE "my ""migrations" (id INTEGER PRIMARY KEY AUTOINCREMENT, hash text NOT NULL, created_at numeric)');
    await client.execute(`INSERT INTO "my ""migrations" (hash, created_at) VALUES ('cc', 300)`);
    assert.deepEqual(await readSchemaPosition(execute, 'my "migrations'), { migrations: 1, hash: 'cc', createdAt: 300 }, 'a table name that needs quoting');
  } finally {
    client.close();
  }
});

test('a manifest entry schema position: round trip; a malformed one is SNAPSHOT_CORRUPT; list text', () => {
  const entry = { seq: 1, generation: 'g', key: 'k', kind: 'chunks' as const, codec: 'lz4' as const, bytes: 1, sha256: 'a'.repeat(64), compressedBytes: 1, createdAt: new Date(0).toISOString(), schema: { migrations: 3, hash: 'abcdef0123456789', createdAt: 5 } };
  const manifest: Manifest = { format: 1, generation: 'g', seq: 1, snapshots: [entry] };
  assert.deepEqual(decodeManifest(encodeManifest(manifest), 'here').snapshots[0]!.schema, entry.schema);
  const bad = Buffer.from(JSON.stringify({ ...manifest, snapshots: [{ ...entry, schema: { migrations: 'three' } }] }));
  assert.throws(() => decodeManifest(bad, 'here'), (e: unknown) => isSyncError(e, 'SNAPSHOT_CORRUPT') && /schema position/.test((e as Error).message));
  assert.equal(describeSchemaPosition(entry.schema), '3 (abcdef01)');
  assert.equal(describeSchemaPosition(undefined), '-');
  assert.equal(describeSchemaPosition(NO_MIGRATIONS), '0');
  assert.equal(describeSchemaPosition({ ...entry.schema, tag: '0003_add_tags' }), '3 0003_add_tags');
  assert.deepEqual(decodeManifest(encodeManifest({ ...manifest, snapshots: [{ ...entry, schema: NO_MIGRATIONS }] }), 'here').snapshots[0]!.schema, NO_MIGRATIONS, 'none applied round-trips');
  const badTag = Buffer.from(JSON.stringify({ ...manifest, snapshots: [{ ...entry, schema: { ...entry.schema, tag: 3 } }] }));
  assert.throws(() => decodeManifest(badTag, 'here'), (e: unknown) => isSyncError(e, 'SNAPSHOT_CORRUPT'));
});
