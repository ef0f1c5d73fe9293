/**
 * The `drizzle-libsql-blob` CLI, run as a real process (`node --conditions=source --import tsx
 * src/cli/main.ts ...`) against a directory store and a real Azurite, with snapshot history made by the
 * library itself. Every wait is on a process exit, never a sleep.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { azureBlobStore, directoryStore, type SnapshotStore } from 'drizzle-libsql-blob';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';
import { CREATE_NOTES, notes, open, tempDir } from '../helpers/fixtures.ts';
import { readSidecar } from '../../src/local/sidecar.ts';
import { ProgressMeter, withProgress } from '../../src/cli/progress.ts';
import { REPO, runCli as run, runCliOk as ok } from '../helpers/cli.ts';

async function rowsOf(file: string): Promise<string[]> {
  const client = createClient({ url: pathToFileURL(file).href });
  try {
    const result = await client.execute('SELECT body FROM notes ORDER BY id');
    return result.rows.map((r) => String(r.body));
  } finally {
    client.close();
  }
}

interface History {
  /** Oldest first: each snapshot's seq and the rows it holds. */
  snapshots: Array<{ seq: number; rows: string[] }>;
  dbPath: string;
}

/** Three flushed bursts of writes through the library: three snapshots of growing content. */
async function makeHistory(dbPath: string, store: SnapshotStore): Promise<History> {
  // A long debounce: only the explicit flushes snapshot, so each one is a known state. Chunk sets only
  // (maxDeltas 0): each restores on its own, so damage to one fails that one alone (page deltas depend
  // on their chain: test/sync/page-delta.test.ts).
  const db = await open(dbPath, store, { snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000, maxDeltas: 0 } });
  const rows: string[] = [];
  const snapshots: History['snapshots'] = [];
  for (const burst of ['a', 'b', 'c']) {
    for (let i = 1; i <= 2; i++) {
      await db.insert(notes).values({ body: `${burst}${i}` });
      rows.push(`${burst}${i}`);
    }
    const info = await db.$sync.flush();
    assert.ok(info?.uploaded, `burst ${burst} was snapshotted`);
    snapshots.push({ seq: info.seq, rows: [...rows] });
  }
  await db.$sync.close();
  return { snapshots, dbPath };
}

interface ListedSnapshot {
  seq: number;
  key: string;
  createdAt: string;
  compressedBytes: number;
}

async function listJson(args: string[], env: Record<string, string> = {}): Promise<ListedSnapshot[]> {
  const { stdout } = await ok(['list', '--json', ...args], env);
  return (JSON.parse(stdout) as { snapshots: ListedSnapshot[] }).snapshots;
}

/** Flips one byte in the middle of a file (same size: only the content checks can notice). */
async function flipByte(path: string): Promise<void> {
  const bytes = await readFile(path);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  await writeFile(path, bytes);
}

/** A TCP port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const seqLine = (stdout: string, seq: number) => stdout.split('\n').find((l) => new RegExp(`^\\s*${seq}\\s`).test(l));

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('cli')));
after(() => dir?.cleanup());

describe('cli against a directory store', () => {
  let storeDir: string;
  let history: History;
  let store: string[];
  before(async () => {
    storeDir = join(dir.path, 'dir-store');
    history = await makeHistory(join(dir.path, 'dir-data', 'app.db'), directoryStore({ dir: storeDir }));
    store = ['--backup-dir', storeDir];
  });

  test('list shows every retained snapshot, newest first', async () => {
    const expected = history.snapshots.map((s) => s.seq).reverse();
    const listed = await listJson(store);
    assert.deepEqual(listed.map((s) => s.seq), expected);
    const { stdout } = await ok(['list', ...store]);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^seq\s+kind\s+created\s+migrations\s+bytes\s+compressed\s+sha256\s+key$/);
    assert.deepEqual(lines.slice(1).map((l) => Number(l.trim().split(/\s+/)[0])), expected, 'one line per snapshot, newest first');
    for (const s of listed) assert.ok(seqLine(stdout, s.seq)!.includes(s.key), `seq ${s.seq}'s line names its key`);
  });

  test('status shows the manifest seq, retention, the lease and the local sidecar (DATABASE_URL picks the file)', async () => {
    const latest = history.snapshots.at(-1)!.seq;
    const env = { DATABASE_URL: `file:${history.dbPath}` };
    const { stdout } = await ok(['status', ...store], env);
    assert.match(stdout, new RegExp(`^manifest\\s+seq ${latest},`, 'm'));
    assert.match(stdout, new RegExp(`^latest\\s+seq ${latest} at `, 'm'));
    assert.match(stdout, /^retained\s+3 snapshots/m);
    assert.match(stdout, /^lease\s+free/m);
    assert.match(stdout, new RegExp(`^sidecar\\s+seq ${latest}, generation \\w+, clean, same as the store`, 'm'));
    const json = JSON.parse((await ok(['status', '--json', ...store], env)).stdout);
    assert.equal(json.manifest.seq, latest);
    assert.equal(json.latest.seq, latest);
    assert.equal(json.retained, 3);
    assert.equal(json.leased, false);
    assert.equal(json.local.path, history.dbPath);
    assert.equal(json.local.state.seq, latest);
    assert.equal(json.local.state.dirty, false);
    assert.equal(json.local.sameStore, true);
  });

  test('restore --seq N and --at T write a file holding exactly that snapshot (no sidecar for --to)', async () => {
    const [first, second] = history.snapshots;
    const bySeq = join(dir.path, 'restored', 'by-seq.db');
    await ok(['restore', ...store, '--seq', String(second!.seq), '--to', bySeq, '--quiet']);
    assert.deepEqual(await rowsOf(bySeq), second!.rows);
    assert.equal(existsSync(`${bySeq}.sync.json`), false, 'a --to copy gets no sidecar');

    const listed = await listJson(store);
    const createdAt = (seq: number) => listed.find((s) => s.seq === seq)!.createdAt;
    const atSecond = join(dir.path, 'restored', 'at-second.db');
    await ok(['restore', ...store, '--at', createdAt(second!.seq), '--to', atSecond]);
    assert.deepEqual(await rowsOf(atSecond), second!.rows, '--at exactly the creation time selects that snapshot');
    const justBefore = new Date(Date.parse(createdAt(second!.seq)) - 1).toISOString();
    const atFirst = join(dir.path, 'restored', 'at-first.db');
    const { stdout } = await ok(['restore', ...store, '--at', justBefore, '--to', atFirst]);
    assert.deepEqual(await rowsOf(atFirst), first!.rows, '--at 1 ms earlier selects the snapshot before');
    assert.match(stdout, new RegExp(`^restored seq ${first!.seq} `, 'm'));

    const tooEarly = await run(['restore', ...store, '--at', '2000-01-01T00:00:00Z', '--to', join(dir.path, 'restored', 'none.db')]);
    assert.equal(tooEarly.code, 1);
    assert.match(tooEarly.stderr, /^error \[CONFIG\]: No retained snapshot was taken at or before 2000-01-01T00:00:00.000Z/m);
  });

  test('restore refuses to overwrite an existing file unless --force', async () => {
    const [first, second] = history.snapshots;
    const target = join(dir.path, 'restored', 'overwrite.db');
    await ok(['restore', ...store, '--seq', String(second!.seq), '--to', target]);
    const before = await readFile(target);
    const refused = await run(['restore', ...store, '--seq', String(first!.seq), '--to', target]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error \[CONFIG\]: .*overwrite\.db already exists; pass --force to replace it/m);
    assert.deepEqual(await readFile(target), before, 'the existing file is untouched');
    await ok(['restore', ...store, '--seq', String(first!.seq), '--to', target, '--force']);
    assert.deepEqual(await rowsOf(target), first!.rows);
  });

  test('restore into the database file: the latest gets a sidecar the library starts on without downloading; an older one gets none', async () => {
    const latest = history.snapshots.at(-1)!;
    const dbPath = join(dir.path, 'restored-db', 'app.db');
    await ok(['restore', ...store, '--db', dbPath]);
    assert.deepEqual(await rowsOf(dbPath), latest.rows);
    const state = readSidecar(dbPath);
    assert.equal(state?.seq, latest.seq);
    assert.equal(state?.dirty, false);

    const db = await open(dbPath, directoryStore({ dir: storeDir }));
    assert.equal(db.$sync.status().restoredFrom, null, 'the library kept the restored file instead of downloading it again');
    assert.deepEqual((await db.select().from(notes).orderBy(notes.id)).map((r) => r.body), latest.rows);
    await db.$sync.close();
    assert.equal((await listJson(store))[0]!.seq, latest.seq, 'opening and closing it published nothing new');

    const older = history.snapshots[0]!;
    const { stdout } = await ok(['restore', ...store, '--db', dbPath, '--seq', String(older.seq), '--force']);
    assert.deepEqual(await rowsOf(dbPath), older.rows);
    assert.equal(existsSync(`${dbPath}.sync.json`), false, 'an older snapshot must not pass for the store head');
    assert.match(stdout, /older than the store's latest/);
  });

  test('verify --all passes every snapshot; after a bit flip it exits 1 naming only that seq', async () => {
    const seqs = history.snapshots.map((s) => s.seq);
    const tmp = join(dir.path, 'verify-tmp');
    await mkdir(tmp);
    const { stdout } = await ok(['verify', '--all', ...store, '--temp-dir', tmp]);
    for (const seq of seqs) assert.match(seqLine(stdout, seq) ?? '', /\sok\s/, `seq ${seq} passes`);
    assert.match(stdout, /verified 3 snapshots: all restorable/);
    assert.deepEqual(readdirSync(tmp), [], 'the drill removes what it downloaded');

    // Corrupt a copy of the store, so the other tests keep a good one.
    const broken = join(dir.path, 'dir-store-broken');
    await cp(storeDir, broken, { recursive: true });
    const victim = history.snapshots[1]!.seq;
    const key = (await listJson(store)).find((s) => s.seq === victim)!.key;
    await flipByte(join(broken, key));
    const failed = await run(['verify', '--all', '--backup-dir', broken, '--temp-dir', tmp]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(seqLine(failed.stdout, victim) ?? '', /\sFAIL\s.*SNAPSHOT_CORRUPT/);
    for (const seq of seqs.filter((s) => s !== victim)) assert.match(seqLine(failed.stdout, seq) ?? '', /\sok\s/, `seq ${seq} still passes`);
    assert.match(failed.stdout, new RegExp(`1 of 3 snapshots FAILED: seq ${victim}$`, 'm'));
    const json = JSON.parse((await run(['verify', '--all', '--json', '--quiet', '--backup-dir', broken])).stdout);
    assert.equal(json.ok, false);
    assert.deepEqual(json.snapshots.filter((s: { ok: boolean }) => !s.ok).map((s: { seq: number }) => s.seq), [victim]);
    assert.deepEqual(readdirSync(tmp), [], 'nothing left behind after failures either');
    // The default drill checks only the latest, which is intact.
    await ok(['verify', '--backup-dir', broken]);
  });

  test('snapshot publishes changes made outside the library; a second run uploads nothing', async () => {
    const client = createClient({ url: pathToFileURL(history.dbPath).href });
    await client.execute("INSERT INTO notes (body) VALUES ('outside')");
    client.close();
    const previous = history.snapshots.at(-1)!.seq;
    const { stdout } = await ok(['snapshot', ...store, '--db', history.dbPath]);
    const seq = Number(/^uploaded snapshot seq (\d+): /m.exec(stdout)?.[1]);
    assert.ok(seq > previous, stdout);
    assert.equal((await listJson(store))[0]!.seq, seq);
    const copy = join(dir.path, 'restored', 'after-snapshot.db');
    await ok(['restore', ...store, '--to', copy]);
    assert.deepEqual(await rowsOf(copy), [...history.snapshots.at(-1)!.rows, 'outside']);

    const again = JSON.parse((await ok(['snapshot', '--json', ...store, '--db', history.dbPath])).stdout);
    assert.ok(again.snapshot === null || again.snapshot.uploaded === false, 'nothing new to upload');
    assert.equal((await listJson(store))[0]!.seq, seq);
  });

  test('a running writer shows in status as the lease, and makes snapshot fail with LEASE_HELD', async () => {
    const writer = await open(join(dir.path, 'running-writer', 'app.db'), directoryStore({ dir: storeDir }));
    try {
      assert.equal(JSON.parse((await ok(['status', '--json', ...store, '--db', history.dbPath])).stdout).leased, true);
      assert.match((await ok(['status', ...store, '--db', history.dbPath])).stdout, /^lease\s+held: a writer is running/m);
      const refused = await run(['snapshot', ...store, '--db', history.dbPath]);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /^error \[LEASE_HELD\]: /m);
    } finally {
      await writer.$sync.close();
    }
    assert.equal(JSON.parse((await ok(['status', '--json', ...store, '--db', history.dbPath])).stdout).leased, false);
  });

  test('progress lines on stderr for a multi-MB snapshot, none with --quiet', async () => {
    const bigStore = join(dir.path, 'big-store');
    const db = await open(join(dir.path, 'big-data', 'app.db'), directoryStore({ dir: bigStore }), { snapshot: { debounceMs: 60_000, maxIntervalMs: 600_000 } });
    await db.run('CREATE TABLE blobs (b BLOB)');
    // Random bytes do not compress: the snapshot blob stays ~12 MB.
    await db.run('INSERT INTO blobs SELECT randomblob(1000000) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 12) SELECT i FROM c)');
    const info = await db.$sync.flush();
    await db.$sync.close();
    assert.ok(info && info.compressedBytes > 10_000_000, `snapshot is ${info?.compressedBytes} bytes compressed`);

    const { stderr } = await ok(['verify', '--backup-dir', bigStore]);
    const progress = stderr.split('\n').filter((l) => new RegExp(`^seq ${info.seq}: [\\d.]+/[\\d.]+ MB \\(\\d+%\\)`).test(l));
    assert.ok(progress.length >= 1, `a progress line; stderr:\n${stderr}`);
    assert.match(stderr, new RegExp(`^seq ${info.seq}: downloaded ${(info.compressedBytes / 1e6).toFixed(1)} MB in `, 'm'), 'a final line with the whole size');
    const quiet = await ok(['verify', '--quiet', '--backup-dir', bigStore]);
    assert.equal(quiet.stderr, '');

    const restored = join(dir.path, 'big-restored.db');
    const { stderr: restoreErr } = await ok(['restore', '--backup-dir', bigStore, '--to', restored]);
    assert.match(restoreErr, new RegExp(`^seq ${info.seq}: downloaded `, 'm'));

    // snapshot: the same lines for the upload, bytes and percent of the new chunks it sends.
    const client = createClient({ url: pathToFileURL(join(dir.path, 'big-data', 'app.db')).href });
    await client.execute('INSERT INTO blobs SELECT randomblob(1000000)');
    client.close();
    const { stdout: snapOut, stderr: snapErr } = await ok(['snapshot', '--backup-dir', bigStore, '--db', join(dir.path, 'big-data', 'app.db')]);
    const next = Number(/^uploaded snapshot seq (\d+): /m.exec(snapOut)?.[1]);
    assert.equal(next, info.seq + 1, snapOut);
    const total = /^new chunks: [\d.]+\/([\d.]+) MB \(\d+%\)/m.exec(snapErr)?.[1];
    assert.ok(total, `an upload progress line with bytes and percent; stderr:\n${snapErr}`);
    assert.ok(Number(total) < 12, `only the changed chunks are counted (${total} MB)`);
    assert.match(snapErr, new RegExp(`^new chunks: uploaded ${total.replace('.', '\\.')} MB in `, 'm'), 'the total was the bytes actually uploaded');
    const quietSnap = await ok(['snapshot', '--quiet', '--backup-dir', bigStore, '--db', join(dir.path, 'big-data', 'app.db')]);
    assert.equal(quietSnap.stderr, '');
  });
});

test('progress lines are throttled to one per interval, plus the final line', () => {
  let now = 0;
  const lines: string[] = [];
  const meter = new ProgressMeter({ label: 'seq 7', total: 100e6 }, (l) => lines.push(l), 500, () => now);
  for (let i = 0; i < 100; i++) {
    now += 20; // 100 chunks of 1 MB over 2 s
    meter.add(1e6);
  }
  meter.finish();
  assert.equal(lines.length, 5, lines.join('\n')); // at 0.02 s, 0.52, 1.02, 1.52 and the final one
  assert.equal(lines[0], 'seq 7: 1.0/100.0 MB (1%)');
  assert.equal(lines[1], 'seq 7: 26.0/100.0 MB (26%) 50.0 MB/s');
  assert.equal(lines.at(-1), 'seq 7: downloaded 100.0 MB in 2.0 s, 50.0 MB/s');
});

describe('cli usage and failures', () => {
  test('--help prints usage and exits 0', async () => {
    const { stdout } = await ok(['--help']);
    assert.match(stdout, /^Usage: drizzle-libsql-blob <command> \[options\]/);
    for (const command of ['status', 'list', 'restore', 'snapshot', 'verify']) assert.match(stdout, new RegExp(`^  ${command}\\s`, 'm'));
    assert.equal((await ok(['help'])).stdout, stdout);
  });

  test('help COMMAND and COMMAND --help print that command\'s page; help for an unknown command exits 2', async () => {
    const page = (await ok(['help', 'restore'])).stdout;
    assert.match(page, /^Usage: drizzle-libsql-blob restore \[options\]/);
    assert.match(page, /^    --if-exists\s/m);
    assert.doesNotMatch(page, /^  verify\s/m, 'only restore');
    assert.equal((await ok(['restore', '--help'])).stdout, page);
    const unknown = await run(['help', 'frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^error: no help for "frobnicate"/);
  });

  test('--version prints the version in package.json', async () => {
    const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal((await ok(['--version'])).stdout, `${version}\n`);
    assert.equal((await ok(['list', '--version'])).stdout, `${version}\n`);
  });

  test('bad flags, commands and values exit 2 with one line pointing at --help', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['list', '--bogus'], /^error: unknown option --bogus\./],
      [[], /^error: missing command/],
      [['frobnicate'], /^error: unknown command "frobnicate"/],
      [['restore', '--seq', '1', '--at', '2026-01-01T00:00:00Z'], /^error: restore takes one of --seq, --at and --before-migration; got --seq and --at\./],
      [['restore', '--seq', 'latest'], /^error: --seq must be a snapshot sequence number/],
      [['restore', '--at', 'yesterday'], /^error: --at must be an ISO 8601 time/],
      [['list', '--force'], /^error: --force does not apply to list\./],
      [['verify', '--all', '--seq', '2'], /^error: verify takes --all or --seq, not both\./],
      [['list', '--container', 'c', '--backup-dir', 'd'], /^error: --container names an Azure container; it does not apply with --backup-dir\./],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const result = results[i]!;
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
      const named = ['list', 'restore', 'verify'].find((c) => args[0] === c);
      assert.match(result.stderr, new RegExp(` See "drizzle-libsql-blob${named ? ` ${named}` : ''} --help"\\.\n$`), 'the pointer to the help (that command\'s, when it names one)');
      assert.equal(result.stderr.split('\n').length, 2, `one line: ${result.stderr}`);
      assert.equal(result.stdout, '');
    }
  });

  test('an empty store: status and list say so (exit 0); restore and verify fail with NO_BACKUP naming the store', async () => {
    const empty = join(dir.path, 'empty-store');
    const status = await ok(['status', '--backup-dir', empty, '--db', join(dir.path, 'nothing.db')]);
    assert.match(status.stdout, /^manifest\s+none: no backup here/m);
    assert.match(status.stdout, /^local\s+.*nothing\.db: does not exist/m);
    const listed = await ok(['list', '--backup-dir', empty]);
    assert.equal(listed.stdout, `no snapshots in file://${empty} (chosen by --backup-dir): it holds no manifest yet\n`);
    assert.deepEqual(JSON.parse((await ok(['list', '--json', '--backup-dir', empty])).stdout).snapshots, []);
    for (const args of [['restore', '--to', join(dir.path, 'nothing.db')], ['verify']]) {
      const result = await run([...args, '--backup-dir', empty]);
      assert.equal(result.code, 1, `${args[0]}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^error \\[NO_BACKUP\\]: No backup at file://${empty} \\(chosen by --backup-dir\\)`, 'm'));
    }
    assert.equal(existsSync(join(dir.path, 'nothing.db')), false);
  });

  test('an unreachable store fails with STORE_UNREACHABLE (and a JSON error with --json)', async () => {
    const port = await closedPort();
    const env = {
      AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${Buffer.from('k').toString('base64')};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`,
      AZURE_STORAGE_CONTAINER: 'backups',
    };
    const result = await run(['list', '--json', '--quiet'], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error \[STORE_UNREACHABLE\]: /m);
    assert.equal(JSON.parse(result.stdout).error.code, 'STORE_UNREACHABLE');
  });

  test('restore --if-exists on an empty store exits 0, creates the parent directory, and writes no file', async () => {
    const empty = join(dir.path, 'empty-store-2');
    const dbPath = join(dir.path, 'fresh-disk', 'data', 'app.db');
    const { stdout } = await ok(['restore', '--if-exists', '--backup-dir', empty, '--db', dbPath]);
    assert.match(stdout, new RegExp(`^no snapshot in file://${empty} \\(chosen by --backup-dir\\) yet: nothing to restore`, 'm'));
    assert.equal(existsSync(join(dir.path, 'fresh-disk', 'data')), true, 'the parent directory exists for drizzle-kit migrate');
    assert.equal(existsSync(dbPath), false);
    assert.equal(existsSync(`${dbPath}.sync.json`), false);
    assert.deepEqual(readdirSync(join(dir.path, 'fresh-disk', 'data')).filter((f) => !f.endsWith('.lock')), []);
    // A manifest that lists no snapshot counts as empty too.
    await mkdir(empty, { recursive: true });
    await writeFile(join(empty, 'manifest.json'), JSON.stringify({ format: 1, generation: 'g', seq: 0, snapshots: [] }));
    const json = JSON.parse((await ok(['restore', '--if-exists', '--json', '--backup-dir', empty, '--db', dbPath])).stdout);
    assert.equal(json.restored, null);
    assert.equal(json.reason, 'empty');
  });

  test('restore --if-exists keeps an existing file (exit 0, untouched); without --if-exists it is still an error', async () => {
    const storeDir = join(dir.path, 'keep-store');
    const history = await makeHistory(join(dir.path, 'keep-data', 'app.db'), directoryStore({ dir: storeDir }));
    const target = join(dir.path, 'keep-target.db');
    await writeFile(target, 'not a snapshot');
    const { stdout } = await ok(['restore', '--if-exists', '--backup-dir', storeDir, '--db', target]);
    assert.match(stdout, /already exists: kept, nothing downloaded/);
    assert.equal(await readFile(target, 'utf8'), 'not a snapshot');
    const refused = await run(['restore', '--backup-dir', storeDir, '--db', target]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error \[CONFIG\]: .*already exists; pass --force/m);
    // A missing file with --if-exists on a non-empty store: an ordinary restore of the latest.
    const fresh = join(dir.path, 'keep-fresh', 'app.db');
    await ok(['restore', '--if-exists', '--backup-dir', storeDir, '--db', fresh]);
    assert.deepEqual(await rowsOf(fresh), history.snapshots.at(-1)!.rows);
  });

  test('snapshot without a database file names --db', async () => {
    const result = await run(['snapshot', '--backup-dir', join(dir.path, 'empty-store'), '--db', join(dir.path, 'missing.db')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error \[CONFIG\]: No database at .*missing\.db: pass --db FILE/m);
  });

  test('the bin wrapper runs the CLI', async () => {
    // The repo has no dist/: the source condition points the bin's '#cli' import at src/ (test/package runs the packed bin).
    const result = await run(['--help'], {}, ['--conditions=source', '--import', 'tsx', 'bin/drizzle-libsql-blob.js']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Usage: drizzle-libsql-blob/);
  });
});

describe('cli against Azure Blob (Azurite)', () => {
  let azurite: Azurite;
  let store: SnapshotStore;
  let history: History;
  let env: Record<string, string>;
  const container = 'cli-backups';
  before(async () => {
    azurite = await startAzurite();
    store = azureBlobStore({ connectionString: azurite.connectionString, container, prefix: 'app', createContainer: true });
    await store.probe();
    history = await makeHistory(join(dir.path, 'azure-data', 'app.db'), store);
    env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString, AZURE_STORAGE_CONTAINER: container, AZURE_STORAGE_PREFIX: 'app' };
  });
  after(() => azurite?.stop());

  test('list, status and restore --seq read the store named by the environment', async () => {
    const seqs = history.snapshots.map((s) => s.seq);
    assert.deepEqual((await listJson([], env)).map((s) => s.seq), [...seqs].reverse());
    const { stdout } = await ok(['status', '--db', history.dbPath], env);
    assert.match(stdout, new RegExp(`^store\\s+azure://${azurite.accountName}/${container}/app\\s+\\(from AZURE_STORAGE_CONNECTION_STRING\\)`, 'm'));
    assert.match(stdout, new RegExp(`^manifest\\s+seq ${seqs.at(-1)},`, 'm'));
    const target = join(dir.path, 'azure-restored', 'second.db');
    await ok(['restore', '--seq', String(seqs[1]), '--to', target], env);
    assert.deepEqual(await rowsOf(target), history.snapshots[1]!.rows);
  });

  test('--prefix overrides AZURE_STORAGE_PREFIX', async () => {
    const wrong = await run(['list'], { ...env, AZURE_STORAGE_PREFIX: 'elsewhere' });
    assert.equal(wrong.code, 0, wrong.stderr);
    assert.match(wrong.stdout, /^no snapshots in azure:\/\/\S+\/elsewhere /m);
    assert.equal((await listJson(['--prefix', 'app'], { ...env, AZURE_STORAGE_PREFIX: 'elsewhere' })).length, 3);
  });

  test('--container overrides AZURE_STORAGE_CONTAINER', async () => {
    const elsewhere = { ...env, AZURE_STORAGE_CONTAINER: 'no-such-container' };
    assert.equal((await listJson(['--container', container], elsewhere)).length, 3);
    const { stdout } = await ok(['status', '--container', container, '--db', history.dbPath], elsewhere);
    assert.match(stdout, new RegExp(`^store\\s+azure://${azurite.accountName}/${container}/app\\s`, 'm'));
  });

  test('a missing container: STORE_NOT_FOUND names AZURE_STORAGE_CREATE_CONTAINER; with it set, the deploy flow creates the container', async () => {
    const missing = { ...env, AZURE_STORAGE_CONTAINER: 'cli-created' };
    const dbPath = join(dir.path, 'created', 'data', 'app.db');
    const failed = await run(['restore', '--if-exists', '--db', dbPath], missing);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /^error \[STORE_NOT_FOUND\]: Container "cli-created" does not exist .* or set AZURE_STORAGE_CREATE_CONTAINER=true/m);
    assert.doesNotMatch(failed.stderr, /createContainer: true/, 'no option the CLI user cannot pass');

    const creating = { ...missing, AZURE_STORAGE_CREATE_CONTAINER: 'true' };
    const empty = await ok(['restore', '--if-exists', '--db', dbPath], creating);
    assert.match(empty.stdout, /^no snapshot in azure:\/\/\S+\/cli-created\/app .* yet: nothing to restore/m);
    const client = createClient({ url: pathToFileURL(dbPath).href });
    await client.execute(CREATE_NOTES);
    await client.execute("INSERT INTO notes (body) VALUES ('first')");
    client.close();
    const snap = await ok(['snapshot', '--db', dbPath], creating);
    assert.match(snap.stdout, /^uploaded snapshot seq 1: /m);
    assert.equal((await listJson([], { ...env, AZURE_STORAGE_CONTAINER: 'cli-created' })).length, 1);

    const bad = await run(['list'], { ...missing, AZURE_STORAGE_CREATE_CONTAINER: 'sure' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error \[CONFIG\]: AZURE_STORAGE_CREATE_CONTAINER must be true or false; got "sure"\./m);
  });

  test('a full snapshot\'s file upload to Azure reports progress as the SDK sends it (bytes and percent before 100%)', async () => {
    const file = join(dir.path, 'azure-upload.bin');
    await writeFile(file, randomBytes(12_000_000));
    const lines: string[] = [];
    const progress = withProgress(store, () => undefined, (line) => lines.push(line), 0);
    await progress.uploadFile('snapshots/g/000000000007-abcd.db.lz4', file);
    const percents = lines.map((l) => /^seq 7: [\d.]+\/12\.0 MB \((\d+)%\)/.exec(l)?.[1]).filter((p) => p !== undefined).map(Number);
    assert.ok(percents.length >= 2 && percents[0]! < 100, `progress before the end:\n${lines.join('\n')}`);
    assert.match(lines.at(-1)!, /^seq 7: uploaded 12\.0 MB in /);
  });

  test('snapshot to Azure prints the new chunks\' upload progress (bytes and percent before 100%)', async () => {
    const dbPath = join(dir.path, 'azure-big', 'app.db');
    await mkdir(join(dir.path, 'azure-big'), { recursive: true });
    const client = createClient({ url: pathToFileURL(dbPath).href });
    await client.execute('CREATE TABLE blobs (b BLOB)');
    // Random bytes do not compress: a ~12 MB upload, two 8 MB blocks.
    await client.execute('INSERT INTO blobs SELECT randomblob(1000000) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 12) SELECT i FROM c)');
    client.close();
    const { stdout, stderr } = await ok(['snapshot', '--prefix', 'big', '--db', dbPath], env);
    assert.match(stdout, /^uploaded snapshot seq 1: /m);
    const percents = [...stderr.matchAll(/^new chunks: [\d.]+\/1[0-9]\.\d MB \((\d+)%\)/gm)].map((m) => Number(m[1]));
    assert.ok(percents.length >= 1 && percents[0]! < 100, `a progress line before the end; stderr:\n${stderr}`);
    assert.match(stderr, /^new chunks: uploaded 1[0-9]\.\d MB in /m);
  });

  test('a wrong account key: STORE_AUTH names the variable that holds it', async () => {
    const wrongKey = Buffer.alloc(64, 7).toString('base64');
    const result = await run(['list'], { ...env, AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString.replace(azurite.accountKey, wrongKey) });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error \[STORE_AUTH\]: .*check the account key \/ connection string in AZURE_STORAGE_CONNECTION_STRING/m);
    assert.ok(!result.stderr.includes(wrongKey), 'never echoes the key');
  });

  test('an expired SAS in AZURE_STORAGE_CONTAINER_URL: STORE_AUTH says when it expired and where to put a new one', async () => {
    const credential = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
    const expiresOn = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000);
    const query = generateBlobSASQueryParameters({ containerName: container, permissions: ContainerSASPermissions.parse('racwdl'), startsOn: new Date(expiresOn.getTime() - 3_600_000), expiresOn }, credential);
    const result = await run(['list'], { AZURE_STORAGE_CONTAINER_URL: `${azurite.blobEndpoint}/${container}?${query.toString()}`, AZURE_STORAGE_PREFIX: 'app' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^error \\[STORE_AUTH\\]: .*the SAS token in AZURE_STORAGE_CONTAINER_URL expired at ${expiresOn.toISOString().replace(/[.]/g, '\\.')}`, 'm'));
    assert.ok(!result.stderr.includes(query.signature ?? '\0'), 'never echoes the signature');
  });

  test('verify --all passes, and after a blob is overwritten exits 1 naming that seq', async () => {
    const seqs = history.snapshots.map((s) => s.seq);
    const { stdout } = await ok(['verify', '--all'], env);
    for (const seq of seqs) assert.match(seqLine(stdout, seq) ?? '', /\sok\s/);

    const victim = seqs[0]!;
    const entry = (await listJson([], env)).find((s) => s.seq === victim)!;
    const chunks: Buffer[] = [];
    for await (const chunk of store.download(entry.key)) chunks.push(chunk);
    const corrupt = join(dir.path, 'corrupt.lz4');
    await writeFile(corrupt, Buffer.concat(chunks));
    await flipByte(corrupt);
    await store.uploadFile(entry.key, corrupt); // same key, same size, different bytes

    const failed = await run(['verify', '--all'], env);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(seqLine(failed.stdout, victim) ?? '', /\sFAIL\s.*SNAPSHOT_CORRUPT/);
    for (const seq of seqs.slice(1)) assert.match(seqLine(failed.stdout, seq) ?? '', /\sok\s/);
    assert.match(failed.stdout, new RegExp(`1 of 3 snapshots FAILED: seq ${victim}$`, 'm'));
  });
});
