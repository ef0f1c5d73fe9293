import type { Client, InArgs, InStatement, ResultSet, Transaction, TransactionMode, Replicated } from '@libsql/client';
import { isWriteStatement, scriptWrites } from './sql-kind.ts';
import { WriteLock } from './write-lock.ts';

export type CommitSource = 'execute' | 'batch' | 'migrate' | 'executeMultiple' | 'transaction';

export interface CommitHooks {
  /**
   * Runs before a write (or a transaction that may write) joins the queue; throws to refuse it (e.g. the
   * database is closing). A read replica admits transactions, refusing the first write inside instead.
   */
  admitWrite(kind: 'statement' | 'transaction'): void;
  /** Runs synchronously before a write reaches SQLite (marks the local file dirty before it can be); throws to refuse it. */
  beforeWrite(): void;
  /** Runs after a write has committed. */
  committed(source: CommitSource): void;
}

type BatchItem = InStatement | [string, InArgs?];

function sqlOf(stmt: InStatement | [string, InArgs?] | string): string {
  if (typeof stmt === 'string') return stmt;
  if (Array.isArray(stmt)) return stmt[0];
  return stmt.sql;
}

/**
 * A libSQL `Client` that counts committed writes and serializes them. drizzle calls only `execute`,
 * `batch`, `migrate` and `transaction()`, so wrapping the client sees every commit drizzle makes
 * (its logger fires before execution and misses batches).
 */
export class CountingClient implements Client {
  #inner: Client;
  readonly #hooks: CommitHooks;
  readonly #lock = new WriteLock();

  readonly #prepareTransaction: string | undefined;

  /**
   * @param prepareTransaction SQL run just before each interactive transaction, under the write lock.
   *   The pool hands the most recently released connection to the next call, so a per-connection
   *   setting (PRAGMA synchronous) run here applies to the transaction's connection; the only other
   *   connections are the ones reads open while a transaction holds the first. Plain writes reuse the
   *   connection configured at open, so they pay nothing.
   */
  constructor(inner: Client, hooks: CommitHooks, prepareTransaction?: string) {
    this.#inner = inner;
    this.#hooks = hooks;
    this.#prepareTransaction = prepareTransaction;
  }

  get closed(): boolean {
    return this.#inner.closed;
  }

  /** The real client underneath (a replica swaps it when it reopens on a newer snapshot). */
  get inner(): Client {
    return this.#inner;
  }

  /**
   * A read replica sets this: read transactions then take the write lock too (there are no writes), so
   * whoever holds the lock knows no transaction is open and may swap the underlying client.
   */
  lockReadTransactions = false;

  /** Swaps the underlying client; call with the write lock held. Returns the old one for the caller to close. */
  replaceInner(next: Client): Client {
    const old = this.#inner;
    this.#inner = next;
    return old;
  }

  get protocol(): string {
    return this.#inner.protocol;
  }

  /** The lock every write takes; a snapshot never needs it (it reads through its own connection). */
  get writeLock(): WriteLock {
    return this.#lock;
  }

  execute(stmt: InStatement): Promise<ResultSet>;
  execute(sql: string, args?: InArgs): Promise<ResultSet>;
  async execute(stmtOrSql: InStatement | string, args?: InArgs): Promise<ResultSet> {
    const run = () => (typeof stmtOrSql === 'string' ? this.#inner.execute(stmtOrSql, args) : this.#inner.execute(stmtOrSql));
    if (!isWriteStatement(sqlOf(stmtOrSql))) return run();
    return this.#write('execute', run);
  }

  async batch(stmts: BatchItem[], mode?: TransactionMode): Promise<ResultSet[]> {
    if (mode === 'read' || !stmts.some((s) => isWriteStatement(sqlOf(s)))) return this.#inner.batch(stmts, mode);
    return this.#write('batch', () => this.#inner.batch(stmts, mode));
  }

  async migrate(stmts: InStatement[]): Promise<ResultSet[]> {
    // drizzle's migrator calls migrate([]) when every migration is already applied: nothing commits.
    if (!stmts.some((s) => isWriteStatement(sqlOf(s)))) return this.#inner.migrate(stmts);
    return this.#write('migrate', () => this.#inner.migrate(stmts));
  }

  async executeMultiple(sql: string): Promise<void> {
    if (!scriptWrites(sql)) return this.#inner.executeMultiple(sql);
    return this.#write('executeMultiple', () => this.#inner.executeMultiple(sql));
  }

  transaction(mode?: TransactionMode): Promise<Transaction>;
  async transaction(mode?: TransactionMode): Promise<Transaction> {
    const readOnly = mode === 'read';
    if (readOnly && !this.lockReadTransactions) return this.#inner.transaction(mode);
    if (!readOnly) this.#hooks.admitWrite('transaction');
    // The transaction holds the write lock from BEGIN until commit, rollback or close.
    const release = await this.#lock.acquire();
    try {
      if (this.#prepareTransaction && !readOnly) await this.#inner.execute(this.#prepareTransaction);
      const tx = await this.#inner.transaction(mode);
      return new CountingTransaction(tx, this.#hooks, release);
    } catch (error) {
      release();
      throw error;
    }
  }

  sync(): Promise<Replicated> {
    return this.#inner.sync();
  }

  close(): void {
    this.#inner.close();
  }

  reconnect(): void {
    // Reconnecting only swaps connections; counting and locking stay with this wrapper.
    (this.#inner as Client & { reconnect?: () => void }).reconnect?.();
  }

  async #write<T>(source: CommitSource, run: () => Promise<T>): Promise<T> {
    this.#hooks.admitWrite('statement');
    return this.#lock.run(async () => {
      this.#hooks.beforeWrite();
      const result = await run();
      this.#hooks.committed(source);
      return result;
    });
  }
}

class CountingTransaction implements Transaction {
  readonly #inner: Transaction;
  readonly #hooks: CommitHooks;
  readonly #release: () => void;
  #wrote = false;

  constructor(inner: Transaction, hooks: CommitHooks, release: () => void) {
    this.#inner = inner;
    this.#hooks = hooks;
    this.#release = release;
  }

  get closed(): boolean {
    return this.#inner.closed;
  }


  async execute(stmt: InStatement): Promise<ResultSet> {
    this.#noteWrite(isWriteStatement(sqlOf(stmt)));
    return this.#settleIfClosed(this.#inner.execute(stmt));
  }

  async batch(stmts: InStatement[]): Promise<ResultSet[]> {
    this.#noteWrite(stmts.some((s) => isWriteStatement(sqlOf(s))));
    return this.#settleIfClosed(this.#inner.batch(stmts));
  }

  async executeMultiple(sql: string): Promise<void> {
    this.#noteWrite(scriptWrites(sql));
    return this.#settleIfClosed(this.#inner.executeMultiple(sql));
  }

  async commit(): Promise<void> {
    try {
      await this.#inner.commit();
      if (this.#wrote) this.#hooks.committed('transaction');
    } finally {
      this.#release();
    }
  }

  async rollback(): Promise<void> {
    try {
      await this.#inner.rollback();
    } finally {
      this.#release();
    }
  }

  close(): void {
    try {
      this.#inner.close();
    } finally {
      this.#release();
    }
  }

  #noteWrite(writes: boolean): void {
    if (writes && !this.#wrote) {
      this.#hooks.beforeWrite(); // may refuse (read replica, fenced writer): then nothing was written
      this.#wrote = true;
    }
  }

  /** A failed statement can end the transaction inside libSQL; give the lock back if so. */
  async #settleIfClosed<T>(op: Promise<T>): Promise<T> {
    try {
      return await op;
    } catch (error) {
      if (this.#inner.closed) this.#release();
      throw error;
    }
  }
}
