/**
 * A worker reader for tests (ObjectStore.workerReader): the directory store's own, plus one line per
 * object read appended to `log`, so a test on the main thread can count what the workers read.
 */
import { appendFileSync } from 'node:fs';
import { openWorkerReader as openDirectoryReader } from '../../src/store/directory-worker-reader.ts';
import type { WorkerReader } from '../../src/store/store.ts';

export function openWorkerReader({ root, log }: { root: string; log: string }): WorkerReader {
  const reader = openDirectoryReader({ root });
  return {
    async read(key, buffer, signal) {
      const body = await reader.read(key, buffer, signal);
      appendFileSync(log, `${key}\n`);
      return body;
    },
  };
}

/** The spec for a directory store at `root` whose worker reads are logged to `log`. */
export function countingWorkerReader(root: string, log: string) {
  return { module: new URL('./counting-worker-reader.ts', import.meta.url).href, options: { root, log } };
}
