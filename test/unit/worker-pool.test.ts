/**
 * Which pooled worker a job goes to (run-in-worker.ts pickSlot): a background op (a snapshot's or a
 * compaction's work) lowers its worker's priority for good, so the ops callers wait on keep to workers
 * at the process's priority while one is free, and background ops reuse the lowered ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickSlot, type SlotView } from '../../src/sync/run-in-worker.ts';
import { BACKGROUND_OPS } from '../../src/sync/worker-protocol.ts';

const free = (lowered: boolean): SlotView => ({ free: true, lowered });
const busy = (lowered: boolean): SlotView => ({ free: false, lowered });

const cases: Array<{ name: string; slots: SlotView[]; background: boolean; pool?: number; expect: number | 'start' | null }> = [
  { name: 'empty pool: start one', slots: [], background: false, expect: 'start' },
  { name: 'a delta skips the lowered worker for one at full priority', slots: [free(true), free(false)], background: false, expect: 1 },
  { name: 'a compaction reuses the lowered worker', slots: [free(false), free(true)], background: true, expect: 1 },
  { name: 'a delta with only a lowered worker free takes it (no boot)', slots: [free(true), busy(false)], background: false, expect: 0 },
  { name: 'a compaction with no lowered worker free takes a full-priority one', slots: [busy(true), free(false)], background: true, expect: 1 },
  { name: 'all busy, room in the pool: start one', slots: [busy(true), busy(false)], background: false, pool: 3, expect: 'start' },
  { name: 'all busy, pool full: wait', slots: [busy(true), busy(false), busy(false)], background: false, pool: 3, expect: null },
  { name: 'all busy, pool full, background: wait', slots: [busy(true), busy(false), busy(false)], background: true, pool: 3, expect: null },
  { name: 'the first free of its kind', slots: [busy(false), free(false), free(false)], background: false, expect: 1 },
];

for (const c of cases) {
  test(`pickSlot: ${c.name}`, () => {
    assert.equal(pickSlot(c.slots, c.background, c.pool ?? 3), c.expect);
  });
}

test('background ops are the snapshot work run beside the app (and nothing callers wait on)', () => {
  assert.deepEqual([...BACKGROUND_OPS].sort(), ['chunks', 'snapshot']);
  for (const op of ['delta', 'checkpoint', 'restore', 'quick-check', 'fsync'] as const) assert.equal(BACKGROUND_OPS.has(op), false, op);
});
