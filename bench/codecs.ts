/**
 * Snapshot codec benchmark: builds a deterministic ~100 MB SQLite database, snapshots it with
 * VACUUM INTO (as the snapshot worker does), then times every codec in both directions against a
 * plain fs.copyFile baseline.
 *
 *   node --conditions=source --import tsx bench/codecs.ts [--rows N]
 *
 * Each measurement runs in a fresh child process so that peak RSS (VmHWM minus RSS just
 * before the operation) belongs to that operation alone. Every timing includes an fsync of the output:
 * compressFile/decompressFile sync their lz4 output but not gzip/none, so timing the calls alone
 * would penalise lz4 for durability the others skip. Codec times also include sha256 of the raw bytes.
 */
import { execFileSync, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient, type InStatement } from '@libsql/client';
import { compressFrame, decompressFrame } from 'lz4-napi';
import { compressFile, decompressFile, type Codec } from '../src/sync/codec.ts';

type Method = Codec | 'copy' | 'lz4-frame';
type Direction = 'compress' | 'decompress';
interface Job { method: Method; direction: Direction; src: string; dst: string }
interface Sample { callMs: number; fsyncMs: number; totalMs: number; rssDeltaBytes: number }

const METHODS: readonly Method[] = ['copy', 'none', 'lz4', 'gzip', 'lz4-frame'];
const REPS = 3;
const MB = 1024 * 1024;

// ---- child: run one operation, report timing and memory ------------------------------------------

async function runOp({ method, direction, src, dst }: Job): Promise<void> {
  if (method === 'copy') return copyFile(src, dst);
  if (method !== 'lz4-frame') {
    await (direction === 'compress' ? compressFile(src, dst, method) : decompressFile(src, dst, method));
  } else {
    const input = await readFile(src);
    await writeFile(dst, direction === 'compress' ? await compressFrame(input) : await decompressFrame(input));
  }
}

/** Peak RSS in bytes. On Linux the peak is first reset ('5' > clear_refs): getrusage's maxRSS would
 * otherwise carry the forking parent's peak into the child. */
function peakRss(reset = false): number {
  try {
    if (reset) writeFileSync('/proc/self/clear_refs', '5');
    return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
  } catch {
    return process.resourceUsage().maxRSS * 1024;
  }
}

async function child(job: Job): Promise<void> {
  peakRss(true);
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  await runOp(job);
  const t1 = performance.now();
  await fsyncFile(job.dst);
  const t2 = performance.now();
  const sample: Sample = { callMs: t1 - t0, fsyncMs: t2 - t1, totalMs: t2 - t0, rssDeltaBytes: Math.max(0, peakRss() - rssBefore) };
  process.send!(sample);
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.sync().finally(() => handle.close());
}

function measure(job: Job): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const proc = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify(job)]);
    let sample: Sample | undefined;
    proc.on('message', (m) => (sample = m as Sample));
    proc.on('error', reject);
    proc.on('exit', (code) => (code === 0 && sample ? resolve(sample) : reject(new Error(`${job.method} ${job.direction} exited ${code}`))));
  });
}

// ---- database ---------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('calm bright stormy quiet harbor forest neon midnight archive velvet signal ember crisp hollow lantern ' +
  'drift copper meadow static orbit linen rust glacier tender bold whisper canyon saffron echo pixel marble ' +
  'thunder amber quartz willow cobalt riddle summit paper tide spark violet granite hush fable ivory raven').split(' ');
const TYPES = ['persona', 'template', 'mood', 'scenario'] as const;

/** Builds `rows` documents in `dir`/live.db, then snapshots it to `raw` with VACUUM INTO and fsyncs it. */
async function buildSnapshot(dir: string, raw: string, rows: number): Promise<void> {
  const rand = mulberry32(0x5eed);
  const int = (n: number): number => Math.floor(rand() * n);
  const word = (): string => WORDS[int(WORDS.length)]!;
  const words = (n: number): string => Array.from({ length: n }, word).join(' ');
  const hex = (n: number): string => Array.from({ length: n }, () => int(16).toString(16)).join('');
  const live = join(dir, 'live.db');
  const client = createClient({ url: pathToFileURL(live).href });
  await client.execute(`CREATE TABLE documents (id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL,
    content TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`);
  const [perStatement, perTransaction] = [200, 10_000];
  let created = 1_700_000_000_000;
  for (let start = 0; start < rows; start += perTransaction) {
    const statements: InStatement[] = [];
    for (let s = start; s < Math.min(rows, start + perTransaction); s += perStatement) {
      const count = Math.min(perStatement, rows - s);
      const args: (string | number)[] = [];
      for (let i = 0; i < count; i++) {
        created += int(60_000);
        const content = JSON.stringify({
          title: words(3 + int(4)), tags: Array.from({ length: 2 + int(4) }, word), description: words(12 + int(12)),
          settings: { temperature: +(rand() * 2).toFixed(2), maxTokens: 64 * (1 + int(64)), seed: int(1e9), enabled: rand() < 0.7 },
          stats: { uses: int(100_000), rating: +(rand() * 5).toFixed(3), lastScore: int(1e6) / 100 },
        });
        args.push(`${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`, TYPES[int(TYPES.length)]!, `${words(2)} ${int(10_000)}`,
          content, 1 + int(20), created, created + int(90 * 86_400_000));
      }
      statements.push({ sql: `INSERT INTO documents VALUES ${Array(count).fill('(?,?,?,?,?,?,?)').join(',')}`, args });
    }
    await client.batch(statements, 'write');
  }
  await client.batch(['CREATE INDEX documents_type ON documents(type)', 'CREATE INDEX documents_name ON documents(name)',
    'CREATE INDEX documents_updated_at ON documents(updated_at)'], 'write');
  await client.execute({ sql: 'VACUUM INTO ?', args: [raw] });
  client.close();
  await rm(live);
  await fsyncFile(raw); // so pending writeback does not land inside the first measurements
}

// ---- parent -----------------------------------------------------------------------------------------

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sha256 = async (path: string): Promise<string> => {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
};
const summarize = (samples: Sample[]) => {
  const ms = samples.map((s) => s.totalMs), rss = samples.map((s) => s.rssDeltaBytes / MB);
  return { samples, medianMs: median(ms), maxMs: Math.max(...ms), medianRssMB: median(rss), maxRssMB: Math.max(...rss) };
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rows: { type: 'string', default: '190000' }, child: { type: 'string' } } });
  if (values.child) return child(JSON.parse(values.child) as Job);
  const rows = Number(values.rows);
  if (!Number.isInteger(rows) || rows <= 0) throw new Error(`--rows must be a positive integer, got ${values.rows}`);

  const dir = await mkdtemp(join(tmpdir(), 'codec-bench-'));
  try {
    const raw = join(dir, 'raw.db');
    const t = performance.now();
    await buildSnapshot(dir, raw, rows);
    const rawBytes = (await stat(raw)).size;
    const rawSha = await sha256(raw);
    console.error(`built ${rows} rows -> ${(rawBytes / MB).toFixed(1)} MiB snapshot in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const results = [];
    for (const method of METHODS) {
      const packed = join(dir, `packed.${method}`);
      const restored = join(dir, `restored.${method}.db`);
      const runs: Record<Direction, Sample[]> = { compress: [], decompress: [] };
      for (let rep = 0; rep < REPS; rep++) {
        await rm(packed, { force: true });
        runs.compress.push(await measure({ method, direction: 'compress', src: raw, dst: packed }));
      }
      for (let rep = 0; rep < REPS; rep++) {
        await rm(restored, { force: true });
        runs.decompress.push(await measure({ method, direction: 'decompress', src: packed, dst: restored }));
        if ((await sha256(restored)) !== rawSha) throw new Error(`${method}: restored file differs from the original`);
      }
      const compressedBytes = (await stat(packed)).size;
      await Promise.all([rm(packed), rm(restored)]);
      results.push({ method, compressedBytes, ratio: rawBytes / compressedBytes,
        compress: summarize(runs.compress), decompress: summarize(runs.decompress) });
      console.error(`${method} done`);
    }

    const copy = results.find((r) => r.method === 'copy')!;
    const mbps = (ms: number): string => (rawBytes / MB / (ms / 1000)).toFixed(0);
    const lines = [
      `Snapshot: ${rows} rows, ${(rawBytes / MB).toFixed(1)} MiB (VACUUM INTO), Node ${process.version}, ${REPS} reps, times include fsync of the output.`,
      '',
      '| method | size MiB | ratio | compress MiB/s med (worst) | compress ×copy | decompress MiB/s med (worst) | decompress ×copy | peak RSS Δ MiB compress / decompress (max) |',
      '|---|--:|--:|--:|--:|--:|--:|--:|',
      ...results.map((r) => `| ${r.method} | ${(r.compressedBytes / MB).toFixed(1)} | ${r.ratio.toFixed(2)} | ` +
        `${mbps(r.compress.medianMs)} (${mbps(r.compress.maxMs)}) | ${(r.compress.medianMs / copy.compress.medianMs).toFixed(2)} | ` +
        `${mbps(r.decompress.medianMs)} (${mbps(r.decompress.maxMs)}) | ${(r.decompress.medianMs / copy.decompress.medianMs).toFixed(2)} | ` +
        `${r.compress.medianRssMB.toFixed(0)} (${r.compress.maxRssMB.toFixed(0)}) / ${r.decompress.medianRssMB.toFixed(0)} (${r.decompress.maxRssMB.toFixed(0)}) |`),
      '',
      '×copy = median time / median fs.copyFile time of the same file (lower is better). Codec rows include sha256 of the raw bytes.',
    ];
    console.log(lines.join('\n'));

    const outDir = fileURLToPath(new URL('./results/', import.meta.url));
    await mkdir(outDir, { recursive: true });
    // The commit measured (bench/readme.ts refuses results that do not name theirs).
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: fileURLToPath(new URL('../', import.meta.url)), encoding: 'utf8' }).trim();
    const srcUncommitted = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: fileURLToPath(new URL('../', import.meta.url)), encoding: 'utf8' }).trim() !== '';
    const meta = { date: new Date().toISOString(), commit, srcUncommitted, node: process.version, platform: `${process.platform}-${process.arch}` };
    await writeFile(join(outDir, 'codecs.json'), `${JSON.stringify({ ...meta, rows, rawBytes, reps: REPS, timesIncludeFsync: true, results }, null, 2)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
