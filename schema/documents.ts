import { sql } from 'drizzle-orm';
import { check, index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

/**
 * The document store our users run: personas, prompt templates, moods and scenarios. The CHECK
 * constraint is generated from this list, so a type can never be accepted by the API and refused by
 * the database (a real outage once came from a CHECK that forgot one).
 */
export const DOCUMENT_TYPES = ['persona', 'template', 'mood', 'scenario'] as const;
export type DocumentType = (typeof DOCUMENT_TYPES)[number];

export type DocumentContent = Record<string, unknown>;

export const documents = sqliteTable(
  'documents',
  {
    id: text('id').primaryKey(),
    type: text('type', { enum: DOCUMENT_TYPES }).notNull(),
    name: text('name').notNull(),
    content: text('content', { mode: 'json' }).$type<DocumentContent>().notNull(),
    version: integer('version').notNull().default(1),
    createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
    updatedAt: integer('updated_at', { mode: 'timestamp_ms' }).notNull(),
  },
  (t) => [
    check('documents_type_check', sql.raw(`"type" IN (${DOCUMENT_TYPES.map((type) => `'${type}'`).join(', ')})`)),
    check('documents_content_json_check', sql`json_valid(${t.content}) AND json_type(${t.content}) = 'object'`),
    check('documents_version_check', sql`${t.version} >= 1`),
    // One name per type; also serves "list by type, name prefix" as a range scan.
    uniqueIndex('documents_type_name_uq').on(t.type, t.name),
    // "List by type, newest first" with pagination.
    index('documents_type_updated_idx').on(t.type, t.updatedAt),
    // Name prefix across all types (queried as a range, so the BINARY index applies).
    index('documents_name_idx').on(t.name),
    // Time-range queries across types.
    index('documents_updated_idx').on(t.updatedAt),
  ],
);

export type Document = typeof documents.$inferSelect;
export type NewDocument = typeof documents.$inferInsert;
