/**
 * Compiled, never run: test/unit/error-types.test.ts type-checks this file under the project's strict
 * options and expects no diagnostics. Each `@ts-expect-error` is a negative case: if the line ever
 * compiles (a guard that narrows too much, or too little), the directive itself becomes the error.
 */
import { SyncError, findSyncError, hasSyncError, isSyncError, type SyncErrorCode } from '../../../src/errors.ts';

export function narrowsToTheCode(e: unknown): 'READ_ONLY' | undefined {
  if (isSyncError(e, 'READ_ONLY')) {
    e.code satisfies 'READ_ONLY';
    e.transient satisfies boolean;
    e satisfies SyncError;
    return e.code;
  }
  return undefined;
}

export function narrowsWithoutACode(e: unknown): SyncErrorCode | undefined {
  if (isSyncError(e)) return e.code; // SyncError, any code
  return undefined;
}

export function narrowsNotToAnotherCode(e: unknown): void {
  if (isSyncError(e, 'READ_ONLY')) {
    // @ts-expect-error the guard fixed the code to 'READ_ONLY'
    e.code satisfies 'LEASE_LOST';
  }
}

export function unknownCodesAreRejected(e: unknown): void {
  // @ts-expect-error 'READONLY' is not a SyncErrorCode
  isSyncError(e, 'READONLY');
}

export function theChainCheckDoesNotNarrow(e: unknown): void {
  if (hasSyncError(e, 'READ_ONLY')) {
    // @ts-expect-error `e` may be drizzle's wrapper (DrizzleQueryError): only findSyncError gives the code
    e.code satisfies 'READ_ONLY';
    const found = findSyncError(e);
    if (found?.code === 'READ_ONLY') found.code satisfies 'READ_ONLY';
  }
}

export function aFalseGuardKeepsOtherSyncErrors(e: SyncError | string): SyncError | string {
  if (!isSyncError(e, 'READ_ONLY')) {
    e satisfies SyncError | string; // a SyncError with another code is still possible here
    return e;
  }
  return e.code;
}
