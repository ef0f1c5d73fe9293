/**
 * The published package, as an adopter gets it: `npm pack` (its prepack builds dist/), then a fresh app
 * outside the repository installs the tarball beside drizzle-orm, @libsql/client and drizzle-kit, once
 * at the lowest versions of the declared peer ranges and once at the versions in our lock file. There,
 * with plain `node` (no tsx, no custom conditions): a database round trip through a directory store,
 * the `drizzle-libsql-blob` command, a strict `tsc` over every ```ts block of README.md, and the
 * installed dependency tree.
 *
 * README convention: each ```ts block compiles as its own ES module in a folder that also holds
 * `schema.ts` (exporting a `notes` table), against the installed package, under `strict`.
 *
 * Slow only the first time (npm downloads into its cache); later runs install from the cache.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, type TempDir } from '../helpers/fixtures.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(REPO, 'node_modules/typescript/bin/tsc');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, unknown>;
  imports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> };
const locked = (name: string): string => lock.packages[`node_modules/${name}`]!.version;
/** The `>=x.y.z` end of a declared peer range: the oldest version we promise to work with. */
function lowest(name: string): string {
  const match = /^>=\s*(\d+\.\d+\.\d+)/.exec(pkg.peerDependencies[name] ?? '');
  assert.ok(match, `peerDependencies['${name}'] should start with '>=x.y.z', got ${pkg.peerDependencies[name]}`);
  return match[1]!;
}

const VARIANTS = [
  { name: 'lowest peers', drizzleOrm: lowest('drizzle-orm'), libsqlClient: lowest('@libsql/client') },
  { name: 'locked peers', drizzleOrm: locked('drizzle-orm'), libsqlClient: locked('@libsql/client') },
];

/**
 * A child's environment: npm's own settings (registry, cache, proxy) pass on; a loader in NODE_OPTIONS
 * and a prefix or global install that `npm test` may have set do not.
 */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(NODE_OPTIONS|npm_config_(prefix|global|location))$/i.test(key)));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}
function run(file: string, args: string[], cwd: string, timeoutMs = 120_000, env: NodeJS.ProcessEnv = cleanEnv): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr + (error && typeof error.code !== 'number' ? `\n${error.message}` : '') });
    });
  });
}
const npm = (args: string[], cwd: string) => run('npm', args, cwd, 240_000);
const ok = (r: Ran, what: string) => assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);

let work: TempDir;
let tarball: string;
let packedFiles: string[];

before(async () => {
  work = await tempDir('package');
  const packed = await npm(['pack', '--json', '--pack-destination', work.path], REPO);
  ok(packed, 'npm pack');
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work.path, info!.filename);
  packedFiles = info!.files.map((f) => f.path);
});
after(() => work?.cleanup());

describe('the tarball', () => {
  test('holds the compiled library, its types, the worker, the bin, LICENSE and README', () => {
    for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/sync/file-worker.js', 'bin/drizzle-libsql-blob.js', 'LICENSE', 'README.md', 'package.json']) {
      assert.ok(packedFiles.includes(file), `${file} is missing from the tarball`);
    }
    assert.deepEqual(packedFiles.filter((f) => /^(test|app|bench|scripts|node_modules)\//.test(f)), []);
  });

  test('every source map points at a shipped file', () => {
    const maps = packedFiles.filter((f) => f.endsWith('.map'));
    assert.ok(maps.length > 0);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(REPO, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const target = posix.normalize(posix.join(posix.dirname(map), source));
        assert.ok(packedFiles.includes(target), `${map} points at ${target}, which is not in the tarball`);
      }
    }
  });

  test('every exports and imports target, under every condition, is a shipped file', () => {
    const targets: string[] = [];
    const walk = (value: unknown): void => {
      if (typeof value === 'string') targets.push(value);
      else if (value && typeof value === 'object') Object.values(value).forEach(walk);
    };
    walk(pkg.exports);
    walk(pkg.imports);
    assert.ok(targets.length >= 5);
    for (const target of targets) assert.ok(packedFiles.includes(posix.normalize(target)), `${target} is not in the tarball`);
  });

  test('the bin runs compiled code only (no tsx)', () => {
    const code = readFileSync(join(REPO, 'bin/drizzle-libsql-blob.js'), 'utf8').split('\n').filter((line) => !/^\s*(\/\/|#!)/.test(line));
    assert.deepEqual(code.filter((line) => /tsx|\.ts\b|register/.test(line)), []);
    assert.ok(code.some((line) => /import\('#cli'\)/.test(line)));
  });
});

for (const variant of VARIANTS) {
  describe(`installed in a fresh app with drizzle-orm@${variant.drizzleOrm}, @libsql/client@${variant.libsqlClient}`, () => {
    let app: string;
    let install: Ran;

    before(async () => {
      app = join(work.path, `app-${variant.drizzleOrm}`);
      await mkdir(app);
      await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'adopter-app', private: true, type: 'module' }, null, 2));
      install = await npm(
        ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `drizzle-orm@${variant.drizzleOrm}`, `@libsql/client@${variant.libsqlClient}`, `drizzle-kit@${locked('drizzle-kit')}`, `@types/node@${locked('@types/node')}`],
        app,
      );
      ok(install, 'npm install');
    });

    test('installs without engine warnings on this Node', () => {
      assert.doesNotMatch(install.stderr, /EBADENGINE/);
    });

    test('plain node: insert, flush, lose the local disk, reopen from the store and find the rows', async () => {
      const script = join(app, 'round-trip.mjs');
      await writeFile(
        script,
        `import { drizzle, directoryStore } from 'drizzle-libsql-blob';
import { sql } from 'drizzle-orm';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { rm } from 'node:fs/promises';

const notes = sqliteTable('notes', { id: integer('id').primaryKey(), body: text('body').notNull() });
const options = {
  connection: { url: 'file:./data/app.db' },
  schema: { notes },
  store: directoryStore({ dir: './backups' }),
  log: false,
  shutdown: { signals: false },
};
const first = await drizzle(options);
await first.run(sql\`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)\`);
await first.insert(notes).values([{ body: 'one' }, { body: 'two' }]);
const flushed = await first.$sync.flush();
await first.$sync.close();
await rm('./data', { recursive: true }); // the container's disk is gone
const second = await drizzle(options);
const rows = await second.select().from(notes).orderBy(notes.id);
const restoredFrom = second.$sync.status().restoredFrom?.seq ?? null;
await second.$sync.close();
console.log(JSON.stringify({ seq: flushed?.seq ?? null, restoredFrom, rows }));
`,
      );
      const result = await run(process.execPath, [script], app);
      ok(result, 'round-trip.mjs');
      const out = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { seq: number | null; restoredFrom: number | null; rows: unknown };
      assert.deepEqual(out.rows, [{ id: 1, body: 'one' }, { id: 2, body: 'two' }]);
      assert.ok(out.seq !== null && out.restoredFrom === out.seq, `restored from seq ${out.restoredFrom}, flushed seq ${out.seq}`);
    });

    test('npx drizzle-libsql-blob: --version and list', async () => {
      const version = await run('npx', ['--no', '--', 'drizzle-libsql-blob', '--version'], app);
      ok(version, 'drizzle-libsql-blob --version');
      assert.equal(version.stdout.trim(), (pkg as unknown as { version: string }).version);
      // The store the round trip above wrote.
      const list = await run('npx', ['--no', '--', 'drizzle-libsql-blob', 'list', '--backup-dir', './backups', '--json'], app);
      ok(list, 'drizzle-libsql-blob list');
      const listed = JSON.parse(list.stdout) as { snapshots: Array<{ seq: number }> };
      assert.ok(listed.snapshots.length >= 1, list.stdout);
    });

    test('without the optional @azure/identity, accountUrl without a credential is a CONFIG error naming the package', async () => {
      assert.equal(existsSync(join(app, 'node_modules/@azure/identity')), false, 'an optional peer should not be installed by default');
      const script = join(app, 'no-identity.mjs');
      await writeFile(
        script,
        `import { azureBlobStore, findSyncError } from 'drizzle-libsql-blob';
const store = azureBlobStore({ accountUrl: 'https://devstoreaccount1.blob.core.windows.net', container: 'backups' });
try {
  await store.probe();
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  const sync = findSyncError(error);
  console.log(JSON.stringify({ code: sync?.code ?? null, message: sync?.message ?? String(error) }));
}
`,
      );
      const result = await run(process.execPath, [script], app);
      ok(result, 'no-identity.mjs');
      const out = JSON.parse(result.stdout.trim()) as { code: string; message: string };
      assert.equal(out.code, 'CONFIG', out.message);
      assert.match(out.message, /npm install @azure\/identity/);
    });

    test("strict tsc over README.md's ts examples, against the installed package", async () => {
      // Every ```ts block, also those indented inside a list item (the indentation is removed).
      const blocks = [...readFileSync(join(REPO, 'README.md'), 'utf8').matchAll(/^( *)```ts\n([\s\S]*?)^\1```$/gm)].map((m) =>
        m[2]!.split('\n').map((line) => line.slice(m[1]!.length)).join('\n'),
      );
      assert.ok(blocks.length >= 1, 'README.md has no ```ts blocks');
      const dir = join(app, 'readme');
      await mkdir(dir);
      await writeFile(
        join(dir, 'schema.ts'),
        `import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';\nexport const notes = sqliteTable('notes', { id: integer('id').primaryKey(), body: text('body').notNull() });\n`,
      );
      // `export {}` keeps a block that imports nothing a module (top-level await, its own scope).
      await Promise.all(blocks.map((code, i) => writeFile(join(dir, `example-${i + 1}.ts`), `${code}\nexport {};\n`)));
      // skipLibCheck: drizzle-orm's own declarations for the drivers an app did not install (mysql2, gel, ...)
      // do not check; the examples' use of our types and drizzle's is what this proves.
      await writeFile(
        join(app, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: true, types: ['node'] },
          include: ['readme/*.ts'],
        }),
      );
      const result = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], app);
      ok(result, `tsc over ${blocks.length} README blocks (in ${dir})`);
    });

    test('the deploy flow with packaged commands only: an empty store, then a new disk on a non-empty store', async () => {
      // restore --if-exists && drizzle-kit migrate && node seed.mjs && snapshot && node server.mjs, as a
      // container's start script runs it ("Deploying with drizzle-kit migrations" in README.md).
      const dir = join(app, 'deploy');
      const storeDir = join(app, 'deploy-store');
      await mkdir(dir);
      await cp(join(REPO, 'test/fixtures/migrations'), join(dir, 'migrations'), { recursive: true });
      await writeFile(join(dir, 'drizzle.config.ts'), `export default { dialect: 'turso', out: './migrations', dbCredentials: { url: 'file:./data/app.db' } };\n`);
      await writeFile(
        join(dir, 'seed.mjs'),
        `import { createClient } from '@libsql/client';
const client = createClient({ url: 'file:./data/app.db' });
const result = await client.execute("INSERT OR IGNORE INTO notes (id, body) VALUES (1, 'welcome'), (2, 'getting started')");
console.log('seeded ' + result.rowsAffected);
client.close();
`,
      );
      await writeFile(
        join(dir, 'server.mjs'),
        `import { drizzle, directoryStore } from 'drizzle-libsql-blob';
const db = await drizzle({ connection: { url: 'file:./data/app.db' }, store: directoryStore({ dir: process.env.BACKUP_DIR }), shutdown: { signals: false }, log: false });
const rows = await db.all('SELECT body FROM notes ORDER BY id');
await db.$sync.close();
console.log('serving ' + JSON.stringify(rows.map((r) => r.body)));
`,
      );
      const env: NodeJS.ProcessEnv = { ...cleanEnv, BACKUP_DIR: storeDir };
      for (const key of Object.keys(env)) if (/^AZURE_STORAGE_|^(DATABASE_URL|SKIP_RESTORE|RESTORE_MODE)$/.test(key)) delete env[key];
      const steps: Array<[string, string[]]> = [
        ['npx', ['--no', '--', 'drizzle-libsql-blob', 'restore', '--if-exists']],
        ['npx', ['--no', '--', 'drizzle-kit', 'migrate']],
        [process.execPath, ['seed.mjs']],
        ['npx', ['--no', '--', 'drizzle-libsql-blob', 'snapshot']],
        [process.execPath, ['server.mjs']],
      ];
      const deploy = async (): Promise<string[]> => {
        const outputs: string[] = [];
        for (const [file, args] of steps) {
          const result = await run(file, args, dir, 120_000, env);
          ok(result, [file, ...args].join(' '));
          outputs.push(result.stdout);
        }
        return outputs;
      };
      const manifestSeq = () => (JSON.parse(readFileSync(join(storeDir, 'manifest.json'), 'utf8')) as { seq: number }).seq;

      assert.equal(existsSync(join(dir, 'data')), false);
      const first = await deploy();
      assert.match(first[2]!, /^seeded 2$/m);
      assert.match(first[4]!, /^serving \["welcome","getting started"\]$/m);
      assert.equal(manifestSeq(), 1);

      await rm(join(dir, 'data'), { recursive: true }); // a new machine: the disk is gone, the store is not
      const second = await deploy();
      assert.match(second[2]!, /^seeded 0$/m, 'the restored file already holds the seed');
      assert.match(second[4]!, /^serving \["welcome","getting started"\]$/m);
      assert.equal(manifestSeq(), 1, 'nothing changed: nothing uploaded');
    });

    test('plain node: migrations { folder, apply: true } migrates and labels restore points; old code on the newer schema is SCHEMA_AHEAD; npx restore --before-migration gives the old schema', async () => {
      const dir = join(app, 'migrations-option');
      await mkdir(dir);
      await cp(join(REPO, 'test/fixtures/migrations'), join(dir, 'one'), { recursive: true });
      await cp(join(REPO, 'test/fixtures/migrations'), join(dir, 'two'), { recursive: true });
      await writeFile(join(dir, 'two', '0001_tags.sql'), 'ALTER TABLE `notes` ADD `tags` text;');
      const journal = JSON.parse(readFileSync(join(dir, 'two', 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ when: number; tag: string }> };
      journal.entries.push({ ...journal.entries[0]!, idx: 1, when: journal.entries[0]!.when + 1000, tag: '0001_tags' } as never);
      await writeFile(join(dir, 'two', 'meta', '_journal.json'), JSON.stringify(journal));
      await writeFile(
        join(dir, 'start.mjs'),
        `import { drizzle, directoryStore, findSyncError } from 'drizzle-libsql-blob';
const folder = process.argv[2];
try {
  const db = await drizzle({ connection: { url: 'file:./data/app.db' }, store: directoryStore({ dir: './backups' }), log: false, shutdown: { signals: false }, migrations: { folder, apply: true } });
  await db.run("INSERT INTO notes (body) VALUES ('from ' || '" + folder + "')");
  await db.$sync.flush();
  const schema = db.$sync.status().lastSnapshot?.schema ?? null;
  await db.$sync.close();
  console.log(JSON.stringify({ schema }));
} catch (error) {
  console.log(JSON.stringify({ code: findSyncError(error)?.code ?? null, message: String(error) }));
}
`,
      );
      const start = async (folder: string) => {
        const result = await run(process.execPath, ['start.mjs', folder], dir);
        ok(result, `start.mjs ${folder}`);
        return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { schema?: { migrations: number; tag?: string }; code?: string; message?: string };
      };
      assert.deepEqual((await start('./one')).schema?.tag, '0000_init');
      const two = await start('./two');
      assert.deepEqual([two.schema?.migrations, two.schema?.tag], [2, '0001_tags']);
      const old = await start('./one');
      assert.equal(old.code, 'SCHEMA_AHEAD', old.message);
      assert.match(old.message!, /migration 2 \(0001_tags/);
      const restored = await run('npx', ['--no', '--', 'drizzle-libsql-blob', 'restore', '--backup-dir', './backups', '--db', './wiped/app.db', '--before-migration', '0001_tags', '--migrations', './two'], dir);
      ok(restored, 'drizzle-libsql-blob restore --before-migration');
      const columns = await run(process.execPath, ['--input-type=module', '-e', "import { createClient } from '@libsql/client'; const c = createClient({ url: 'file:./wiped/app.db' }); console.log(JSON.stringify((await c.execute('PRAGMA table_info(notes)')).rows.map((r) => r[1]))); c.close();"], dir);
      ok(columns, 'read the restored file');
      assert.deepEqual(JSON.parse(columns.stdout.trim()), ['id', 'body'], 'the schema before 0001_tags');
    });

    test('npm ls --omit=dev: no fastify, one drizzle-orm', async () => {
      const result = await npm(['ls', '--omit=dev', '--all'], app);
      ok(result, 'npm ls');
      assert.doesNotMatch(result.stdout, /fastify/);
      const drizzleOrm = result.stdout.split('\n').filter((line) => /drizzle-orm@/.test(line) && !/deduped/.test(line));
      assert.equal(drizzleOrm.length, 1, result.stdout);
      assert.deepEqual(await findPackages(join(app, 'node_modules'), 'drizzle-orm'), [join(app, 'node_modules/drizzle-orm')]);
    });
  });
}

/** Every installed copy of a package under a node_modules tree (nested ones included). */
async function findPackages(nodeModules: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dir: string): Promise<void> => {
    if (existsSync(join(dir, name, 'package.json'))) found.push(join(dir, name));
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const scopes = entry.name.startsWith('@') ? (await readdir(join(dir, entry.name), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => join(dir, entry.name, e.name)) : [join(dir, entry.name)];
      for (const pkgDir of scopes) if (existsSync(join(pkgDir, 'node_modules'))) await visit(join(pkgDir, 'node_modules'));
    }
  };
  await visit(nodeModules);
  return found.map((p) => p).sort((a, b) => dirname(a).length - dirname(b).length);
}
