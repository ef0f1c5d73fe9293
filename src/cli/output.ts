/**
 * Where the CLI writes: results on stdout (text lines, or one JSON document with --json), and progress,
 * warnings and the library's sync logs on stderr (progress and info logs are silenced by --quiet).
 */
import type { SyncLogger } from '../log.ts';

export interface Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /** A result line (text mode only; ignored with --json). */
  line(text?: string): void;
  /** The result document (--json only; ignored in text mode). */
  result(value: unknown): void;
  /** Progress and notes on stderr, unless --quiet. */
  progress(text: string): void;
  /** Warnings on stderr, always. */
  warn(text: string): void;
  /** The library's sync logger: one short line per event on stderr. */
  readonly log: SyncLogger;
}

export interface Streams {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

function logLine(fields: object, message?: string): string {
  const details = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? Math.round(v) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ');
  return `${message ?? ''}${details ? ` (${details})` : ''}`;
}

export function createOutput(options: { json: boolean; quiet: boolean }, streams: Streams = process): Output {
  const { json, quiet } = options;
  const err = (text: string) => streams.stderr.write(text + '\n');
  return {
    json,
    quiet,
    line: (text = '') => void (json || streams.stdout.write(text + '\n')),
    result: (value) => void (json && streams.stdout.write(JSON.stringify(value, null, 2) + '\n')),
    progress: (text) => void (quiet || err(text)),
    warn: (text) => void err(`warning: ${text}`),
    log: {
      info: (fields, message) => void (quiet || err(logLine(fields, message))),
      warn: (fields, message) => void err(`warning: ${logLine(fields, message)}`),
      error: (fields, message) => void err(`error: ${logLine(fields, message)}`),
    },
  };
}
