/**
 * Strict options: the suggestion function (table test) and resolveSyncConfig's refusal of unknown keys
 * and wrong types at every level. Pure: no file, no store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closestName, editDistance, unknownOptionMessage } from '../../src/config-keys.ts';
import { CONNECTION_OPTION_KEYS, DRIZZLE_OPTION_KEYS, SNAPSHOT_OPTION_KEYS, TOP_LEVEL_OPTION_KEYS, resolveSyncConfig, type SyncOptions } from '../../src/config.ts';
import type { DrizzleBlobConfig } from '../../src/drizzle.ts';
import { SyncError } from '../../src/errors.ts';
import { checkEncryptionOptions } from '../../src/sync/chunks/encryption.ts';
import { azureBlobStore } from '../../src/store/azure-blob-store.ts';
import { directoryStore } from '../../src/store/directory-store.ts';

test('editDistance: insert, delete, substitute and a swap of neighbours each cost 1', () => {
  const table: [string, string, number][] = [
    ['', '', 0],
    ['', 'abc', 3],
    ['restore', 'restore', 0],
    ['restor', 'restore', 1],
    ['restorre', 'restore', 1],
    ['rextore', 'restore', 1],
    ['rsetore', 'restore', 1], // transposition
    ['snapshots', 'snapshot', 1],
    ['kitten', 'sitting', 3],
  ];
  for (const [a, b, expected] of table) {
    assert.equal(editDistance(a, b), expected, `${a} / ${b}`);
    assert.equal(editDistance(b, a), expected, `${b} / ${a}`);
  }
});

test('closestName: suggests a typo\'s intended name, nothing for an unrelated one', () => {
  const table: [string, readonly string[], string | undefined][] = [
    ['restor', TOP_LEVEL_OPTION_KEYS, 'restore'],
    ['snapshots', TOP_LEVEL_OPTION_KEYS, 'snapshot'],
    ['debounceMS', SNAPSHOT_OPTION_KEYS, 'debounceMs'], // case alone
    ['debounce', SNAPSHOT_OPTION_KEYS, 'debounceMs'], // 2 of 10 characters differ: within a third
    ['maxCommit', SNAPSHOT_OPTION_KEYS, 'maxCommits'],
    ['retian', SNAPSHOT_OPTION_KEYS, 'retain'],
    ['logger', ['log', 'lease'], undefined],
    ['lg', TOP_LEVEL_OPTION_KEYS, 'log'],
    ['ur', CONNECTION_OPTION_KEYS, 'url'],
    ['authtoken', CONNECTION_OPTION_KEYS, 'authToken'],
    ['foo', TOP_LEVEL_OPTION_KEYS, undefined],
    ['completelyUnrelated', TOP_LEVEL_OPTION_KEYS, undefined],
    ['x', [], undefined],
  ];
  for (const [name, valid, expected] of table) assert.equal(closestName(name, valid), expected, name);
});

test('unknownOptionMessage: names the key with its path and the suggestion, or lists the valid ones', () => {
  assert.equal(unknownOptionMessage('', 'restor', TOP_LEVEL_OPTION_KEYS), "unknown option 'restor' — did you mean 'restore'?");
  assert.equal(unknownOptionMessage('snapshot', 'debounceMS', SNAPSHOT_OPTION_KEYS), "unknown option 'snapshot.debounceMS' — did you mean 'snapshot.debounceMs'?");
  assert.equal(unknownOptionMessage('lease', 'zzz', ['durationSec']), "unknown option 'lease.zzz' — remove it; valid options of lease are: durationSec.");
});

test('the top-level key list is every key of DrizzleBlobConfig (drizzle\'s own included)', () => {
  // Compile-time: a key added to DrizzleBlobConfig that TOP_LEVEL_OPTION_KEYS lacks fails this assignment under tsc.
  const all: Record<keyof DrizzleBlobConfig, true> = Object.fromEntries(TOP_LEVEL_OPTION_KEYS.map((key) => [key, true])) as Record<keyof DrizzleBlobConfig, true>;
  const expected: { [K in keyof Required<DrizzleBlobConfig>]: true } = {
    connection: true, store: true, snapshot: true, restore: true, verify: true, role: true, lease: true, replica: true, shutdown: true, retry: true,
    log: true, synchronous: true, metrics: true, encryption: true, migrations: true, logger: true, schema: true, casing: true, cache: true,
  };
  assert.deepEqual(Object.keys(all).sort(), Object.keys(expected).sort());
  assert.deepEqual([...DRIZZLE_OPTION_KEYS].sort(), ['cache', 'casing', 'logger', 'schema']);
});

const base = { connection: { url: 'file:./strict-options-never-created/app.db' } };

function refusal(options: unknown): SyncError {
  try {
    resolveSyncConfig(options as SyncOptions);
  } catch (error) {
    assert.ok(error instanceof SyncError, `not a SyncError: ${String(error)}`);
    assert.equal(error.code, 'CONFIG', error.message);
    return error;
  }
  assert.fail(`accepted ${JSON.stringify(options)}`);
}

test('resolveSyncConfig: an unknown key at every level is CONFIG naming it (with its path) and the closest valid one', () => {
  const table: [Record<string, unknown>, string][] = [
    [{ restor: 'required' }, "unknown option 'restor' — did you mean 'restore'?"],
    [{ snapshots: { debounceMs: 10 } }, "unknown option 'snapshots' — did you mean 'snapshot'?"],
    [{ restor: undefined }, "unknown option 'restor' — did you mean 'restore'?"], // undefined is still a typo
    [{ snapshot: { debounceMS: 10 } }, "unknown option 'snapshot.debounceMS' — did you mean 'snapshot.debounceMs'?"],
    [{ snapshot: { retain: { cont: 3 } } }, "unknown option 'snapshot.retain.cont' — did you mean 'snapshot.retain.count'?"],
    [{ lease: { durationSecs: 30 } }, "unknown option 'lease.durationSecs' — did you mean 'lease.durationSec'?"],
    [{ replica: { pollMS: 100 } }, "unknown option 'replica.pollMS' — did you mean 'replica.pollMs'?"],
    [{ shutdown: { timeout: 100 } }, "unknown option 'shutdown.timeout' — did you mean 'shutdown.timeoutMs'?"],
    [{ shutdown: { signal: false } }, "unknown option 'shutdown.signal' — did you mean 'shutdown.signals'?"],
    [{ retry: { retires: 3 } }, "unknown option 'retry.retires' — did you mean 'retry.retries'?"],
    [{ encryption: { kye: 'x' } }, "unknown option 'encryption.kye' — did you mean 'encryption.key'?"],
    [{ metrics: { meters: {} } }, "unknown option 'metrics.meters' — did you mean 'metrics.meter'?"],
    [{ restore: { sq: 3 } }, "unknown option 'restore.sq' — did you mean 'restore.seq'?"],
    [{ loger: true }, "unknown option 'loger' — did you mean 'logger'?"],
    [{ schemas: {} }, "unknown option 'schemas' — did you mean 'schema'?"],
  ];
  for (const [extra, message] of table) assert.equal(refusal({ ...base, ...extra }).message, message, JSON.stringify(extra));
  assert.equal(refusal({ connection: { url: 'file:./x.db', authtoken: 'x' } }).message, "unknown option 'connection.authtoken' — did you mean 'connection.authToken'?");
  assert.equal(refusal({ connection: { uri: 'file:./x.db' } }).message, "unknown option 'connection.uri' — did you mean 'connection.url'?");
  assert.match(refusal({ ...base, colour: 'red' }).message, /^unknown option 'colour' — remove it; valid options are: connection, store, .*logger, schema, casing, cache\.$/);
});

test('resolveSyncConfig: a wrong value type is CONFIG naming the key and what it expects', () => {
  const table: [Record<string, unknown>, RegExp][] = [
    [{ snapshot: 5 }, /^snapshot must be an object such as \{ debounceMs: 2000 \}; got 5\.$/],
    [{ snapshot: [] }, /^snapshot must be an object/],
    [{ snapshot: null }, /^snapshot must be an object .* got null\.$/],
    [{ snapshot: { debounceMs: '2s' } }, /^snapshot\.debounceMs must be a number >= 0, got "2s"\.$/],
    [{ snapshot: { retain: '5' } }, /^snapshot\.retain must be a number of snapshots or \{ count, maxAgeMs \}; got "5"\.$/],
    [{ snapshot: { retain: null } }, /^snapshot\.retain must be an object/],
    [{ lease: 30 }, /^lease must be an object such as \{ durationSec: 30 \}; got 30\.$/],
    [{ lease: { durationSec: '30' } }, /^lease\.durationSec must be a whole number .* got "30"\.$/],
    [{ replica: 'fast' }, /^replica must be an object/],
    [{ shutdown: true }, /^shutdown must be an object/],
    [{ shutdown: { signals: 'yes' } }, /^shutdown\.signals must be true or false; got "yes"\.$/],
    [{ retry: 3 }, /^retry must be an object such as \{ retries: 5 \}; got 3\.$/],
    [{ metrics: true }, /^metrics must be an object such as \{ meter \} or false; got true\.$/],
    [{ encryption: 'key' }, /^encryption must be \{ key \}/],
    [{ encryption: { key: 42 } }, /^encryption\.key must be a Buffer, a base64 or hex string, or a function returning one; got number\.$/],
    [{ encryption: { key: 'short' } }, /^encryption\.key must be a 256-bit key/],
    [{ synchronous: 'off' }, /^synchronous must be 'normal' or 'full'; got "off"\.$/],
    [{ log: 'debug' }, /^log must be false or a pino-compatible logger/],
    [{ log: { info() {} } }, /^log must be false or a pino-compatible logger/],
    [{ store: './backups' }, /^store must be a snapshot store made by azureBlobStore/],
    [{ connection: 5 }, /^connection must be an object such as \{ url: "file:\.\/data\/app\.db" \}; got 5\.$/],
    [{ restore: { at: 'x', seq: 1 } }, /^restore takes one of \{ at \}, \{ seq \} or \{ beforeMigration \}; got at and seq/],
  ];
  for (const [extra, message] of table) assert.match(refusal({ ...base, ...extra }).message, message, JSON.stringify(extra));
  assert.match(refusal(5).message, /^drizzle\(\) takes one options object/);
});

test('resolveSyncConfig: valid options at every level are accepted (and a function key is not called)', () => {
  let called = false;
  const resolved = resolveSyncConfig({
    connection: { url: 'file:./a.db', intMode: 'number', concurrency: 5 },
    snapshot: { debounceMs: 10, retain: { count: 3, maxAgeMs: 1000 }, mode: 'incremental' },
    restore: { seq: 2 },
    lease: { durationSec: 15 },
    replica: { pollMs: 100 },
    shutdown: { signals: false, timeoutMs: 100 },
    retry: { retries: 1 },
    log: false,
    synchronous: 'full',
    metrics: { meter: undefined },
    encryption: { key: () => ((called = true), Buffer.alloc(32)) },
    logger: false,
    casing: 'snake_case',
  });
  assert.equal(resolved.synchronous, 'full');
  assert.equal(resolved.signals, false);
  assert.deepEqual(resolved.restoreTarget, { seq: 2 });
  assert.equal(called, false);
  resolveSyncConfig({ connection: 'file:./a.db', metrics: false, log: { info() {}, warn() {}, error() {} } });
});

test('checkEncryptionOptions: only { key } with a usable key; undefined means the env default', () => {
  checkEncryptionOptions(undefined);
  checkEncryptionOptions({ key: Buffer.alloc(32) });
  checkEncryptionOptions({ key: '0'.repeat(64) });
  checkEncryptionOptions({ key: async () => 'later' }); // judged when resolved
  assert.throws(() => checkEncryptionOptions({}), { code: 'CONFIG', message: /encryption must be \{ key \}/ });
  assert.throws(() => checkEncryptionOptions({ key: Buffer.alloc(31) }), { code: 'CONFIG', message: /256-bit key/ });
});

test('store factories: an unknown option is CONFIG with a suggestion (constructing contacts nothing)', () => {
  const connectionString = 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;';
  const table: [() => unknown, string][] = [
    [() => directoryStore({ dir: './never-created', prefx: 'a' } as never), "directoryStore: unknown option 'prefx' — did you mean 'prefix'?"],
    [() => directoryStore({ directory: './never-created' } as never), "directoryStore: unknown option 'directory' — remove it; valid options are: dir, prefix."],
    [() => azureBlobStore({ connectionString, container: 'backups', contaner: 'c' } as never), "azureBlobStore: unknown option 'contaner' — did you mean 'container'?"],
    [() => azureBlobStore({ connectionString, container: 'backups', createcontainer: true } as never), "azureBlobStore: unknown option 'createcontainer' — did you mean 'createContainer'?"],
    [() => azureBlobStore({ connectionString, container: 'backups', requestTimeout: 5 } as never), "azureBlobStore: unknown option 'requestTimeout' — did you mean 'requestTimeoutMs'?"],
    [() => azureBlobStore({ connectionstring: connectionString, container: 'backups' } as never), "azureBlobStore: unknown option 'connectionstring' — did you mean 'connectionString'?"],
  ];
  for (const [make, message] of table) assert.throws(make, (error: unknown) => error instanceof SyncError && error.code === 'CONFIG' && error.message === message, message);
  assert.throws(() => directoryStore({ dir: './never-created', prefix: 5 } as never), { code: 'CONFIG', message: /^directoryStore: prefix must be a string/ });
  assert.throws(() => directoryStore('./backups' as never), { code: 'CONFIG', message: /^directoryStore\(\{ dir \}\) takes an options object/ });
  // Spelled right, the same options construct a store.
  assert.equal(typeof azureBlobStore({ connectionString, container: 'backups', createContainer: true, requestTimeoutMs: 5 }).probe, 'function');
  assert.equal(typeof directoryStore({ dir: './never-created', prefix: 'a' }).probe, 'function');
});

test('checkOptions: a typo inside restore is refused even when SKIP_RESTORE makes restore moot', () => {
  const saved = process.env.SKIP_RESTORE;
  process.env.SKIP_RESTORE = 'true';
  try {
    assert.equal(refusal({ ...base, restore: { sq: 3 } }).message, "unknown option 'restore.sq' — did you mean 'restore.seq'?");
  } finally {
    if (saved === undefined) delete process.env.SKIP_RESTORE;
    else process.env.SKIP_RESTORE = saved;
  }
});
