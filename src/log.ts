/**
 * Sync logs go to a pino-compatible logger (`logger.info(fields, message)`), or to the console by
 * default. Separate from drizzle's own `logger` option, which logs queries.
 */
export interface SyncLogger {
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

export type SyncLogOption = SyncLogger | false | undefined;

const PREFIX = '[drizzle-libsql-blob]';

const consoleLogger: SyncLogger = {
  info: (fields, message) => console.info(PREFIX, message ?? '', JSON.stringify(fields)),
  warn: (fields, message) => console.warn(PREFIX, message ?? '', JSON.stringify(fields)),
  error: (fields, message) => console.error(PREFIX, message ?? '', JSON.stringify(fields)),
};

const silent: SyncLogger = { info() {}, warn() {}, error() {} };

export function resolveLogger(option: SyncLogOption): SyncLogger {
  if (option === false) return silent;
  return option ?? consoleLogger;
}
