/**
 * CRUD for documents. Every write is a drizzle statement on the library's db, so it is counted and
 * snapshotted; requests that fail validation, 404 or 412 are decided by reads before any write.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { and, eq, sql } from 'drizzle-orm';
import { DOCUMENT_TYPES, documents, type Document } from '../../schema/documents.ts';
import { NAME_MAX, documentInputJsonSchema, inspectJson, validateDocumentInput, type DocumentInput } from '../../schema/validation.ts';
import type { AppDatabase } from '../database.ts';
import { byIdQuery, cursorAfter, cursorFits, decodeCursor, encodeCursor, listQuery, ordersByName } from '../documents-query.ts';
import { ApiError, validationError } from '../errors.ts';
import { newDocumentId } from '../ids.ts';

export const LIMIT_DEFAULT = 50;
export const LIMIT_MAX = 200;

const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: [...DOCUMENT_TYPES] },
    namePrefix: { type: 'string', minLength: 1, maxLength: NAME_MAX },
    updatedAfter: { type: 'string', format: 'date-time' },
    updatedBefore: { type: 'string', format: 'date-time' },
    limit: { type: 'integer', minimum: 1, maximum: LIMIT_MAX, default: LIMIT_DEFAULT },
    cursor: { type: 'string', minLength: 1, maxLength: 1024 },
  },
} as const;

const idParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 256 } },
} as const;

interface ListQuery {
  type?: Document['type'];
  namePrefix?: string;
  updatedAfter?: string;
  updatedBefore?: string;
  limit: number;
  cursor?: string;
}

interface IdParams {
  id: string;
}

export interface DocumentRoutesOptions {
  db: AppDatabase;
  /** Told after every committed write (the health check tracks how long commits stay unsnapshotted). */
  onWrite?: () => void;
  /** Answer a write only once it is in the store (`db.$sync.durable()`); see AppConfig.durableWrites. */
  durableWrites?: boolean;
  /** durable()'s timeout; the library's default when omitted. */
  durableTimeoutMs?: number | undefined;
}

/** The version a client expects, from `If-Match`; '*' means "any, as long as it exists". */
function parseIfMatch(header: string | string[] | undefined): number[] | '*' | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(',') : header;
  if (text.trim() === '*') return '*';
  const versions: number[] = [];
  for (const tag of text.split(',')) {
    const match = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(tag);
    if (!match) throw validationError([{ field: 'If-Match', message: 'must be the document version as an ETag, e.g. "3"' }]);
    versions.push(Number(match[1]));
  }
  return versions;
}

/** Rules JSON Schema cannot express (blank names, content size), shared with the seed runner. */
function checkInput(body: DocumentInput): void {
  const problems = validateDocumentInput(body);
  if (problems.length > 0) throw validationError(problems);
}

function notFound(id: string): ApiError {
  return new ApiError(404, 'NOT_FOUND', `No document with id ${JSON.stringify(id)}.`);
}

function withEtag(reply: FastifyReply, row: Document): FastifyReply {
  return reply.header('etag', `"${row.version}"`);
}

export function documentRoutes(app: FastifyInstance, { db, onWrite = () => {}, durableWrites = false, durableTimeoutMs }: DocumentRoutesOptions): void {
  // After a write that committed, before its answer: with durable writes on, the answer waits for the store.
  // A failure here (NOT_DURABLE, LEASE_LOST, CLOSED) is a 503 saying the write is committed but not yet safe.
  const durableOptions = durableTimeoutMs === undefined ? undefined : { timeoutMs: durableTimeoutMs };
  const acknowledge = (): Promise<void> | undefined => (durableWrites ? db.$sync.durable(durableOptions) : undefined);
  // URL parameters and query strings reach SQL as well as bodies. No id or name the API accepts holds a NUL
  // or a lone surrogate (bodies with one are refused), so a parameter with one is a client bug: say so
  // instead of answering 404 or an empty page.
  app.addHook('preValidation', async (request) => {
    const problems = [...inspectJson(request.params).unstorableStrings, ...inspectJson(request.query).unstorableStrings];
    if (problems.length > 0) throw validationError(problems);
  });
  app.get<{ Querystring: ListQuery }>(
    '/api/documents',
    {
      schema: { querystring: listQuerySchema },
      // Body types are never coerced (a number is not a name); the one numeric query parameter is converted here.
      preValidation: async (request) => {
        const query = request.query as unknown as Record<string, unknown>;
        if (typeof query.limit === 'string' && /^-?\d{1,15}$/.test(query.limit)) query.limit = Number(query.limit);
      },
    },
    async (request) => {
      const q = request.query;
      const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      const byName = ordersByName(q);
      if (q.cursor !== undefined && (!cursor || !cursorFits(cursor, byName))) {
        throw validationError([{ field: 'cursor', message: 'is not a cursor returned by this API for these filters (pass nextCursor unchanged, with the same filters)' }]);
      }
      const rows = await listQuery(db, {
        type: q.type,
        namePrefix: q.namePrefix,
        updatedAfter: q.updatedAfter === undefined ? undefined : new Date(q.updatedAfter),
        updatedBefore: q.updatedBefore === undefined ? undefined : new Date(q.updatedBefore),
        limit: q.limit,
        cursor,
      });
      const items = rows.slice(0, q.limit);
      const last = items.at(-1);
      const nextCursor = rows.length > q.limit && last ? encodeCursor(cursorAfter(last, byName)) : null;
      return { items, nextCursor };
    },
  );

  app.get<{ Params: IdParams }>('/api/documents/:id', { schema: { params: idParamsSchema } }, async (request, reply) => {
    const row = await byIdQuery(db, request.params.id).get();
    if (!row) throw notFound(request.params.id);
    return withEtag(reply, row).send(row);
  });

  app.post<{ Body: DocumentInput }>('/api/documents', { schema: { body: documentInputJsonSchema } }, async (request, reply) => {
    const body = request.body;
    checkInput(body);
    const now = new Date();
    const id = body.id ?? newDocumentId(body.type, body.name);
    // A duplicate id or (type, name) fails the constraint: 409 from the error handler, nothing committed.
    const [row] = await db.insert(documents).values({ id, type: body.type, name: body.name, content: body.content, version: 1, createdAt: now, updatedAt: now }).returning();
    onWrite();
    await acknowledge();
    return withEtag(reply, row!).code(201).header('location', `/api/documents/${encodeURIComponent(id)}`).send(row);
  });

  app.put<{ Params: IdParams; Body: DocumentInput }>('/api/documents/:id', { schema: { params: idParamsSchema, body: documentInputJsonSchema } }, async (request, reply) => {
    const { id } = request.params;
    const body = request.body;
    checkInput(body);
    if (body.id !== undefined && body.id !== id) throw validationError([{ field: 'id', message: `must equal the id in the URL (${JSON.stringify(id)}); ids cannot change` }]);
    const expected = parseIfMatch(request.headers['if-match']);
    const current = await db.select({ version: documents.version }).from(documents).where(eq(documents.id, id)).get();
    if (!current) throw notFound(id);
    if (Array.isArray(expected) && !expected.includes(current.version)) throw stale(id, current.version);
    // With If-Match the update is also guarded in SQL, so a writer between the read and here still gets 412.
    const guard = Array.isArray(expected) ? and(eq(documents.id, id), eq(documents.version, current.version)) : eq(documents.id, id);
    const [row] = await db
      .update(documents)
      .set({ type: body.type, name: body.name, content: body.content, version: sql`${documents.version} + 1`, updatedAt: new Date() })
      .where(guard)
      .returning();
    onWrite();
    if (!row) throw Array.isArray(expected) ? stale(id, undefined) : notFound(id);
    await acknowledge();
    return withEtag(reply, row).send(row);
  });

  app.delete<{ Params: IdParams }>('/api/documents/:id', { schema: { params: idParamsSchema } }, async (request, reply) => {
    const { id } = request.params;
    const expected = parseIfMatch(request.headers['if-match']);
    const current = await db.select({ version: documents.version }).from(documents).where(eq(documents.id, id)).get();
    if (!current) throw notFound(id);
    if (Array.isArray(expected) && !expected.includes(current.version)) throw stale(id, current.version);
    const guard = Array.isArray(expected) ? and(eq(documents.id, id), eq(documents.version, current.version)) : eq(documents.id, id);
    const gone = await db.delete(documents).where(guard).returning({ id: documents.id });
    onWrite();
    if (gone.length === 0) throw Array.isArray(expected) ? stale(id, undefined) : notFound(id);
    await acknowledge();
    return reply.code(204).send();
  });
}

function stale(id: string, version: number | undefined): ApiError {
  const now = version === undefined ? 'it changed meanwhile' : `it is at version ${version}`;
  return new ApiError(412, 'PRECONDITION_FAILED', `Document ${JSON.stringify(id)} does not match If-Match: ${now}. GET it again and retry.`);
}
