/**
 * Litestream v0.3.13 as an external baseline on the same Azurite: `litestream replicate` of a copy of
 * the database to an abs:// replica (endpoint overridden to Azurite), wait for its generation snapshot,
 * then time `litestream restore` into a new path. The binary comes from the npm package
 * @flydotio/litestream-linux-x64 (it ships v0.3.13), installed with `npm i --no-save` into
 * bench/results/tmp/litestream/ on first use; it is not a dependency of the project.
 */
import { execFile, spawn } from 'node:child_process';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import Database from 'better-sqlite3';
import { deletePrefix, oursStore } from './azure.ts';
import { CACHE_DIR, type Dataset } from './dataset.ts';
import { copyDb, NO_AUTO_SNAPSHOT, openOurs, sleep } from './drivers.ts';
import { LIB_KIND, LIB_URL } from './lib.ts';
import { median } from './stats.ts';

const PACKAGE = '@flydotio/litestream-linux-x64@1.0.1';
const EXPECTED_VERSION = 'v0.3.13';
const CONTAINER = 'litestream';

export interface LitestreamResult {
  version: string;
  /** Start of `replicate` until the generation's snapshot blob is listed. */
  snapshotUploadMs: number;
  /** Sum of blob sizes under the replica path (snapshot + WAL segments). */
  bytesUploaded: number;
  blobs: number;
  replicateCpuMs: number;
  restoreMs: number;
  restoreCpuMs: number;
  /** restore + open + one primary-key query. */
  firstQueryMs: number;
  restoredBytes: number;
  /** Empty disk → first query in a fresh process, ours and Litestream interleaved (absent in results made before it existed). */
  coldStart?: ColdStart;
}

/** One fresh process, from spawn to its "first query answered" line (wallMs, the parent's clock) and its own split. */
export interface ColdStartRun {
  wallMs: number;
  /** The child's performance.now() at the answer: its time since its own start (Node's boot included). */
  sinceProcessStartMs: number;
  /** import of the library (ours) or of @libsql/client + drizzle-orm (Litestream). */
  importMs: number;
  /** ours: drizzle() over the empty folder (restore + open); Litestream: the `litestream restore` child process. */
  hydrateMs: number;
  /** The first SELECT (Litestream: createClient + drizzle() + the SELECT). */
  queryMs: number;
  /** ours: VmHWM minus VmRSS after imports (VmHWM reset there), read after close(). */
  peakRssAboveIdle?: number | null;
}

export interface ColdStart {
  reps: number;
  /** How ours' child ran the library: 'dist' = plain node on the compiled build (what users run). */
  build: 'dist' | 'source';
  ours: ColdStartRun[];
  litestream: ColdStartRun[];
  /** Fresh processes that only import @azure/storage-blob (bench/cold-start/sdk-import.mjs); absent in older results. */
  sdkImport?: ColdStartRun[];
}

const COLD_START_DIR = fileURLToPath(new URL('./cold-start/', import.meta.url));

/** Spawns `node script job`, timing from spawn to the child's first-query line; resolves once it exits. */
function coldStartChild(script: string, job: object, execArgv: string[] = []): Promise<ColdStartRun> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [...execArgv, join(COLD_START_DIR, script), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'], cwd: COLD_START_DIR });
    let run: ColdStartRun | undefined;
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const m = JSON.parse(line) as { event: string } & Partial<ColdStartRun>;
        if (m.event === 'first-query') run = { wallMs: performance.now() - t0, sinceProcessStartMs: m.sinceProcessStartMs!, importMs: m.importMs!, hydrateMs: m.hydrateMs!, queryMs: m.queryMs! };
        else if (m.event === 'closed' && run) run.peakRssAboveIdle = m.peakRssAboveIdle ?? null;
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 && run ? resolvePromise(run) : reject(new Error(`${script} exited ${code}: ${err.trim()}`))));
  });
}

/**
 * Empty disk → first query in a fresh process, `reps` times each, interleaved (the order alternates):
 * ours restores `ourPrefix` in bench/cold-start/ours.mjs, Litestream restores its replica in
 * bench/cold-start/litestream.mjs; both into a new empty folder, the same SELECT by primary key.
 */
async function runColdStart(reps: number, work: string, ours: { connectionString: string; prefix: string }, ls: { bin: string; config: string; replicaDbPath: string }, probeId: string): Promise<ColdStart> {
  const result: ColdStart = { reps, build: LIB_KIND, ours: [], litestream: [], sdkImport: [] };
  // Plain node runs the compiled build; a source build (BENCH_LIB=source) needs tsx's loader.
  const execArgv = LIB_KIND === 'dist' ? [] : ['--conditions=source', '--import', 'tsx'];
  // Each run starts with nothing dirty in the page cache (`sync`): the previous run's 100s of MiB being
  // written back under the next one made single runs 2x slower, ours or Litestream's alike. Round -1 is
  // a warm-up of each, not recorded (the first restore after the upload ran ~2x slower for both).
  const settle = () => promisify(execFile)('sync');
  for (let r = -1; r < reps; r++) {
    const dir = join(work, `cold-${r}`);
    const record = <T>(list: T[], run: T) => void (r >= 0 && list.push(run));
    const runOurs = async () => {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await settle();
      record(result.ours, await coldStartChild('ours.mjs', { libUrl: LIB_URL, dbUrl: pathToFileURL(join(dir, 'app.db')).href, connectionString: ours.connectionString, container: 'bench', prefix: ours.prefix, probeId }, execArgv));
    };
    const runLs = async () => {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await settle();
      record(result.litestream, await coldStartChild('litestream.mjs', { bin: ls.bin, config: ls.config, replicaDbPath: ls.replicaDbPath, outPath: join(dir, 'app.db'), probeId }));
    };
    for (const step of r % 2 === 0 ? [runOurs, runLs] : [runLs, runOurs]) await step();
    if (r >= 0) result.sdkImport!.push(await coldStartChild('sdk-import.mjs', {}));
    await rm(dir, { recursive: true, force: true });
  }
  return result;
}

export const coldStartMedian = (runs: readonly ColdStartRun[], key: keyof ColdStartRun = 'wallMs'): number => median(runs.map((r) => Number(r[key])));

/** The binary, installing it on first use; throws with the reason when that is impossible here. */
export async function ensureLitestream(): Promise<{ bin: string; version: string }> {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error(`${PACKAGE} is linux-x64 only (this is ${process.platform}-${process.arch})`);
  const prefix = join(CACHE_DIR, 'litestream');
  const bin = join(prefix, 'node_modules', '@flydotio', 'litestream-linux-x64', 'litestream');
  if (!existsSync(bin)) {
    await mkdir(prefix, { recursive: true });
    await promisify(execFile)('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, PACKAGE], { timeout: 120_000 });
  }
  const { stdout } = await promisify(execFile)(bin, ['version']);
  const version = stdout.trim();
  if (version !== EXPECTED_VERSION) throw new Error(`${bin} reports ${version}, expected ${EXPECTED_VERSION}`);
  return { bin, version };
}

/** Runs a command under bash so that `times` reports the CPU the command used (user + sys of children); kill with SIGTERM (forwarded). */
export function spawnTimed(bin: string, args: string[], timesFile: string) {
  const script = `"$@" & p=$!; trap 'kill -TERM $p 2>/dev/null' TERM INT; wait $p; s=$?; if kill -0 $p 2>/dev/null; then wait $p; s=$?; fi; times > "${timesFile}"; exit $s`;
  const child = spawn('bash', ['-c', script, 'bash', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  const result = async (): Promise<{ code: number; cpuMs: number; output: string }> => {
    const code = await exited;
    const lines = (await readFile(timesFile, 'utf8').catch(() => '')).trim().split('\n');
    const secs = (lines[1] ?? '').match(/(\d+)m([\d.]+)s/g)?.map((t) => { const [, m, s] = /(\d+)m([\d.]+)s/.exec(t)!; return Number(m) * 60 + Number(s); }) ?? [];
    return { code, cpuMs: (secs.reduce((a, b) => a + b, 0)) * 1000, output };
  };
  return { child, result, output: () => output };
}

export async function runLitestream(bin: string, version: string, az: { connectionString: string; blobEndpoint: string; accountName: string; accountKey: string }, dataset: Dataset, work: string, label: string, probeId: string, o: { coldStartReps: number }): Promise<LitestreamResult> {
  const dbPath = join(work, 'litestream-live.db');
  await copyDb(dataset.path, dbPath);
  await rm(`${dbPath}-litestream`, { recursive: true, force: true });
  const replicaPath = `ls-${label}-${process.pid}`;
  const config = join(work, 'litestream.yml');
  await writeFile(config, [
    'dbs:',
    `  - path: ${dbPath}`,
    '    replicas:',
    '      - type: abs',
    `        account-name: ${az.accountName}`,
    `        account-key: ${az.accountKey}`,
    `        bucket: ${CONTAINER}`,
    `        path: ${replicaPath}`,
    `        endpoint: ${az.blobEndpoint}`,
    '        sync-interval: 1s',
    '',
  ].join('\n'));
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(CONTAINER);
  await container.createIfNotExists();
  const listBlobs = async () => {
    const out: { name: string; size: number }[] = [];
    for await (const b of container.listBlobsFlat({ prefix: `${replicaPath}/` })) out.push({ name: b.name, size: b.properties.contentLength ?? 0 });
    return out;
  };

  const t0 = performance.now();
  const replicate = spawnTimed(bin, ['replicate', '-config', config], join(work, 'replicate.times'));
  let snapshotUploadMs = NaN;
  try {
    for (;;) {
      if (replicate.child.exitCode !== null) throw new Error(`litestream replicate exited ${replicate.child.exitCode}:\n${replicate.output()}`);
      if ((await listBlobs()).some((b) => /\/snapshots\/[^/]+\.snapshot\.lz4$/.test(b.name))) break;
      if (performance.now() - t0 > 600_000) throw new Error(`no litestream snapshot after 600 s:\n${replicate.output()}`);
      await sleep(25);
    }
    snapshotUploadMs = performance.now() - t0;
    await sleep(1_500); // one more sync interval, so the WAL segment after the snapshot is up too
  } finally {
    replicate.child.kill('SIGTERM');
  }
  const rep = await replicate.result();
  const blobs = await listBlobs();
  if (rep.code !== 0 && rep.code !== 143) throw new Error(`litestream replicate exited ${rep.code}:\n${rep.output}`);

  const outPath = join(work, 'litestream-restored.db');
  for (const suffix of ['', '-wal', '-shm']) await rm(`${outPath}${suffix}`, { force: true });
  const r0 = performance.now();
  const restore = spawnTimed(bin, ['restore', '-config', config, '-o', outPath, dbPath], join(work, 'restore.times'));
  const res = await restore.result();
  const restoreMs = performance.now() - r0;
  if (res.code !== 0) throw new Error(`litestream restore exited ${res.code}:\n${res.output}`);
  const sqlite = new Database(outPath, { readonly: true });
  try {
    if (!sqlite.prepare('SELECT id FROM documents WHERE id = ?').get(probeId)) throw new Error('the restored database lacks a known row');
  } finally {
    sqlite.close();
  }
  const firstQueryMs = performance.now() - r0;
  const restoredBytes = (await stat(outPath)).size;
  await rm(outPath, { force: true });

  // Ours needs a snapshot of the same dataset in the store: one flush of a copy, then the process is gone.
  let coldStart: ColdStart | undefined;
  if (o.coldStartReps > 0) {
    const ourPrefix = `cold-${label}-${process.pid}`;
    const ourPath = join(work, 'cold-source.db');
    await copyDb(dataset.path, ourPath);
    const source = await openOurs(ourPath, oursStore(az.connectionString, ourPrefix), NO_AUTO_SNAPSHOT);
    try {
      if (!(await source.$sync.flush())) throw new Error('the cold-start source took no snapshot');
    } finally {
      await source.$sync.close();
    }
    await rm(ourPath, { force: true });
    try {
      coldStart = await runColdStart(o.coldStartReps, work, { connectionString: az.connectionString, prefix: ourPrefix }, { bin, config, replicaDbPath: dbPath }, probeId);
    } finally {
      await deletePrefix(BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('bench'), `${ourPrefix}/`);
    }
  }
  await rm(`${dbPath}-litestream`, { recursive: true, force: true });
  await deletePrefix(container, `${replicaPath}/`);
  return {
    version,
    snapshotUploadMs,
    bytesUploaded: blobs.reduce((a, b) => a + b.size, 0),
    blobs: blobs.length,
    replicateCpuMs: rep.cpuMs,
    restoreMs,
    restoreCpuMs: res.cpuMs,
    firstQueryMs,
    restoredBytes,
    coldStart,
  };
}
