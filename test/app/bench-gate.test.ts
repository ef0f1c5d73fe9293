/**
 * The benchmark gate can fail and can pass: bench/run.ts exits non-zero and names the failing p99 when
 * every query of ours is slowed by an artificial 250 ms, and exits 0 on the same run without it, having
 * gated every query the app ships (bench/queries.ts GATED_QUERIES).
 * Queries only, 10k rows (the dataset is cached under bench/results/tmp/ after the first build).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATED_QUERIES } from '../../bench/queries.ts';
import { runBench as runBenchScript } from '../helpers/bench.ts';

function runBench(extra: string[], out: string): Promise<{ code: number | null; output: string }> {
  return runBenchScript(['--ci', '--sizes', '10k', '--iterations', '50', '--only', 'queries', '--out', out, ...extra]);
}

test('bench gate: an artificial 250 ms delay fails the p99 budget, no delay passes', { timeout: 60_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'bench-gate-'));
  try {
    const slow = await runBench(['--artificial-delay-ms', '250'], out);
    assert.notEqual(slow.code, 0, `expected a failing exit code, got ${slow.code}:\n${slow.output}`);
    assert.match(slow.output, /GATE FAIL \[10k\] query getById p99 \(ours\): \d+(\.\d+)? ms/);
    const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as { checks: { name: string; pass: boolean; gating: boolean }[] };
    assert.ok(report.checks.some((c) => c.gating && !c.pass && c.name.includes('p99')), 'latest.json records the failing p99 check');

    const fast = await runBench([], out);
    assert.equal(fast.code, 0, `expected exit 0 without the delay:\n${fast.output}`);
    assert.match(fast.output, /Gate: every query and API p99 of ours ≤ 200 ms — PASS/);
    // The gate measured every query the app ships, not a subset.
    const fastReport = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as { checks: { name: string; pass: boolean; gating: boolean; size: string }[] };
    const ran = new Set(fastReport.checks.filter((c) => c.gating && c.size === '10k').map((c) => c.name));
    for (const q of GATED_QUERIES) assert.ok(ran.has(`query ${q} p99 (ours)`), `no gated check for ${q}`);
    assert.ok(fastReport.checks.find((c) => c.name === 'query gate: every gated query ran')?.pass);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
