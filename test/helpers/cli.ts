/**
 * Runs the drizzle-libsql-blob CLI from the repository's sources in a child process, without the
 * environment variables that would point it at another store, database or key.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** `node` arguments that run the CLI from src/ (the published package runs dist/ through bin/). */
export const CLI_FROM_SOURCES = ['--conditions=source', '--import', 'tsx', 'src/cli/main.ts'];
/** Variables that would point the CLI at another store, database or key: every run starts without them. */
const INHERITED = [
  'AZURE_STORAGE_CONNECTION_STRING',
  'AZURE_STORAGE_CONTAINER_URL',
  'AZURE_STORAGE_ACCOUNT_URL',
  'AZURE_STORAGE_ACCOUNT_NAME',
  'AZURE_STORAGE_CONTAINER',
  'AZURE_STORAGE_PREFIX',
  'AZURE_STORAGE_CREATE_CONTAINER',
  'BACKUP_DIR',
  'DATABASE_URL',
  'SKIP_RESTORE',
  'SNAPSHOT_ENCRYPTION_KEY',
];

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion ('close': stdout and stderr fully read). `argv0`: what runs before `args`. */
export function runCli(args: string[], env: Record<string, string> = {}, argv0 = CLI_FROM_SOURCES): Promise<CliRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INHERITED) delete childEnv[name];
  const child = spawn(process.execPath, [...argv0, ...args], { cwd: REPO, env: { ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Same, and asserts exit status 0 (showing both streams when not). */
export async function runCliOk(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const result = await runCli(args, env);
  assert.equal(result.code, 0, `cli ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}
