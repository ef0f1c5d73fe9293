import type { Client, InArgs, InStatement, ResultSet, Transaction, TransactionMode, Replicated } from '@libsql/client';
import { WriteVerdictCache, scriptWrites } from './sql-kind.ts';
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
  /**
   * Runs before a migration that writes (drizzle's `migrate()`: `client.migrate()`), outside the write
   * lock; the migration waits for it and does not run if it rejects. The writer makes every commit so far
   * durable here: the store then holds a restore point with the schema before the migration's first DDL.
   */
  beforeMigrate?(): Promise<void>;
}

type BatchItem = InStatement | [string, InArgs?];

function sqlOf(stmt: InStatement | [string, InArgs?] | string): string {
  if (typeof stmt === 'string') return stmt;
  if (Array.isArray(stmt)) return stmt[0];
  return stmt.sql;
}

/** Whether any statement of a batch (or migration) writes, by the cached verdict of each SQL text. */
function anyWrites(verdicts: WriteVerdictCache, stmts: readonly BatchItem[]): boolean {
  for (const s of stmts) if (verdicts.isWrite(sqlOf(s))) return true;
  return false;
}

/**
 * A libSQL `Client` that counts committed writes and serializes them. drizzle calls only `execute`,
 * `batch`, `migrate` and `transaction()`, so wrapping the client sees every commit drizzle makes
 * (its logger fires before execution and misses batches).
 *
 * The write path is kept at parity with the plain client: no `async` wrappers (each costs promise
 * hops per statement), a cached read/write verdict per SQL text, and a free write lock is taken
 * synchronously, so a write adds one `then` (the release) to what the inner client does.
 */
export class CountingClient implements Client {
  #inner: Client;
  readonly #hooks: CommitHooks;
  readonly #lock = new WriteLock();
  readonly #verdicts = new WriteVerdictCache();

  readonly #prepareTransaction: string | undefined;

  /**
   * @param prepareTransaction SQL (one or more statements) run just before each interactive
   *   transaction, under the write lock. The pool hands the most recently released connection to the
   *   next call, so per-connection settings (PRAGMA synchronous, wal_autocheckpoint) run here usually
   *   land on the transaction's connection. The writer prepares every connection of the pool when it
   *   opens (drizzle.ts, prepareWriterConnection); this covers one the pool opened afresh since.
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
  execute(stmtOrSql: InStatement | string, args?: InArgs): Promise<ResultSet> {
    try {
      const sql = typeof stmtOrSql === 'string' ? stmtOrSql : stmtOrSql.sql;
      if (!this.#verdicts.isWrite(sql)) return typeof stmtOrSql === 'string' ? this.#inner.execute(stmtOrSql, args) : this.#inner.execute(stmtOrSql);
      return this.#write('execute', stmtOrSql, args);
    } catch (error) {
      return Promise.reject(error); // like the async client: failures reject, never throw
    }
  }

  batch(stmts: BatchItem[], mode?: TransactionMode): Promise<ResultSet[]> {
    try {
      if (mode === 'read' || !anyWrites(this.#verdicts, stmts)) return this.#inner.batch(stmts, mode);
      return this.#write('batch', stmts, mode);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  migrate(stmts: InStatement[]): Promise<ResultSet[]> {
    try {
      // drizzle's migrator calls migrate([]) when every migration is already applied: nothing commits.
      if (!anyWrites(this.#verdicts, stmts)) return this.#inner.migrate(stmts);
      if (!this.#hooks.beforeMigrate) return this.#write('migrate', stmts, undefined);
      this.#hooks.admitWrite('statement'); // refused at once (a replica, closing) rather than after the safety point
      return this.#hooks.beforeMigrate().then(() => this.#write('migrate', stmts, undefined));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  executeMultiple(sql: string): Promise<void> {
    try {
      if (!scriptWrites(sql)) return this.#inner.executeMultiple(sql);
      return this.#write('executeMultiple', sql, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  transaction(mode?: TransactionMode): Promise<Transaction>;
  async transaction(mode?: TransactionMode): Promise<Transaction> {
    const readOnly = mode === 'read';
    if (readOnly && !this.lockReadTransactions) return this.#inner.transaction(mode);
    if (!readOnly) this.#hooks.admitWrite('transaction');
    // The transaction holds the write lock from BEGIN until commit, rollback or close.
    const release = await this.#lock.acquire();
    try {
      if (this.#prepareTransaction && !readOnly) await this.#inner.executeMultiple(this.#prepareTransaction);
      const tx = await this.#inner.transaction(mode);
      return new CountingTransaction(tx, this.#hooks, release, this.#verdicts);
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

  /**
   * admitWrite before joining the queue (a refusal leaves the lock untouched); a free lock is taken
   * synchronously (the statement starts in the caller's tick), a held one queued for in FIFO order.
   * A write's operation travels as (source, what, option) rather than a closure: nothing is allocated
   * per write on the fast path beyond the one `then` it adds to the inner client's promise.
   */
  #write<S extends SingleWrite>(source: S, what: WriteArgs[S][0], option: WriteArgs[S][1]): Promise<WriteResult[S]> {
    this.#hooks.admitWrite('statement');
    if (this.#lock.tryAcquire()) return this.#writeHolding(source, what, option);
    return this.#lock.acquire().then(() => this.#writeHolding(source, what, option));
  }

  /**
   * With the write lock held: beforeWrite before the statement reaches SQLite, committed once it
   * succeeded, then the release, all in the one `then` the write adds. A statement that throws or
   * rejects (or a refusing beforeWrite) releases the lock and counts nothing.
   */
  #writeHolding<S extends SingleWrite>(source: S, what: WriteArgs[S][0], option: WriteArgs[S][1]): Promise<WriteResult[S]> {
    let op: Promise<unknown>;
    try {
      this.#hooks.beforeWrite();
      op = this.#run(source, what, option);
    } catch (error) {
      this.#lock.release();
      return Promise.reject(error);
    }
    return op.then(this.#settled[source], this.#failed) as Promise<WriteResult[S]>;
  }

  #run(source: SingleWrite, what: unknown, option: unknown): Promise<unknown> {
    const inner = this.#inner;
    switch (source) {
      case 'execute':
        return typeof what === 'string' ? inner.execute(what, option as InArgs | undefined) : inner.execute(what as InStatement);
      case 'batch':
        return inner.batch(what as BatchItem[], option as TransactionMode | undefined);
      case 'migrate':
        return inner.migrate(what as InStatement[]);
      case 'executeMultiple':
        return inner.executeMultiple(what as string);
    }
  }

  /** A write committed: count it, then give the lock back (even if counting threw), with its result. */
  #committed<T>(source: CommitSource, result: T): T {
    try {
      this.#hooks.committed(source);
    } finally {
      this.#lock.release();
    }
    return result;
  }

  /** The settle callbacks of each kind of single write, made once (not per write). */
  readonly #settled: Record<SingleWrite, (result: unknown) => unknown> = {
    execute: (result) => this.#committed('execute', result),
    batch: (result) => this.#committed('batch', result),
    migrate: (result) => this.#committed('migrate', result),
    executeMultiple: (result) => this.#committed('executeMultiple', result),
  };

  readonly #failed = (error: unknown): never => {
    this.#lock.release();
    throw error;
  };
}

/** The writes that run as one call under the lock; a transaction holds the lock itself (CountingTransaction). */
type SingleWrite = Exclude<CommitSource, 'transaction'>;

/** What each kind of single write passes to the inner client, and what it resolves with. */
interface WriteArgs {
  execute: [InStatement | string, InArgs | undefined];
  batch: [BatchItem[], TransactionMode | undefined];
  migrate: [InStatement[], undefined];
  executeMultiple: [string, undefined];
}
interface WriteResult {
  execute: ResultSet;
  batch: ResultSet[];
  migrate: ResultSet[];
  executeMultiple: void;
}

class CountingTransaction implements Transaction {
  readonly #inner: Transaction;
  readonly #hooks: CommitHooks;
  readonly #release: () => void;
  readonly #verdicts: WriteVerdictCache;
  #wrote = false;

  constructor(inner: Transaction, hooks: CommitHooks, release: () => void, verdicts: WriteVerdictCache) {
    this.#inner = inner;
    this.#hooks = hooks;
    this.#release = release;
    this.#verdicts = verdicts;
  }

  get closed(): boolean {
    return this.#inner.closed;
  }

  execute(stmt: InStatement): Promise<ResultSet> {
    try {
      this.#noteWrite(this.#verdicts.isWrite(sqlOf(stmt)));
      return this.#settleIfClosed(this.#inner.execute(stmt));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  batch(stmts: InStatement[]): Promise<ResultSet[]> {
    try {
      this.#noteWrite(anyWrites(this.#verdicts, stmts));
      return this.#settleIfClosed(this.#inner.batch(stmts));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  executeMultiple(sql: string): Promise<void> {
    try {
      this.#noteWrite(scriptWrites(sql));
      return this.#settleIfClosed(this.#inner.executeMultiple(sql));
    } catch (error) {
      return Promise.reject(error);
    }
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

  /** A failed statement can end the transaction inside libSQL; give the lock back if so (one `catch`, no async wrapper). */
  #settleIfClosed<T>(op: Promise<T>): Promise<T> {
    return op.catch((error: unknown) => {
      if (this.#inner.closed) this.#release();
      throw error;
    });
  }
}
