/**
 * `npx drizzle-libsql-blob <status|list|restore|snapshot|verify|rebuild-manifest>`: the entry point. Parses the command
 * line, runs one command and sets the exit status: 0 success, 1 failure (`error [CODE]: message` on
 * stderr), 2 usage error (one line on stderr, pointing at --help).
 */
import { readFileSync } from 'node:fs';
import { errorMessage, findSyncError } from '../errors.ts';
import { UsageError, parseCommandLine, type ParsedArgs } from './args.ts';
import { USAGE, commandHelp, helpPointer } from './usage.ts';

/**
 * The package's version. This file runs as src/cli/main.ts in the repository and as dist/cli/main.js in
 * the published package: package.json is two levels up from both.
 */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return String(manifest.version);
}

/** Commands (and the store SDKs behind them) load only once the command line is valid: --help and usage errors stay instant. */
async function dispatch(args: Exclude<ParsedArgs, { command: 'help' | 'version' }>): Promise<number> {
  const [{ createOutput }, { createContext }] = await Promise.all([import('./output.ts'), import('./context.ts')]);
  const out = createOutput(args);
  const ctx = createContext(args, out);
  switch (args.command) {
    case 'status':
      return (await import('./status.ts')).status(ctx);
    case 'list':
      return (await import('./list.ts')).list(ctx);
    case 'restore':
      return (await import('./restore.ts')).restore(ctx, args);
    case 'snapshot':
      return (await import('./snapshot.ts')).snapshot(ctx);
    case 'verify':
      return (await import('./verify.ts')).verify(ctx, args);
    case 'rebuild-manifest':
      return (await import('./rebuild-manifest.ts')).rebuildManifestCommand(ctx, args);
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message} ${helpPointer(error.command)}\n`);
    return 2;
  }
  if (args.command === 'help') {
    process.stdout.write(args.topic === undefined ? USAGE : commandHelp(args.topic));
    return 0;
  }
  if (args.command === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  try {
    return await dispatch(args);
  } catch (error) {
    const sync = findSyncError(error);
    const code = sync?.code ?? 'ERROR';
    const message = sync?.message ?? errorMessage(error);
    process.stderr.write(`error [${code}]: ${message}\n`);
    if (!sync && process.env.DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    if (args.json) process.stdout.write(JSON.stringify({ error: { code, message } }, null, 2) + '\n');
    return 1;
  }
}

// `drizzle-libsql-blob list | head`: the reader went away; that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
