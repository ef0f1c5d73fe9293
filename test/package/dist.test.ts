import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rm, writeFile } from 'node:fs/promises';
import { tempDir } from '../helpers/fixtures.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
let dir: Awaited<ReturnType<typeof tempDir>>;
before(async () => (dir = await tempDir('dist')));
after(() => dir.cleanup());

test("the compiled dist/ works from plain Node (no tsx) through the package's own name", async () => {
  await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.build.json')], { cwd: REPO });
  // Inside the package scope, without the 'source' condition, the name resolves to dist/index.js.
  const script = join(REPO, `.dist-check-${process.pid}.mjs`);
  await writeFile(
    script,
    `import { drizzle, directoryStore } from 'drizzle-libsql-blob';
const store = directoryStore({ dir: ${JSON.stringify(join(dir.path, 'store'))} });
const opts = { store, log: false, shutdown: { signals: false } };
const a = await drizzle({ connection: 'file:${join(dir.path, 'a.db')}', ...opts });
await a.run('CREATE TABLE t (x)');
await a.run('INSERT INTO t VALUES (42)');
const info = await a.$sync.flush();
await a.$sync.close();
const b = await drizzle({ connection: 'file:${join(dir.path, 'b.db')}', ...opts });
const rows = await b.all('SELECT x FROM t');
await b.$sync.close();
console.log(JSON.stringify({ uploaded: info.uploaded, commits: info.commits, rows }));
`,
  );
  const { stdout } = await run(process.execPath, [script], { cwd: dir.path }).finally(() => rm(script, { force: true }));
  assert.deepEqual(JSON.parse(stdout.trim()), { uploaded: true, commits: 2, rows: [{ x: 42 }] });
});
