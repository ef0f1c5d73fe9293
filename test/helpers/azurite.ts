/**
 * Starts a real Azurite blob emulator as a child process for tests: in memory, on a free port that
 * Azurite picks itself (`--blobPort 0`, then we read the port it prints), in a fresh temp cwd so it never
 * writes into the repo.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Azurite {
  connectionString: string;
  blobEndpoint: string;
  accountName: string;
  accountKey: string;
  port: number;
  /** The emulator's process id (benchmarks read its CPU time from /proc). */
  pid: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;
const require = createRequire(import.meta.url);

/** The dev account from Azurite's own constants (a CommonJS module with no heavy imports). */
function devAccount(): { accountName: string; accountKey: string } {
  const constants = require('azurite/dist/src/common/utils/constants.js') as {
    EMULATOR_ACCOUNT_NAME: string;
    EMULATOR_ACCOUNT_KEY: Buffer;
  };
  return { accountName: constants.EMULATOR_ACCOUNT_NAME, accountKey: constants.EMULATOR_ACCOUNT_KEY.toString('base64') };
}

/** Path of the `azurite-blob` bin's JS entry, run with process.execPath so PATH does not matter. */
function blobEntry(): string {
  const pkgPath = require.resolve('azurite/package.json');
  const pkg = require(pkgPath) as { bin: Record<string, string> };
  const bin = pkg.bin['azurite-blob'];
  if (!bin) throw new Error('node_modules/azurite has no azurite-blob bin');
  return join(dirname(pkgPath), bin);
}

function tcpReachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startAzurite(): Promise<Azurite> {
  const cwd = await mkdtemp(join(tmpdir(), 'azurite-'));
  // --location cannot be combined with --inMemoryPersistence (Azurite exits), so the temp cwd is the workspace.
  const args = ['--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--skipApiVersionCheck', '--loose', '--silent', '--disableTelemetry'];
  const env = { ...process.env };
  delete env.AZURITE_ACCOUNTS; // would replace the dev account
  // The IPC channel closes when this process dies by any means (even SIGKILL, when 'exit' never fires);
  // the preloaded one-liner makes Azurite exit then, so a killed test run leaves no orphan.
  const exitWithParent = "data:text/javascript,process.once('disconnect',()=>process.exit(0))";
  const child = spawn(process.execPath, ['--import', exitWithParent, blobEntry(), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  child.channel?.unref(); // the channel alone must not keep the test process alive

  const killOnExit = () => {
    child.kill('SIGKILL');
    rmSync(cwd, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    // In-memory persistence: nothing to flush, so a hard kill is fine and fast.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await rm(cwd, { recursive: true, force: true });
  };

  try {
    const port = await waitForPort(() => stdout, exited);
    // The "listens on" line is printed after listen() resolves; one TCP connect confirms it.
    if (!(await tcpReachable(port))) throw new Error(`Azurite said it listens on port ${port} but it refuses connections`);
    const { accountName, accountKey } = devAccount();
    const blobEndpoint = `http://127.0.0.1:${port}/${accountName}`;
    const connectionString = `DefaultEndpointsProtocol=http;AccountName=${accountName};AccountKey=${accountKey};BlobEndpoint=${blobEndpoint};`;
    return { connectionString, blobEndpoint, accountName, accountKey, port, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n--- azurite stdout ---\n${stdout}\n--- azurite stderr ---\n${stderr}`, { cause: error });
  }
}

/** Polls Azurite's stdout for the port it bound; fails fast if it exits, or after READY_TIMEOUT_MS. */
async function waitForPort(output: () => string, exited: Promise<void>): Promise<number> {
  let childExited = false;
  void exited.then(() => (childExited = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const match = /successfully listens on https?:\/\/[^\s:]+:(\d+)/.exec(output());
    if (match) return Number(match[1]);
    if (childExited) throw new Error('Azurite exited before it was ready');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Azurite was not ready within ${READY_TIMEOUT_MS / 1000} s`);
}
