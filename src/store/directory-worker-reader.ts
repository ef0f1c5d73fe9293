/**
 * The directory store's reader for worker threads (`ObjectStore.workerReader`): a restore's decoding
 * workers read their chunks' files themselves, into buffers they reuse. Loaded inside the worker from
 * the spec's module URL; `options` is the store's root directory.
 */
import { open } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import type { WorkerReader } from './store.ts';

export interface DirectoryWorkerReaderOptions {
  root: string;
}

export function openWorkerReader({ root }: DirectoryWorkerReaderOptions): WorkerReader {
  return {
    async read(key, buffer, signal) {
      const path = resolve(root, key);
      if (!path.startsWith(root + sep)) throw new Error(`Store key ${JSON.stringify(key)} escapes the backup directory.`);
      signal.throwIfAborted();
      const file = await open(path, 'r');
      try {
        const { size } = await file.stat();
        const body = buffer(size).subarray(0, size);
        for (let filled = 0; filled < size; ) {
          signal.throwIfAborted();
          const { bytesRead } = await file.read(body, filled, size - filled, filled);
          if (bytesRead === 0) throw new Error(`${key} ended at byte ${filled} of ${size} (changed while read).`);
          filled += bytesRead;
        }
        return body;
      } finally {
        await file.close();
      }
    },
  };
}
