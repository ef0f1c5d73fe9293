/**
 * With `shutdown: { signals: true }`, SIGTERM/SIGINT take a final snapshot before the process ends.
 * A real child process (test/children/writer.ts) writes K rows with a 60 s debounce, so nothing is
 * in the store when the signal arrives; after the child exits, a fresh instance on a wiped local
 * directory must restore all K rows from the store.
 *
 * Exit status: once the final snapshot is done the library removes its own listeners and, when no
 * other listener for that signal is left, re-raises the signal. So the child dies *by the signal*
 * (exit code null, signalCode 'SIGTERM' / 'SIGINT'), not with exit code 0; the tests assert exactly that.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { asc } from 'drizzle-orm';
import { azureBlobStore, directoryStore, drizzle, type Leaser, type SnapshotStore } from 'drizzle-libsql-blob';
import { notes, schema, tempDir } from '../helpers/fixtures.ts';
import { startAzurite, type Azurite } from '../helpers/azurite.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = 'test/children/writer.ts';
const K = 40;
const READY_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 25_000;
const TEST_TIMEOUT_MS = 60_000;

let azurite: Azurite | undefined;

before(async () => {
  azurite = await startAzurite();
});

after(async () => {
  await azurite?.stop();
});

interface Child {
  proc: ChildProcess;
  /** Resolves with the first stdout line matching `pattern`; rejects on timeout or exit. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

function startChild(args: string[], env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CHILD, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('close', (code, signal) => resolve({ code, signal })), // after stdout/stderr are drained
  );
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));

  const waiters = new Set<(line: string) => void>();
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const waiter of waiters) waiter(line);
  });
  const output = () => `--- child stdout ---\n${lines.join('\n')}\n--- child stderr ---\n${stderr}`;

  function waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error, match?: RegExpExecArray) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (error) reject(error);
        else resolve(match!);
      };
      const check = (line: string) => {
        const match = pattern.exec(line);
        if (match) done(undefined, match);
      };
      const timer = setTimeout(() => done(new Error(`child printed no ${pattern} within ${timeoutMs} ms\n${output()}`)), timeoutMs);
      void exited.then(({ code, signal }) => done(new Error(`child exited (code ${code}, signal ${signal}) before printing ${pattern}\n${output()}`)));
      for (const line of lines) check(line);
      waiters.add(check);
    });
  }
  return { proc, waitForLine, exited, output };
}

/** Waits for the child to exit; SIGKILLs it and fails if it does not within `timeoutMs`. */
async function waitForExit(child: Child, timeoutMs: number) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.proc.kill('SIGKILL');
      reject(new Error(`child did not exit within ${timeoutMs} ms of the signal\n${child.output()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface StoreCase {
  label: string;
  /** A fresh, empty store for one test: the parent's view of it, plus the env that gives the child the same one. */
  make(): Promise<{ store: SnapshotStore; env: Record<string, string>; cleanup(): Promise<void> }>;
}

const stores: StoreCase[] = [
  {
    label: 'directoryStore',
    async make() {
      const dir = await tempDir('signal-store');
      return { store: directoryStore({ dir: dir.path, prefix: 'app' }), env: { DLB_STORE_DIR: dir.path, DLB_STORE_PREFIX: 'app' }, cleanup: dir.cleanup };
    },
  },
  {
    label: 'azureBlobStore on Azurite',
    async make() {
      const container = `signal-${randomBytes(4).toString('hex')}`;
      await BlobServiceClient.fromConnectionString(azurite!.connectionString).createContainer(container);
      return {
        store: azureBlobStore({ connectionString: azurite!.connectionString, container, prefix: 'app' }),
        env: { DLB_AZURE_CONNECTION_STRING: azurite!.connectionString, DLB_AZURE_CONTAINER: container, DLB_STORE_PREFIX: 'app' },
        cleanup: async () => {},
      };
    },
  },
];

async function runCase(storeCase: StoreCase, signal: 'SIGTERM' | 'SIGINT', mode: 'idle' | 'transaction'): Promise<void> {
  const local = await tempDir('signal-child');
  const fresh = await tempDir('signal-fresh');
  const { store, env, cleanup } = await storeCase.make();
  let child: Child | undefined;
  try {
    child = startChild([join(local.path, 'app.db'), String(K), mode], env);
    const ready = await child.waitForLine(/^READY (\d+)$/, READY_TIMEOUT_MS);
    assert.equal(Number(ready[1]), K);

    // The long debounce held: nothing has reached the store yet.
    // Only the empty manifest the writer leases exists; no snapshot yet.
    const head = await store.readSmall('manifest.json');
    assert.deepEqual(JSON.parse(head!.body.toString()).snapshots, [], 'a snapshot exists before the signal');
    assert.equal(head!.leased, true, 'the writer holds the lease');
    assert.deepEqual((await store.list('')).map((o) => o.key), ['manifest.json'], 'the store holds snapshots before the signal');

    assert.ok(child.proc.kill(signal), `could not send ${signal}`);
    const exit = await waitForExit(child, EXIT_TIMEOUT_MS);
    // The library re-raises the signal after the final snapshot (no other listener exists in the child).
    assert.deepEqual(exit, { code: null, signal }, `child should die by the re-raised ${signal}\n${child.output()}`);
    assert.doesNotMatch(child.output(), /NOT IN THE STORE/, 'the child closed with commits missing from the store');
    if (mode === 'transaction') await child.waitForLine(/^COMMITTED$/, 1_000);

    // A fresh instance on an empty local directory restores everything from the store.
    const db = await drizzle({ connection: { url: `file:${join(fresh.path, 'app.db')}` }, schema, store, log: false, restore: 'required', shutdown: { signals: false } });
    try {
      assert.ok(db.$sync.status().restoredFrom, 'the fresh instance did not restore from the store');
      const rows = await db.select({ body: notes.body }).from(notes).orderBy(asc(notes.id));
      const expected = Array.from({ length: K }, (_, i) => `row ${i + 1}`);
      if (mode === 'transaction') expected.push('tx row 1', 'tx row 2');
      assert.deepEqual(
        rows.map((r) => r.body),
        expected,
      );
    } finally {
      await db.$sync.close();
    }
  } finally {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) {
      child.proc.kill('SIGKILL');
      await child.exited;
    }
    await cleanup();
    await local.cleanup();
    await fresh.cleanup();
  }
}

for (const storeCase of stores) {
  describe(`signal shutdown takes a final snapshot (${storeCase.label})`, () => {
    test(`SIGTERM with ${K} committed rows and no snapshot yet`, { timeout: TEST_TIMEOUT_MS }, () => runCase(storeCase, 'SIGTERM', 'idle'));
    test('SIGINT while a transaction is open: it commits during shutdown and is in the final snapshot', { timeout: TEST_TIMEOUT_MS }, () =>
      runCase(storeCase, 'SIGINT', 'transaction'),
    );
  });
}
