import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Runs a TypeScript child under tsx with the library's source condition. */
export function spawnTs(script: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Resolves with the first stdout line starting with `prefix`; rejects if the child exits first or on timeout. */
export function waitForLine(child: ChildProcess, prefix: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    let stderr = '';
    const timer = setTimeout(() => finish(new Error(`child printed no "${prefix}" line within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const line = buffer.split('\n').find((l) => l.startsWith(prefix));
      if (line !== undefined) finish(undefined, line);
    };
    const onErr = (chunk: Buffer) => (stderr += chunk.toString());
    const onExit = (code: number | null) => finish(new Error(`child exited (${code}) before "${prefix}"; stderr: ${stderr}`));
    function finish(error?: Error, line?: string) {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onErr);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(line!);
    }
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onErr);
    child.once('exit', onExit);
  });
}

export async function killAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill(signal);
  const [code, sig] = await exited;
  return { code, signal: sig };
}
