/**
 * Shared per-file test setup: a temp dir and a fresh Azurite, ready before the first test and gone
 * after the last. Kept apart from fixtures.ts because the child processes import that and must not
 * pull in node:test.
 */
import { after, before } from 'node:test';
import { startAzurite, type Azurite } from './azurite.ts';
import { tempDir, type TempDir } from './fixtures.ts';

export interface AzuriteAndTempDir {
  readonly dir: TempDir;
  readonly azurite: Azurite;
}

/**
 * Registers before/after hooks for the enclosing test file or describe: a temp dir (`tempDir(label)`)
 * and a fresh Azurite. Read the fields inside tests and hooks only; they throw until the before hook
 * has run. After: stops Azurite, then removes the dir (either may be missing if the before hook failed).
 */
export function useAzuriteAndTempDir(label: string): AzuriteAndTempDir {
  let dir: TempDir | undefined;
  let azurite: Azurite | undefined;
  before(async () => {
    dir = await tempDir(label);
    azurite = await startAzurite();
  });
  after(async () => {
    await azurite?.stop();
    await dir?.cleanup();
  });
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useAzuriteAndTempDir('${label}'): ${what} is not ready; read it inside a test or hook`);
    return value;
  };
  return {
    get dir() {
      return ready(dir, 'the temp dir');
    },
    get azurite() {
      return ready(azurite, 'Azurite');
    },
  };
}
