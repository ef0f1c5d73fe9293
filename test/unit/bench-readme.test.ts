/**
 * bench/readme.ts: the README's benchmark blocks are a pure function of bench/results/*.json (the same
 * results give the same README whatever the file order), a results file that does not name its commit is
 * refused, and `--check` exits non-zero when the README differs from what the results generate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseResults, renderReadme, ResultsError, type ResultsFile } from '../../bench/readme.ts';
import { spawnTs } from '../helpers/child.ts';

const summary = (p50: number, p99: number) => ({ n: 100, mean: p50, p50, p95: p99, p99, max: p99 });

/** A small run in bench/run.ts's format: one size with writes and a Litestream cold start. */
function run(commit: string | undefined, date: string, coldStartMs: number): unknown {
  return {
    meta: { date, node: 'v20.0.0', platform: 'linux-x64', cpus: 2, args: { ci: true, sizes: ['100k'] }, elapsedMs: 1, library: { build: 'dist', srcHash: 'x', commit, srcUncommitted: false }, load: {} },
    sizes: [{
      label: '100k',
      rows: 100_000,
      dataset: { bytes: 1, buildMs: 0, cached: true },
      synchronous: 'NORMAL',
      writes: [
        { op: 'insert', driver: 'ours', summary: summary(0.2, 0.5) },
        { op: 'insert', driver: 'drizzle-orm/libsql', summary: summary(0.19, 0.5) },
      ],
      litestream: {
        version: 'v0.3.13', snapshotUploadMs: 1, bytesUploaded: 2 << 20, blobs: 2, replicateCpuMs: 1, restoreMs: 300, restoreCpuMs: 1, firstQueryMs: 301, restoredBytes: 1,
        coldStart: {
          reps: 1,
          build: 'dist',
          ours: [{ wallMs: coldStartMs, sinceProcessStartMs: coldStartMs - 10, importMs: 200, hydrateMs: 300, queryMs: 1, peakRssAboveIdle: 40 << 20 }],
          litestream: [{ wallMs: 500, sinceProcessStartMs: 490, importMs: 150, hydrateMs: 250, queryMs: 2 }],
        },
      },
    }],
    checks: [
      { name: 'insert p50 overhead ours / drizzle-orm/libsql', size: '100k', value: '1.05×', target: '≤ 1.03×', pass: false, gating: false },
      { name: 'empty disk → first query in a fresh process, ours / Litestream restore + open (medians of 1)', size: '100k', value: `${coldStartMs} / 500 ms`, target: '≤ 1.0×', pass: coldStartMs <= 500, gating: false },
    ],
  };
}

const README = ['# x', '', 'prose stays', '', '<!-- bench:cold-start -->', 'old', '<!-- /bench -->', '', 'between', '', '<!-- bench:writes -->', '<!-- /bench -->', '', 'end', ''].join('\n');

test('bench:readme renders the same README from the same results, whatever their order', () => {
  const files: ResultsFile[] = [parseResults('bench/results/a.json', run('abc1234', '2026-11-30T10:00:00.000Z', 450)), parseResults('bench/results/b.json', run('def5678', '2026-11-30T12:00:00.000Z', 600))];
  const once1 = renderReadme(README, files);
  assert.equal(renderReadme(README, [...files].reverse()), once1);
  assert.equal(renderReadme(once1, files), once1, 'regenerating a generated README changes nothing');
  // The newest run wins, and the block says which commit and date its rows come from.
  assert.match(once1, /commit def5678, 2026-11-30T12:00:00\.000Z/);
  assert.doesNotMatch(once1, /abc1234/);
  assert.match(once1, /\| 100k \| empty disk → first query, fresh process \(median of 1\) \| 600 ms \| 500 ms \| 1\.20× \|/);
  assert.match(once1, /\| insert \| 100k \| NORMAL \| 0\.200 \| 0\.190 \| 1\.05× \| ≤ 1\.03× \| FAIL \|/);
  assert.match(once1, /^prose stays$/m);
  assert.match(once1, /^between$/m);
  assert.doesNotMatch(once1, /^old$/m);
});

test('bench:readme refuses a results file that does not name its commit', () => {
  assert.throws(() => parseResults('bench/results/latest.json', run(undefined, '2026-11-30T10:00:00.000Z', 450)), (e: unknown) => e instanceof ResultsError && /latest\.json does not name the commit/.test(e.message));
  assert.throws(() => parseResults('bench/results/latest.json', run('n/a', '2026-11-30T10:00:00.000Z', 450)), ResultsError);
  assert.throws(() => parseResults('bench/results/codecs.json', { date: '2026-11-23', results: [] }), /codecs\.json does not name the commit/);
  assert.equal(parseResults('bench/results/codecs.json', { date: '2026-11-23', commit: 'abc1234', results: [] }).commit, 'abc1234');
});

async function readmeCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawnTs('bench/readme.ts', args);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

test('bench:readme --check exits non-zero when the README differs from the results, 2 on a results file without a commit', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-readme-'));
  try {
    const results = join(dir, 'results');
    const readme = join(dir, 'README.md');
    await mkdir(results);
    await writeFile(join(results, 'latest.json'), JSON.stringify(run('abc1234', '2026-11-30T10:00:00.000Z', 450)));
    await writeFile(readme, README);
    const args = ['--results', results, '--readme', readme];

    assert.equal((await readmeCli([...args, '--check'])).code, 1, 'a README with stale blocks fails the check');
    assert.equal(await readFile(readme, 'utf8'), README, '--check writes nothing');
    assert.equal((await readmeCli(args)).code, 0);
    const generated = await readFile(readme, 'utf8');
    assert.notEqual(generated, README);
    assert.equal((await readmeCli([...args, '--check'])).code, 0, 'the regenerated README passes the check');

    // Drift: a hand edit inside a block, or results that changed, fail the check.
    await writeFile(readme, generated.replace('1.05×', '1.01×'));
    const edited = await readmeCli([...args, '--check']);
    assert.equal(edited.code, 1);
    assert.match(edited.stderr, /differs from what .* generate: run `npm run bench:readme`/);
    await writeFile(readme, generated);
    await writeFile(join(results, 'latest.json'), JSON.stringify(run('abc1234', '2026-11-30T10:00:00.000Z', 470)));
    assert.equal((await readmeCli([...args, '--check'])).code, 1);

    await writeFile(join(results, 'old.json'), JSON.stringify(run(undefined, '2026-11-29T10:00:00.000Z', 450)));
    const refused = await readmeCli([...args, '--check']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /old\.json does not name the commit/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
