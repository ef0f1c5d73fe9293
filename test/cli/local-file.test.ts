/**
 * The CLI and the local database file: beside a live app (a real child process holding drizzle() on
 * the file, test/children/lock-app.ts, against a real Azurite) `snapshot` and `restore --force` refuse
 * with LOCKED and change nothing, `status` runs and names the holder; and `status` tells an outside
 * change to the file (drizzle-kit migrate, any other program) from a clean file. Real CLI processes.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { azureBlobStore, directoryStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { notes, open, readManifest } from '../helpers/fixtures.ts';
import { killAndWait, spawnTs, waitForLine } from '../helpers/child.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { sidecarPath } from '../../src/local/sidecar.ts';
import { runCli as cli, runCliOk as ok } from '../helpers/cli.ts';

const fixture = useAzuriteAndTempDir('cli-local');

async function rowCount(file: string): Promise<number> {
  const client = createClient({ url: pathToFileURL(file).href });
  try {
    return Number((await client.execute('SELECT count(*) AS n FROM notes')).rows[0]!.n);
  } finally {
    client.close();
  }
}

describe('the CLI beside a live app on the same file', () => {
  const container = 'live-app';
  let store: SnapshotStore;
  let env: Record<string, string>;
  let dbPath: string;
  let app: ChildProcess;
  let appPid: number;
  const appLines: string[] = [];

  before(async () => {
    store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: 'app', createContainer: true });
    env = { AZURE_STORAGE_CONNECTION_STRING: fixture.azurite.connectionString, AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: 'app' };
    dbPath = join(fixture.dir.path, 'live', 'app.db');
    app = spawnTs('test/children/lock-app.ts', [dbPath, 'app'], { DLB_AZURE_CONNECTION_STRING: fixture.azurite.connectionString, DLB_AZURE_CONTAINER: container });
    const kill = () => app.kill('SIGKILL');
    process.once('exit', kill);
    app.once('exit', () => process.off('exit', kill));
    app.stdout!.setEncoding('utf8').on('data', (c: string) => appLines.push(c));
    appPid = Number((await waitForLine(app, 'READY ')).split(' ')[1]);
  });
  // A failed (or skipped) test must not leave the app running: it would keep this test process alive.
  after(() => {
    if (app.exitCode === null && app.signalCode === null) app.kill('SIGKILL');
  });

  test('snapshot and restore --force refuse with LOCKED and change nothing; status names the holder; the app keeps writing and its final snapshot lands', async () => {
    const manifestBefore = await store.readSmall(MANIFEST_KEY);
    assert.ok(manifestBefore, 'the app published a snapshot');
    const seqBefore = (await readManifest(store)).seq;
    const sidecarBefore = readFileSync(sidecarPath(dbPath), 'utf8');
    const fileBefore = readFileSync(dbPath);
    assert.equal(JSON.parse(sidecarBefore).dirty, true, 'the app holds two unsaved rows');

    for (const args of [['snapshot'], ['restore', '--force'], ['snapshot', '--json']]) {
      const refused = await cli([...args, '--db', dbPath], env);
      assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stdout}${refused.stderr}`);
      assert.match(refused.stderr, /^error \[LOCKED\]: /m);
      assert.match(refused.stderr, new RegExp(`in use by pid ${appPid} \\(drizzle\\(\\), since `));
      assert.match(refused.stderr, /db\.\$sync\.flush\(\)/, 'names what does work beside a live app');
      if (args.includes('--json')) assert.equal(JSON.parse(refused.stdout).error.code, 'LOCKED');
      assert.equal((await store.readSmall(MANIFEST_KEY))?.etag, manifestBefore.etag, `${args.join(' ')} left the manifest alone (no upload, lease untouched)`);
      assert.equal(readFileSync(sidecarPath(dbPath), 'utf8'), sidecarBefore, `${args.join(' ')} left the sidecar alone`);
      assert.ok(readFileSync(dbPath).equals(fileBefore), `${args.join(' ')} left the database file alone`);
    }

    const status = await ok(['status', '--db', dbPath], env);
    assert.match(status.stdout, new RegExp(`^in use\\s+by pid ${appPid} \\(drizzle\\(\\), since .*LOCKED`, 'm'));
    assert.match(status.stdout, /^sidecar\s+seq \d+, generation \w+, in use \(dirty\), same as the store/m);
    assert.match(status.stdout, /^lease\s+held: a writer is running/m);
    const json = JSON.parse((await ok(['status', '--json', '--db', dbPath], env)).stdout);
    assert.equal(json.local.inUse.holder.pid, appPid);
    assert.equal(json.local.inUse.holder.holder, 'drizzle()');
    assert.equal(json.local.verdict, 'in-use');

    // The app still owns its lease: it writes on.
    app.kill('SIGUSR2');
    assert.equal(await waitForLine(app, 'ROW '), 'ROW 6');
    assert.ok(!appLines.join('').includes('LEASE-LOST'), appLines.join(''));

    const exit = await killAndWait(app, 'SIGTERM');
    assert.equal(exit.signal, 'SIGTERM', 'the library took the final snapshot and re-raised the signal');
    const final = await readManifest(store);
    assert.ok(final.seq > seqBefore, `the app's final snapshot landed (seq ${seqBefore} -> ${final.seq})`);
    const copy = join(fixture.dir.path, 'live-copy.db');
    await ok(['restore', '--to', copy, '--quiet'], env);
    assert.equal(await rowCount(copy), 6, 'the final snapshot holds every row the app wrote');

    // The app is gone: the same commands now work on the file.
    const status2 = JSON.parse((await ok(['status', '--json', '--db', dbPath], env)).stdout);
    assert.equal(status2.local.inUse, null);
    assert.equal(status2.local.verdict, 'clean');
    const snap = JSON.parse((await ok(['snapshot', '--json', '--db', dbPath], env)).stdout);
    assert.ok(snap.snapshot === null || snap.snapshot.uploaded === false, 'nothing the store lacks');
  });
});

describe('status and an outside change to the file', () => {
  test('after another program writes the file (as drizzle-kit migrate does), status says so instead of clean (text and --json)', async () => {
    const storeDir = join(fixture.dir.path, 'outside-store');
    const dbPath = join(fixture.dir.path, 'outside', 'app.db');
    const db = await open(dbPath, directoryStore({ dir: storeDir }), { snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000 } });
    await db.insert(notes).values({ body: 'through the library' });
    await db.$sync.flush();
    await db.$sync.close();
    const args = ['status', '--backup-dir', storeDir, '--db', dbPath];

    assert.match((await ok(args)).stdout, /^sidecar\s+seq \d+, generation \w+, clean, same as the store$/m);
    assert.equal(JSON.parse((await ok([...args, '--json'])).stdout).local.verdict, 'clean');

    const outside = createClient({ url: pathToFileURL(dbPath).href });
    await outside.execute('CREATE TABLE migrated (id INTEGER PRIMARY KEY)');
    outside.close();

    const text = (await ok(args)).stdout;
    assert.match(text, /^sidecar\s+seq \d+, generation \w+, changed outside this library, same as the store$/m);
    assert.match(text, /e\.g\. drizzle-kit migrate\): take a snapshot before any restore --force/);
    assert.doesNotMatch(text, /clean,/);
    const json = JSON.parse((await ok([...args, '--json'])).stdout);
    assert.equal(json.local.verdict, 'changed-outside');
    assert.equal(json.local.inUse, null);

    // The snapshot the advice asks for uploads the change, and the file is clean again.
    assert.match((await ok(['snapshot', '--backup-dir', storeDir, '--db', dbPath])).stdout, /^uploaded snapshot seq \d+/m);
    assert.equal(JSON.parse((await ok([...args, '--json'])).stdout).local.verdict, 'clean');
  });
});
