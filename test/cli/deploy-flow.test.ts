/**
 * The deploy flow of the README ("Deploying with drizzle-kit migrations"), as a container's start script
 * runs it, step by step and stopping at the first failure as `&&` does:
 *
 *   drizzle-libsql-blob restore --if-exists && drizzle-kit migrate && node seed.js && drizzle-libsql-blob snapshot && node server.js
 *
 * in a small app of its own in a temp folder (drizzle.config.ts, a migrations folder, a seed script on
 * @libsql/client, a server on drizzle-libsql-blob), against a directory store, with no DATABASE_URL: the
 * default ./data/app.db, whose folder does not exist on a fresh disk. Real processes throughout: the
 * repo's CLI entry (as cli.test.ts runs it), drizzle-kit from node_modules/.bin. The packaged variant of
 * this flow (plain node, from the tarball) is test/package's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import { tempDir, type TempDir } from '../helpers/fixtures.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const STEP_TIMEOUT_MS = 120_000;

/** The start script's steps, in order: [what the script says, the argv this test runs for it]. */
function startScript(): Array<[string, string[]]> {
  const cli = [process.execPath, '--conditions=source', '--import', 'tsx', join(REPO, 'src/cli/main.ts')];
  return [
    ['drizzle-libsql-blob restore --if-exists', [...cli, 'restore', '--if-exists']],
    ['drizzle-kit migrate', [join(REPO, 'node_modules/.bin/drizzle-kit'), 'migrate']],
    ['node seed.js', [process.execPath, 'seed.js']],
    ['drizzle-libsql-blob snapshot', [...cli, 'snapshot']],
    // The app imports drizzle-libsql-blob, which in the repo is TypeScript source: the same condition as the CLI.
    ['node server.js', [process.execPath, '--conditions=source', '--import', 'tsx', 'server.js']],
  ];
}

interface StepResult {
  step: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

function runStep(step: string, argv: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<StepResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${step} did not finish within ${STEP_TIMEOUT_MS} ms:\n${stdout}\n${stderr}`));
    }, STEP_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ step, code, stdout, stderr });
    });
  });
}

/** Runs the start script to its end; every step must exit 0 (as `&&` requires). Returns each step's output by name. */
async function deploy(app: App): Promise<Record<string, StepResult>> {
  const results: Record<string, StepResult> = {};
  for (const [step, argv] of startScript()) {
    const result = await runStep(step, argv, app.dir, app.env);
    assert.equal(result.code, 0, `${step} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    results[step] = result;
  }
  return results;
}

interface App {
  dir: string;
  dbPath: string;
  storeDir: string;
  env: NodeJS.ProcessEnv;
}

const DRIZZLE_CONFIG = `// drizzle-kit reads DATABASE_URL as the app does; the default is the file the CLI restores.
export default {
  dialect: 'turso',
  out: './migrations',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'file:./data/app.db' },
};
`;

/** Idempotent: fixed ids, INSERT OR IGNORE. Prints how many rows it added. */
const SEED = `import { createClient } from '@libsql/client';
const client = createClient({ url: process.env.DATABASE_URL ?? 'file:./data/app.db' });
const result = await client.execute("INSERT OR IGNORE INTO notes (id, body) VALUES (1, 'welcome'), (2, 'getting started')");
console.log('seeded ' + result.rowsAffected);
client.close();
`;

/** Stands in for the app: opens the database with the library, prints what it found, and shuts down. */
const SERVER = `import { drizzle, directoryStore } from 'drizzle-libsql-blob';
const db = await drizzle({
  connection: { url: process.env.DATABASE_URL ?? 'file:./data/app.db' },
  store: directoryStore({ dir: process.env.BACKUP_DIR }),
  shutdown: { signals: false },
  log: false,
});
const rows = await db.all('SELECT id, body FROM notes ORDER BY id');
const status = db.$sync.status();
await db.$sync.close();
console.log('serving ' + JSON.stringify({ rows: rows.length, restoredFrom: status.restoredFrom, localSeq: status.localSeq }));
`;

async function makeApp(root: string, label: string, storeDir: string): Promise<App> {
  const dir = join(root, label);
  await mkdir(join(dir, 'node_modules'), { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `deploy-${label}`, private: true, type: 'module' }));
  await writeFile(join(dir, 'drizzle.config.ts'), DRIZZLE_CONFIG);
  await writeFile(join(dir, 'seed.js'), SEED);
  await writeFile(join(dir, 'server.js'), SERVER);
  await cp(fileURLToPath(new URL('../fixtures/migrations', import.meta.url)), join(dir, 'migrations'), { recursive: true });
  // What `npm install drizzle-libsql-blob @libsql/client` would give the app, from the repo's own copies.
  await symlink(join(REPO, 'node_modules/@libsql'), join(dir, 'node_modules/@libsql'), 'dir');
  await symlink(join(REPO, 'node_modules/tsx'), join(dir, 'node_modules/tsx'), 'dir');
  await symlink(REPO, join(dir, 'node_modules/drizzle-libsql-blob'), 'dir');
  const env: NodeJS.ProcessEnv = { ...process.env, BACKUP_DIR: storeDir };
  // The directory store and the default database path only: nothing from the developer's shell.
  for (const key of Object.keys(env)) if (key.startsWith('AZURE_STORAGE_') || key === 'DATABASE_URL' || key === 'SKIP_RESTORE' || key === 'RESTORE_MODE') delete env[key];
  return { dir, dbPath: join(dir, 'data', 'app.db'), storeDir, env };
}

interface Manifest {
  seq: number;
  snapshots: Array<{ seq: number; key: string }>;
}

async function manifestOf(storeDir: string): Promise<Manifest | null> {
  const file = join(storeDir, 'manifest.json');
  return existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as Manifest) : null;
}

async function query(dbPath: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const client = createClient({ url: pathToFileURL(dbPath).href });
  try {
    return (await client.execute(sql)).rows.map((r) => ({ ...r }));
  } finally {
    client.close();
  }
}

function served(result: StepResult): { rows: number; restoredFrom: { seq: number; skipped?: boolean } | null; localSeq: number } {
  const line = result.stdout.split('\n').find((l) => l.startsWith('serving '));
  assert.ok(line, `server printed no "serving" line:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(line.slice('serving '.length));
}

let root: TempDir;
before(async () => (root = await tempDir('deploy-flow')));
after(() => root.cleanup());

test('the start script on an empty store, again on a wiped disk, and on a restart with a new migration', async () => {
  const storeDir = join(root.path, 'store');
  const app = await makeApp(root.path, 'app', storeDir);

  // First deploy: nothing anywhere. ./data does not exist yet.
  assert.equal(existsSync(join(app.dir, 'data')), false);
  const first = await deploy(app);
  assert.match(first['drizzle-libsql-blob restore --if-exists']!.stdout, /^no snapshot in file:\/\/.* yet: nothing to restore/m);
  assert.deepEqual(
    (await query(app.dbPath, 'SELECT id, body FROM notes ORDER BY id')).map((r) => r.body),
    ['welcome', 'getting started'],
    'migrate created the schema and seed filled it',
  );
  assert.match(first['node seed.js']!.stdout, /^seeded 2$/m);
  assert.match(first['drizzle-libsql-blob snapshot']!.stdout, /^uploaded snapshot seq 1: /m);
  const afterFirst = await manifestOf(storeDir);
  assert.equal(afterFirst?.seq, 1);
  const firstServe = served(first['node server.js']!);
  assert.equal(firstServe.rows, 2);
  assert.equal(firstServe.restoredFrom?.skipped ?? true, true, 'the app starts on the file the snapshot step published, downloading nothing');

  // A new machine: the local disk is gone, the store is not.
  await rm(join(app.dir, 'data'), { recursive: true, force: true });
  const second = await deploy(app);
  assert.match(second['drizzle-libsql-blob restore --if-exists']!.stdout, /^restored seq 1 /m);
  assert.match(second['node seed.js']!.stdout, /^seeded 0$/m, 'the seed is idempotent');
  assert.equal((await query(app.dbPath, 'SELECT count(*) AS n FROM __drizzle_migrations'))[0]!.n, 1, 'migrate applied nothing again');
  assert.doesNotMatch(second['drizzle-libsql-blob snapshot']!.stdout, /^uploaded /m, 'nothing changed: nothing uploaded');
  assert.equal((await manifestOf(storeDir))?.seq, 1);
  assert.equal(served(second['node server.js']!).rows, 2);

  // A restart on the same disk with a new migration: the file is kept, the migration applied, only that change uploaded.
  await writeFile(join(app.dir, 'migrations', '0001_tags.sql'), 'ALTER TABLE `notes` ADD `tag` text;\n');
  const journalPath = join(app.dir, 'migrations', 'meta', '_journal.json');
  const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: object[] };
  journal.entries.push({ idx: 1, version: '6', when: 1763900001000, tag: '0001_tags', breakpoints: true });
  await writeFile(journalPath, JSON.stringify(journal));
  const third = await deploy(app);
  assert.match(third['drizzle-libsql-blob restore --if-exists']!.stdout, /already exists: kept, nothing downloaded/);
  assert.ok((await query(app.dbPath, 'PRAGMA table_info(notes)')).some((c) => c.name === 'tag'), 'the new migration ran');
  assert.match(third['drizzle-libsql-blob snapshot']!.stdout, /^uploaded snapshot seq 2: /m);
  const afterThird = await manifestOf(storeDir);
  assert.equal(afterThird?.seq, 2);
  const thirdServe = served(third['node server.js']!);
  assert.equal(thirdServe.rows, 2);
  assert.equal(thirdServe.localSeq, 2);
});
