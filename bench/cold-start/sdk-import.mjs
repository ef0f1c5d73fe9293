/**
 * What loading @azure/storage-blob costs in a fresh process (plain `node`, nothing else), as the store
 * loads it: its CommonJS build, through require. Start-up no longer waits for it (every start-up request
 * is a plain signed one; a writer loads the SDK at its first idle moment after drizzle()), so this is
 * the part of a cold start that design took off the critical path. Same output shape as ours.mjs; only
 * importMs means something.
 */
import { createRequire } from 'node:module';

const t0 = performance.now();
createRequire(import.meta.url)('@azure/storage-blob');
const importMs = performance.now() - t0;
process.stdout.write(`${JSON.stringify({ event: 'first-query', sinceProcessStartMs: performance.now(), importMs, hydrateMs: 0, queryMs: 0 })}\n`);
