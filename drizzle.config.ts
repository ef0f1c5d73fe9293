import { defineConfig } from 'drizzle-kit';

// `drizzle-kit generate` writes migrations to ./drizzle; `npm run db:migrate` applies them to the
// local file that `npm run db:restore` hydrated from the store.
export default defineConfig({
  dialect: 'turso',
  schema: './schema/documents.ts',
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'file:./data/app.db' },
  strict: true,
  verbose: true,
});
