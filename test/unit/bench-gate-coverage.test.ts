/**
 * The benchmark gate fails when a gated phase the run asked for measured less than a complete phase does
 * (an empty or partial gate), naming what is missing; it passes when every gated check ran and passed.
 * Pure: computeChecks on hand-made results, no benchmark is run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { API_PHASES, API_READ_ROUTES, API_WRITE_ROUTES, type ApiResult, type ApiRouteResult } from '../../bench/api.ts';
import { GATED_QUERIES, type QueryResult } from '../../bench/queries.ts';
import { computeChecks, type RunResult, type SizeResult } from '../../bench/report.ts';
import { summarize } from '../../bench/stats.ts';

const fast = summarize([1, 2, 3]);

function query(name: string): QueryResult {
  return { query: name, what: '', gated: true, driver: 'ours', summary: fast, stoppedEarly: false, planned: 3 };
}

function size(label: string, queries: readonly string[]): SizeResult {
  return { label, rows: 10_000, dataset: { bytes: 1, buildMs: 0, cached: true }, queries: queries.map(query) };
}

function route(name: string, phase: ApiRouteResult['phase']): ApiRouteResult {
  return { route: name, phase, requests: 3, rps: 1, errors: 0, latency: fast };
}

function api(omit: string[] = []): ApiResult & { size: string } {
  return {
    size: '10k',
    routes: API_PHASES.flatMap((phase) => API_READ_ROUTES.filter((r) => !omit.includes(r)).map((r) => route(r, phase))),
    writes: API_WRITE_ROUTES.filter((r) => !omit.includes(r)).map((r) => route(r, 'with writes + snapshots')),
    snapshotsDuringWrites: 1,
    deepestPage: {},
  };
}

function run(only: string[], sizes: SizeResult[], apiResult?: ApiResult & { size: string }, askedSizes = sizes.map((s) => s.label)): Omit<RunResult, 'checks'> {
  const load = { loadavg1m: 0, cpuPressureAvg60: 'n/a' };
  return {
    meta: { date: '', node: '', platform: '', cpus: 2, args: { only, sizes: askedSizes }, elapsedMs: 0, library: { build: 'source', srcHash: '', commit: '', srcUncommitted: false }, load: { start: load, end: load } },
    sizes,
    api: apiResult,
  };
}

const failing = (r: Omit<RunResult, 'checks'>) => computeChecks(r).filter((c) => c.gating && !c.pass);

test('gate coverage: a complete query and API run passes', () => {
  const checks = computeChecks(run(['queries', 'api'], [size('10k', GATED_QUERIES)], api()));
  assert.deepEqual(checks.filter((c) => c.gating && !c.pass), []);
  const coverage = checks.filter((c) => c.name.includes('gate: every'));
  assert.deepEqual(coverage.map((c) => [c.name, c.value]), [
    ['query gate: every gated query ran', `${GATED_QUERIES.length} of ${GATED_QUERIES.length} ran`],
    ['API gate: every route ran', `${API_PHASES.length * API_READ_ROUTES.length + API_WRITE_ROUTES.length} of ${API_PHASES.length * API_READ_ROUTES.length + API_WRITE_ROUTES.length} ran`],
  ]);
});

test('gate coverage: a missing or empty phase fails, naming what is missing', () => {
  const cases: { name: string; run: Omit<RunResult, 'checks'>; expect: RegExp }[] = [
    { name: 'one query missing', run: run(['queries'], [size('10k', GATED_QUERIES.filter((q) => q !== 'list updatedBefore last page'))]), expect: /missing: query list updatedBefore last page p99 \(ours\)$/ },
    { name: 'queries asked, none ran', run: run(['queries'], [size('10k', [])]), expect: /^0 of \d+ ran; missing: query getById p99/ },
    { name: 'queries asked, a size never measured', run: run(['queries'], [size('10k', GATED_QUERIES)], undefined, ['10k', '100k']), expect: /^0 of \d+ ran; missing: query getById p99/ },
    { name: 'api asked, no result', run: run(['api'], [], undefined, ['10k']), expect: /^0 of \d+ ran; missing: API GET \/api\/documents page 1 p99 \(idle\)/ },
    { name: 'api without DELETE', run: run(['api'], [], api(['DELETE /api/documents/:id']), ['10k']), expect: /missing: API DELETE \/api\/documents\/:id p99 \(with writes \+ snapshots\)$/ },
    { name: 'api without the cursor pages of one filter', run: run(['api'], [], api(['GET /api/documents?updatedAfter= cursor pages']), ['10k']), expect: /missing: API GET \/api\/documents\?updatedAfter= cursor pages p99 \(idle\), API GET \/api\/documents\?updatedAfter= cursor pages p99 \(with writes \+ snapshots\)$/ },
  ];
  for (const c of cases) {
    const failed = failing(c.run);
    assert.equal(failed.length, 1, `${c.name}: ${JSON.stringify(failed)}`);
    assert.match(failed[0]!.value, c.expect, c.name);
  }
});

test('gate coverage: phases the run did not ask for expect nothing', () => {
  assert.deepEqual(computeChecks(run(['writes'], [size('10k', [])])).filter((c) => c.gating), []);
});

test('gate: a failing route or errors fail the API gate', () => {
  const slow = api();
  slow.writes[0] = { ...slow.writes[0]!, latency: summarize([1, 2, 250]) };
  slow.routes[3] = { ...slow.routes[3]!, errors: 1 };
  assert.deepEqual(failing(run(['api'], [], slow, ['10k'])).map((c) => c.name), [`API ${slow.routes[3]!.route} p99 (idle)`, 'API POST /api/documents p99 (with writes + snapshots)']);
});
