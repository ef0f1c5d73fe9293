/**
 * isSyncError narrows (`e is SyncError & { code }`) and is honest about it: true only when `e` itself is
 * the SyncError. hasSyncError / findSyncError look through the cause chain (drizzle's DrizzleQueryError).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DrizzleQueryError } from 'drizzle-orm/errors';
import { SyncError, findSyncError, hasSyncError, isSyncError, type SyncErrorCode } from '../../src/errors.ts';

const run = promisify(execFile);

const readOnly = new SyncError('READ_ONLY', 'a write on a read replica');
const wrapped = new DrizzleQueryError('insert into t values (?)', [1], readOnly);
const sourceWrapped = new SyncError('SNAPSHOT_FAILED', 'worker crashed', { cause: new SyncError('NOT_FOUND', 'gone') });

test('isSyncError: true only for the SyncError itself, with that code', () => {
  const rows: Array<[string, unknown, SyncErrorCode | undefined, boolean]> = [
    ['the error, its code', readOnly, 'READ_ONLY', true],
    ['the error, another code', readOnly, 'LEASE_LOST', false],
    ['the error, no code', readOnly, undefined, true],
    ['drizzle wrapper, its cause code', wrapped, 'READ_ONLY', false],
    ['drizzle wrapper, no code', wrapped, undefined, false],
    ['a SyncError caused by another: the outer code', sourceWrapped, 'SNAPSHOT_FAILED', true],
    ['a SyncError caused by another: the inner code', sourceWrapped, 'NOT_FOUND', false],
    ['a plain Error', new Error('x'), undefined, false],
    ['not an error', 'READ_ONLY', 'READ_ONLY', false],
  ];
  for (const [name, error, code, expected] of rows) {
    assert.equal(code === undefined ? isSyncError(error) : isSyncError(error, code), expected, name);
  }
});

test('hasSyncError and findSyncError: the first SyncError in the cause chain', () => {
  assert.equal(hasSyncError(wrapped, 'READ_ONLY'), true);
  assert.equal(hasSyncError(wrapped), true);
  assert.equal(hasSyncError(wrapped, 'CLOSED'), false);
  assert.equal(hasSyncError(sourceWrapped, 'NOT_FOUND'), false, 'the first SyncError of the chain decides');
  assert.equal(hasSyncError(new Error('x', { cause: 'READ_ONLY' })), false);
  assert.equal(findSyncError(wrapped), readOnly);
});

test('the narrowing compiles under strict, and its negative cases do not (test/unit/types/is-sync-error.ts)', async () => {
  // tsc over test/unit/types/ only (its tsconfig extends the project's strict one): each
  // `@ts-expect-error` there is a negative case that becomes a diagnostic if the line starts compiling.
  const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
  const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));
  const result = await run(process.execPath, [tsc, '-p', project, '--pretty', 'false']).catch((error: { stdout?: string; code?: number }) => error);
  assert.equal(result.stdout?.trim() ?? '', '', 'tsc reported diagnostics');
  assert.equal((result as { code?: number }).code ?? 0, 0);
});
