import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextRole, type RoleEvent, type RoleState } from '../../src/sync/role.ts';

const rows: Array<[RoleState, RoleEvent, RoleState | null]> = [
  ['writer', 'lease-lost', 'stopped'],
  ['writer', 'close', 'closing'],
  ['writer', 'lease-taken', null],
  ['writer', 'check-failed', 'stopped'], // the restored file failed quick_check: no writes, no uploads
  ['replica', 'check-failed', 'stopped'], // nor does it follow or take over with a damaged file
  ['closing', 'check-failed', null], // close() gave up waiting for the check: it stays closing
  ['replica', 'lease-taken', 'promoting'],
  ['replica', 'lease-lost', null],
  ['replica', 'close', 'closing'],
  ['promoting', 'caught-up', 'writer'],
  ['promoting', 'promotion-failed', 'replica'],
  ['promoting', 'lease-lost', 'replica'],
  ['promoting', 'close', 'closing'],
  ['stopped', 'close', 'closing'],
  ['stopped', 'lease-taken', null], // a fenced writer never comes back by itself
  ['closing', 'closed', 'closed'],
  ['closing', 'lease-lost', null],
  ['closed', 'close', null],
];

for (const [from, event, to] of rows) {
  test(`role: ${from} --${event}--> ${to ?? '(ignored)'}`, () => assert.equal(nextRole(from, event), to));
}
