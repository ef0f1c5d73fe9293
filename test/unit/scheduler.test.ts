/**
 * SnapshotScheduler's timers under mocked time: when each policy fires, and that a commit (schedule())
 * touches no timer while the debounce timer is armed for no later than the new due time (issue 13:
 * a timer refresh per commit cost our write p50 2-3%).
 */
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotScheduler, type SchedulePolicy } from '../../src/sync/scheduler.ts';

/** Counts timer operations: setTimeout calls and refresh() of the timers they return. */
let timerOps = 0;
beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const mocked = globalThis.setTimeout;
  timerOps = 0;
  mock.method(globalThis, 'setTimeout', (...args: Parameters<typeof setTimeout>) => {
    timerOps++;
    const timer = mocked(...args);
    const refresh = timer.refresh.bind(timer);
    timer.refresh = () => {
      timerOps++;
      return refresh();
    };
    return timer;
  });
});
afterEach(() => {
  mock.restoreAll();
  mock.timers.reset();
});

function scheduler(policy: SchedulePolicy) {
  const fired: number[] = [];
  return { s: new SnapshotScheduler(policy, () => fired.push(Date.now())), fired };
}

/** Moves mocked time to `at`, 1 ms at a time (a mocked timer sees the time of the tick that ran it, not its due time). */
function tickTo(at: number): void {
  while (Date.now() < at) mock.timers.tick(1);
}

const cases: Array<{ name: string; policy: SchedulePolicy; commits: number[]; until: number; fired: number[] }> = [
  { name: 'one commit: the debounce fires debounceMs after it', policy: { debounceMs: 1_000, maxCommits: 100, maxIntervalMs: 60_000 }, commits: [0], until: 5_000, fired: [1_000] },
  { name: 'a burst: one fire, debounceMs after its last commit', policy: { debounceMs: 1_000, maxCommits: 100, maxIntervalMs: 60_000 }, commits: [0, 300, 600, 900], until: 5_000, fired: [1_900] },
  { name: 'commits that keep pushing it back past the first timer: fires after the last', policy: { debounceMs: 1_000, maxCommits: 100, maxIntervalMs: 60_000 }, commits: [0, 900, 1_800, 2_700], until: 10_000, fired: [3_700] },
  { name: 'a steady writer: the ceiling fires maxIntervalMs after the first commit', policy: { debounceMs: 1_000, maxCommits: 1_000, maxIntervalMs: 3_000 }, commits: [0, 500, 1_000, 1_500, 2_000, 2_500], until: 3_200, fired: [3_000] },
  { name: 'maxCommits fires on the commit itself', policy: { debounceMs: 1_000, maxCommits: 3, maxIntervalMs: 60_000 }, commits: [0, 10, 20], until: 20, fired: [20] },
];

for (const c of cases) {
  test(`scheduler: ${c.name}`, () => {
    const { s, fired } = scheduler(c.policy);
    let pending = 0;
    let firstPendingAt = 0;
    for (const at of c.commits) {
      tickTo(at);
      if (pending === 0) firstPendingAt = at;
      pending++;
      s.schedule(pending, firstPendingAt, at);
      if (fired.length > 0) pending = 0; // a fire starts a snapshot, which covers what was pending
    }
    tickTo(c.until);
    assert.deepEqual(fired, c.fired);
    s.cancel();
  });
}

test('scheduler: a commit while the debounce timer is armed touches no timer', () => {
  const { s, fired } = scheduler({ debounceMs: 1_000, maxCommits: 1_000_000, maxIntervalMs: 60_000 });
  s.schedule(1, 0, 0); // arms the debounce and the ceiling
  const armed = timerOps;
  assert.equal(armed, 2);
  for (let i = 1; i <= 500; i++) {
    tickTo(i);
    s.schedule(i + 1, 0, i);
  }
  assert.equal(timerOps, armed, 'no setTimeout or refresh per commit');
  tickTo(1_000); // the first timer fires early for the last commit (at 500): it re-arms once for the rest
  assert.deepEqual(fired, []);
  assert.equal(timerOps, armed + 1);
  tickTo(1_500);
  assert.deepEqual(fired, [1_500]);
});

test('scheduler: a retry fires after its delay; a commit after that waits for its own debounce', () => {
  const { s, fired } = scheduler({ debounceMs: 1_000, maxCommits: 100, maxIntervalMs: 60_000 });
  s.retryIn(5_000);
  tickTo(4_999);
  assert.deepEqual(fired, []);
  tickTo(5_000);
  assert.deepEqual(fired, [5_000]);
  // A retry armed later than a commit's debounce: the commit's earlier due time re-arms the timer.
  s.retryIn(5_000); // due at 10_000
  s.schedule(1, 5_000, 5_000); // due at 6_000
  tickTo(6_000);
  assert.deepEqual(fired, [5_000, 6_000]);
});
