/**
 * `npm run db:setup` end to end, as a deploy runs it: real npm, real drizzle-kit, real child
 * processes, a directory store in a temp folder, and DATABASE_URL in a temp folder so the repo's
 * ./data is never touched.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@libsql/client';
import { directoryStore, drizzle } from 'drizzle-libsql-blob';
import * as schema from '../../schema/index.ts';
import { documents } from '../../schema/documents.ts';
import { loadSeeds } from '../../seeds/runner.ts';
import { tempDir } from '../helpers/fixtures.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const RUN_TIMEOUT_MS = 120_000;

let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('db-setup')));
after(() => dir.cleanup());

interface Deployment {
  dataDir: string;
  dbPath: string;
  backupDir: string;
  env: NodeJS.ProcessEnv;
}

function deployment(label: string): Deployment {
  const dataDir = join(dir.path, label, 'data');
  const backupDir = join(dir.path, label, 'backups');
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: `file:${join(dataDir, 'app.db')}`, BACKUP_DIR: backupDir };
  // Only the directory store: an Azure variable from the developer's shell must not redirect the test.
  for (const key of Object.keys(env)) if (key.startsWith('AZURE_STORAGE_') || key === 'SKIP_RESTORE' || key === 'RESTORE_MODE') delete env[key];
  return { dataDir, dbPath: join(dataDir, 'app.db'), backupDir, env };
}

/** Runs an npm script in the repo; resolves with its exit code and combined output, killing its process group on timeout. */
function npmRun(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', script], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL'); // npm -> sh -> node: the whole group
      } catch {
        // already gone
      }
      reject(new Error(`npm run ${script} did not finish within ${RUN_TIMEOUT_MS} ms:\n${output}`));
    }, RUN_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

async function setup(d: Deployment, script = 'db:setup'): Promise<string> {
  const { code, output } = await npmRun(script, d.env);
  assert.equal(code, 0, `npm run ${script} failed:\n${output}`);
  return output;
}

/** Every object in the store except the manifest (relative paths, sorted). */
async function snapshotBlobs(backupDir: string): Promise<string[]> {
  const root = join(backupDir, 'snapshots');
  if (!existsSync(root)) return [];
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

async function expectedCounts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await loadSeeds()) out[s.type] = (out[s.type] ?? 0) + 1;
  return out;
}

test('db:restore on an empty store publishes nothing and leaves the lease free', async () => {
  const d = deployment('restore-only');
  const output = await setup(d, 'db:restore');
  assert.match(output, /holds no snapshot yet/);
  // The only object is the empty manifest a writer creates to take its lease on, released at close.
  const manifest = JSON.parse(await readFile(join(d.backupDir, 'manifest.json'), 'utf8'));
  assert.deepEqual({ seq: manifest.seq, snapshots: manifest.snapshots }, { seq: 0, snapshots: [] }, output);
  assert.equal(existsSync(join(d.backupDir, 'manifest.json.lease')), false, 'lease released');
  assert.deepEqual(await snapshotBlobs(d.backupDir), []);
});

test('db:setup from an empty store publishes one snapshot with schema and seeds; repeating it, even on an empty disk, uploads nothing', async () => {
  const d = deployment('setup');
  const expected = await expectedCounts();

  // First deploy: restore (nothing), migrate, seed (uploads), snapshot (nothing left).
  const first = await setup(d);
  const manifestPath = join(d.backupDir, 'manifest.json');
  assert.ok(existsSync(manifestPath), `no manifest after db:setup:\n${first}`);
  const manifestBody = await readFile(manifestPath);
  const manifest = JSON.parse(manifestBody.toString()) as { seq: number; snapshots: unknown[] };
  assert.equal(manifest.seq, 1, `one upload in total (migration and seed together):\n${first}`);
  const blobs = await snapshotBlobs(d.backupDir);
  assert.equal(blobs.length, 1, blobs.join(', '));

  // Another instance restoring from that store sees the migrated schema and every seed.
  const fresh = await drizzle({
    connection: { url: `file:${join(dir.path, 'setup', 'fresh', 'app.db')}` },
    schema,
    store: directoryStore({ dir: d.backupDir }),
    restore: 'required',
    log: false,
    shutdown: { signals: false },
  });
  assert.equal(fresh.$sync.status().restoredFrom?.seq, 1);
  const tables = await fresh.$client.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('documents', '__drizzle_migrations') ORDER BY name");
  assert.deepEqual(tables.rows.map((r) => r.name), ['__drizzle_migrations', 'documents']);
  const migrations = await fresh.$client.execute('SELECT count(*) AS n FROM __drizzle_migrations');
  assert.equal(Number(migrations.rows[0]!.n), 1);
  const rows = await fresh.select({ type: documents.type, version: documents.version }).from(documents);
  const counts: Record<string, number> = {};
  for (const r of rows) counts[r.type] = (counts[r.type] ?? 0) + 1;
  assert.deepEqual(counts, expected);
  assert.ok(rows.every((r) => r.version === 1));
  await fresh.$sync.close();

  // Second deploy on the same disk: migrate and seed are no-ops, so nothing is uploaded.
  const second = await setup(d);
  assert.match(second, /nothing changed, nothing written/);
  assert.doesNotMatch(second, /uploaded snapshot/);
  assert.deepEqual(await readFile(manifestPath), manifestBody, `manifest changed on a no-op setup:\n${second}`);
  assert.deepEqual(await snapshotBlobs(d.backupDir), blobs);

  // A new container (empty disk): restore brings the database back, the rest has nothing to do.
  await rm(d.dataDir, { recursive: true, force: true });
  const third = await setup(d);
  assert.match(third, /restored snapshot seq 1/);
  assert.match(third, /nothing changed, nothing written/);
  assert.doesNotMatch(third, /uploaded snapshot/);
  assert.deepEqual(await readFile(manifestPath), manifestBody, `manifest changed after a restore-only setup:\n${third}`);
  assert.deepEqual(await snapshotBlobs(d.backupDir), blobs);
  const local = createClient({ url: `file:${d.dbPath}` });
  try {
    const n = await local.execute('SELECT count(*) AS n FROM documents');
    assert.equal(Number(n.rows[0]!.n), Object.values(expected).reduce((a, b) => a + b, 0));
    // A change made outside the library (as drizzle-kit migrate does) is picked up by the next step.
    await local.execute('CREATE TABLE outside_change (x INTEGER)');
  } finally {
    local.close();
  }
  const picked = await setup(d, 'db:snapshot');
  assert.match(picked, /uploaded snapshot seq 2/);
  assert.equal((JSON.parse(await readFile(manifestPath, 'utf8')) as { seq: number }).seq, 2);
  assert.match(await setup(d, 'db:snapshot'), /nothing to upload/);
});
