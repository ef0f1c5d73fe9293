/**
 * Litestream v0.3.13 as an external baseline on the same Azurite: `litestream replicate` of a copy of
 * the database to an abs:// replica (endpoint overridden to Azurite), wait for its generation snapshot,
 * then time `litestream restore` into a new path. The binary comes from the npm package
 * @flydotio/litestream-linux-x64 (it ships v0.3.13), installed with `npm i --no-save` into
 * bench/results/tmp/litestream/ on first use; it is not a dependency of the project.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import Database from 'better-sqlite3';
import { deletePrefix } from './azure.ts';
import { CACHE_DIR, type Dataset } from './dataset.ts';
import { copyDb, sleep } from './drivers.ts';

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
}

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

export async function runLitestream(bin: string, version: string, az: { connectionString: string; blobEndpoint: string; accountName: string; accountKey: string }, dataset: Dataset, work: string, label: string, probeId: string): Promise<LitestreamResult> {
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
  };
}
