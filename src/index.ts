/**
 * Sluice public API. Only what is exported here is public; everything else is internal.
 */
export { ErrorCode, SluiceError, isSluiceError } from "./errors.ts";
export type { SluiceErrorOptions } from "./errors.ts";
export { createPostgresStore } from "./store/postgres/index.ts";
export type { PostgresStore, PostgresStoreOptions } from "./store/postgres/index.ts";
