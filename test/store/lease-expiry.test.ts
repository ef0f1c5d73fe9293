/**
 * Lease expiry, as both stores implement it (Azure's rules): an expired lease may be renewed or
 * re-taken by its holder while nobody else took it, and taken by anyone else; a write carrying an
 * expired lease is refused (LEASE_LOST) until the holder renews or re-takes it. Plus the pure rule
 * that decides when a publish renews first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { directoryStore } from 'drizzle-libsql-blob';
import { leaseRenewalOverdue } from '../../src/sync/lease.ts';
import { isCode, tempDir } from '../helpers/fixtures.ts';

test('leaseRenewalOverdue: renew before a publish once the last renewal is more than half the duration old', () => {
  const cases: Array<[ageMs: number, durationSec: number, overdue: boolean]> = [
    [0, 15, false],
    [5_000, 15, false], // one timer period: normal
    [7_500, 15, false],
    [7_501, 15, true], // a renewal was missed
    [16_000, 15, true], // expired
    [20_000, 60, false],
    [30_001, 60, true],
  ];
  for (const [age, duration, overdue] of cases) assert.equal(leaseRenewalOverdue(1_000_000 - age, duration, 1_000_000), overdue, `age ${age} ms, duration ${duration} s`);
});

test('directory store: an expired lease is renewed or re-taken by its holder while nobody else took it; anyone else may take it', async () => {
  const dir = await tempDir('lease-expiry');
  try {
    const store = directoryStore({ dir: join(dir.path, 'store') });
    await store.writeSmall('m', Buffer.from('a'), { ifNoneMatch: '*' });
    await store.acquireLease('m', 'ours', 0.05);
    await assert.rejects(store.acquireLease('m', 'theirs', 15), isCode('LEASE_HELD'));
    await delay(80);
    const current = (await store.readSmall('m'))!;
    assert.equal(current.leased, false, 'expired');
    await assert.rejects(store.writeSmall('m', Buffer.from('b'), { ifMatch: current.etag, leaseId: 'ours' }), isCode('LEASE_LOST'));
    await store.renewLease('m', 'ours'); // nobody took it: the holder may renew
    await store.writeSmall('m', Buffer.from('b'), { ifMatch: current.etag, leaseId: 'ours' });

    await store.acquireLease('m', 'ours', 0.05);
    await delay(80);
    await store.acquireLease('m', 'ours', 0.05); // re-take with the same id
    await delay(80);
    await store.acquireLease('m', 'theirs', 15); // expired: anyone may take it
    await assert.rejects(store.renewLease('m', 'ours'), isCode('LEASE_LOST'));
    await assert.rejects(store.acquireLease('m', 'ours', 15), isCode('LEASE_HELD'));
  } finally {
    await dir.cleanup();
  }
});
