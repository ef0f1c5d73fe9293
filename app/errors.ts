/**
 * One error shape for every failure: `{ error: CODE, message, problems? }`. Validation problems name
 * the field (`name`, `limit`, ...) so a client can point at it without parsing prose.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isSyncError } from 'drizzle-libsql-blob';
import type { FieldProblem } from '../schema/validation.ts';

export type ApiErrorCode = 'VALIDATION' | 'NOT_FOUND' | 'CONFLICT' | 'PRECONDITION_FAILED' | 'UNAVAILABLE' | 'UNSUPPORTED_MEDIA_TYPE' | 'PAYLOAD_TOO_LARGE' | 'BAD_REQUEST' | 'INTERNAL';

export interface ApiErrorBody {
  error: ApiErrorCode;
  message: string;
  problems?: FieldProblem[];
}

/** Thrown by route handlers for an expected outcome that is not a success. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly problems?: FieldProblem[],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function validationError(problems: FieldProblem[]): ApiError {
  return new ApiError(400, 'VALIDATION', summarize(problems), problems);
}

export function summarize(problems: FieldProblem[]): string {
  return problems.map((p) => `${p.field} ${p.message}`).join('; ');
}

/** The part of an Ajv error Fastify hands over (`error.validation`). */
interface SchemaError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Ajv errors -> `{ field, message }`, naming the property rather than a JSON pointer. */
export function problemsFromSchemaErrors(errors: readonly SchemaError[], context: string): FieldProblem[] {
  return errors.map((e) => {
    const path = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (e.keyword === 'required') return { field: [...path, String(e.params.missingProperty)].join('.'), message: 'is required' };
    if (e.keyword === 'additionalProperties') {
      return { field: [...path, String(e.params.additionalProperty)].join('.'), message: `is not an allowed ${context === 'querystring' ? 'query parameter' : 'field'}` };
    }
    const field = path.length > 0 ? path.join('.') : `(${context})`;
    if (e.keyword === 'enum') return { field, message: `must be one of ${(e.params.allowedValues as unknown[]).join(', ')}` };
    return { field, message: e.message ?? 'is invalid' };
  });
}

type LibsqlLike = { code?: unknown; extendedCode?: unknown; message?: unknown; cause?: unknown };

/** drizzle wraps driver errors (DrizzleQueryError.cause); look through the chain. */
function causes(error: unknown): LibsqlLike[] {
  const chain: LibsqlLike[] = [];
  for (let e = error; e && typeof e === 'object' && chain.length < 8; e = (e as LibsqlLike).cause) chain.push(e as LibsqlLike);
  return chain;
}

/** 'type-name' for the (type, name) unique index, 'id' for the primary key, else undefined. */
export function uniqueViolation(error: unknown): 'type-name' | 'id' | undefined {
  for (const e of causes(error)) {
    const text = `${String(e.extendedCode ?? '')} ${String(e.message ?? '')}`;
    if (!/SQLITE_CONSTRAINT/.test(text)) continue;
    if (/documents\.type, documents\.name/.test(text)) return 'type-name';
    if (/PRIMARYKEY|documents\.id/.test(text)) return 'id';
  }
  return undefined;
}

function send(reply: FastifyReply, status: number, body: ApiErrorBody): FastifyReply {
  return reply.code(status).type('application/json').send(body);
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => send(reply, 404, { error: 'NOT_FOUND', message: `No route ${request.method} ${request.url}` }));

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof ApiError) {
      return send(reply, error.statusCode, { error: error.code, message: error.message, ...(error.problems ? { problems: error.problems } : {}) });
    }
    if (error.validation) {
      const problems = problemsFromSchemaErrors(error.validation as SchemaError[], error.validationContext ?? 'body');
      return send(reply, 400, { error: 'VALIDATION', message: summarize(problems), problems });
    }
    const unique = uniqueViolation(error);
    if (unique) {
      const message = unique === 'id' ? 'A document with this id already exists.' : 'A document of this type with this name already exists; names are unique per type.';
      return send(reply, 409, { error: 'CONFLICT', message });
    }
    // drizzle wraps the library's refusal in a DrizzleQueryError; the SyncError is its cause.
    if (causes(error).some((e) => isSyncError(e, 'CLOSED'))) {
      return send(reply.header('retry-after', '5'), 503, { error: 'UNAVAILABLE', message: 'The server is shutting down and accepts no more writes; retry shortly.' });
    }
    if (causes(error).some((e) => isSyncError(e, 'READ_ONLY'))) {
      return send(reply.header('retry-after', '5'), 503, { error: 'UNAVAILABLE', message: 'This instance is a read replica while another instance is the writer; it takes over when the writer stops. Retry shortly.' });
    }
    if (causes(error).some((e) => isSyncError(e, 'NOT_DURABLE'))) {
      // DURABLE_WRITES: the commit is in this instance's file but the store did not take it in time.
      return send(reply.header('retry-after', '5'), 503, {
        error: 'UNAVAILABLE',
        message: 'The write was committed on this server but is not yet in the backup store (the store did not answer in time); it uploads when the store answers. GET the document to confirm before retrying.',
      });
    }
    if (causes(error).some((e) => isSyncError(e, 'LEASE_LOST'))) {
      return send(reply, 503, { error: 'UNAVAILABLE', message: 'This instance lost the writer role to another instance and accepts no more writes.' });
    }
    const status = error.statusCode ?? 500;
    if (status === 400 && error.code?.startsWith('FST_ERR_CTP')) {
      // Unparsable or empty JSON body.
      const problems = [{ field: '(body)', message: error.message }];
      return send(reply, 400, { error: 'VALIDATION', message: error.message, problems });
    }
    if (status === 415) return send(reply, 415, { error: 'UNSUPPORTED_MEDIA_TYPE', message: 'Send the body as application/json.' });
    if (status === 413) return send(reply, 413, { error: 'PAYLOAD_TOO_LARGE', message: error.message });
    if (status >= 400 && status < 500) return send(reply, status, { error: 'BAD_REQUEST', message: error.message });
    request.log.error({ err: error }, 'request failed');
    return send(reply, 500, { error: 'INTERNAL', message: 'Internal error; see the server log.' });
  });
}
