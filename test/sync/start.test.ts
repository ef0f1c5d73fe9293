/**
 * `npm start` works out of the box: once with the data and backups in temp folders, and once with no
 * configuration at all but PORT=0 (the defaults ./data/app.db and ./.data/backups in the repo, which
 * are removed afterwards only if this test created them).
 *
 * Stopping: npm runs the script through `sh -c`, and dash does not exec the command, so a SIGTERM to
 * npm alone reaches only the shell; the shell dies and the server is orphaned without its final
 * snapshot. The tests therefore signal the whole process group, as a terminal's Ctrl-C does; npm itself
 * then ends by the re-raised signal, so what is asserted is the server's own clean exit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForLine } from '../helpers/child.ts';
import { tempDir } from '../helpers/fixtures.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The app's and the store's settings: removed from the inherited env so the defaults are what runs. */
const CONFIG_VARS = ['PORT', 'DB_ROLE', 'HOST', 'DATABASE_URL', 'BACKUP_DIR', 'SKIP_RESTORE', 'LOG_LEVEL', 'SNAPSHOT_DEBOUNCE_MS', 'SNAPSHOT_MAX_INTERVAL_MS', 'SNAPSHOT_MAX_COMMITS', 'SNAPSHOT_RETAIN', 'SHUTDOWN_TIMEOUT_MS', 'SHUTDOWN_DRAIN_MS', 'DURABLE_WRITES', 'DURABLE_TIMEOUT_MS'];

let dir: Awaited<ReturnType<typeof tempDir>>;
/** npm process groups whose output has not closed yet (some member, e.g. the server, still runs). */
const running = new Set<number>();
const defaultDirs = ['data', '.data'].map((d) => join(REPO, d));
let preexisting: boolean[];

before(async () => {
  dir = await tempDir('start');
  preexisting = defaultDirs.map((d) => existsSync(d));
});
after(async () => {
  // npm runs the server through a shell: end the whole group if a test failed midway.
  for (const group of running) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await dir.cleanup();
  await Promise.all(defaultDirs.map((d, i) => (preexisting[i] ? undefined : rm(d, { recursive: true, force: true }))));
});

function npmStart(overrides: Record<string, string>): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of CONFIG_VARS) delete env[key];
  for (const key of Object.keys(env)) if (key.startsWith('AZURE_STORAGE_')) delete env[key];
  // detached: npm leads a new process group holding the shell and the server.
  const child = spawn('npm', ['start'], { cwd: REPO, env: { ...env, ...overrides }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(child.pid!);
  child.once('close', () => running.delete(child.pid!));
  return child;
}

async function checkServes(child: ChildProcess): Promise<void> {
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const line = await waitForLine(child, 'LISTENING ', 90_000);
  const base = line.slice('LISTENING '.length).trim();
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback by default, real port printed for PORT=0');

  const health = await fetch(`${base}/health`);
  const body = await health.json();
  assert.equal(health.status, 200, JSON.stringify(body));
  assert.notEqual(body.status, 'unhealthy');
  assert.equal(body.database.ok, true);

  const personas = await fetch(`${base}/api/documents?type=persona&limit=200`);
  assert.equal(personas.status, 200);
  const { items } = await personas.json();
  assert.ok(items.length >= 19, `seeded personas: ${items.length}`);

  // 'close' fires once every process holding the output pipes has exited, the server included.
  const closed = once(child, 'close');
  process.kill(-child.pid!, 'SIGTERM');
  await closed;
  assert.match(output, /SIGTERM received/, output);
  assert.match(output, /final snapshot done; exiting/, output); // printed right before process.exit(0)
  assert.doesNotMatch(output, /FINAL SNAPSHOT FAILED|CLOSED WITH/, output);
}

test('npm start with DATABASE_URL and BACKUP_DIR in temp folders', { timeout: 120_000 }, async () => {
  const child = npmStart({ PORT: '0', DATABASE_URL: `file:${join(dir.path, 'data', 'app.db')}`, BACKUP_DIR: join(dir.path, 'backups') });
  await checkServes(child);
  assert.ok(existsSync(join(dir.path, 'backups', 'manifest.json')), 'the final snapshot is in BACKUP_DIR');
});

test('npm start with no configuration but PORT=0', { timeout: 120_000 }, async () => {
  await checkServes(npmStart({ PORT: '0' }));
  assert.ok(existsSync(join(REPO, 'data', 'app.db')), 'default database ./data/app.db');
  assert.ok(existsSync(join(REPO, '.data', 'backups', 'manifest.json')), 'default store ./.data/backups');
});
