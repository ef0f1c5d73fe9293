/**
 * The part of ours' cold start that Litestream's child does not have and no restore design can shorten
 * while the store is reached through @azure/storage-blob: importing the SDK (plain `node`, fresh
 * process, nothing else). Same output shape as ours.mjs; only importMs means something.
 */
const t0 = performance.now();
await import('@azure/storage-blob');
const importMs = performance.now() - t0;
process.stdout.write(`${JSON.stringify({ event: 'first-query', sinceProcessStartMs: performance.now(), importMs, hydrateMs: 0, queryMs: 0 })}\n`);
