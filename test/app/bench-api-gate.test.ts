/**
 * The API gate can fail and can pass: bench/run.ts --only api exits non-zero and names the failing routes
 * when the reference server delays every request by an artificial 250 ms (bench/api-delay.ts, preloaded
 * by the bench only), and exits 0 on the same run without it. 10k rows, 3 s per phase (a latency gate: on a machine loaded far beyond its cores the no-delay run can miss the budget too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_READ_ROUTES, API_WRITE_ROUTES } from '../../bench/api.ts';
import { runBench as runBenchScript } from '../helpers/bench.ts';

function runBench(extra: string[], out: string): Promise<{ code: number | null; output: string }> {
  return runBenchScript(['--ci', '--sizes', '10k', '--only', 'api', '--api-seconds', '3', '--out', out, ...extra]);
}

interface Report {
  checks: { name: string; pass: boolean; gating: boolean; value: string }[];
  api: { routes: { route: string; requests: number }[]; writes: { route: string; requests: number; errors: number }[] };
}

test('bench API gate: an artificial 250 ms per request fails the p99 budget, no delay passes', { timeout: 120_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'bench-api-gate-'));
  try {
    const slow = await runBench(['--artificial-delay-ms', '250'], out);
    assert.notEqual(slow.code, 0, `expected a failing exit code, got ${slow.code}:\n${slow.output}`);
    assert.match(slow.output, /GATE FAIL \[10k\] API GET \/api\/documents\/:id p99 \(idle\): \d+ ms/);
    assert.match(slow.output, /GATE FAIL \[10k\] API PUT \/api\/documents\/:id p99 \(with writes \+ snapshots\): \d+ ms/);
    const slowReport = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as Report;
    assert.ok(slowReport.checks.find((c) => c.name === 'API gate: every route ran')?.pass, 'the slow run still ran every route: it fails on latency, not coverage');

    const fast = await runBench([], out);
    assert.equal(fast.code, 0, `expected exit 0 without the delay:\n${fast.output}`);
    assert.match(fast.output, /Gate: every query and API p99 of ours ≤ 200 ms — PASS/);
    const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as Report;
    // Every route served requests, the writers' without an error, and cursor pages were followed.
    assert.deepEqual(new Set(report.api.routes.filter((r) => r.requests > 0).map((r) => r.route)), new Set(API_READ_ROUTES));
    assert.deepEqual(report.api.writes.map((w) => [w.route, w.requests > 0, w.errors]), API_WRITE_ROUTES.map((r) => [r, true, 0]));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
