#!/usr/bin/env node
// The `drizzle-libsql-blob` command: runs the compiled CLI (dist/cli/main.js) through the package's
// private '#cli' import. In this repository, `node --conditions=source --import tsx bin/...` (or
// `npm run cli`) runs the TypeScript sources instead; the published package needs neither.
await import('#cli');
