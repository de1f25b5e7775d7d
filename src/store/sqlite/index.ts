export { createSqliteStore, SqliteStore } from "./store.ts";
export type { SqliteStoreOptions } from "./store.ts";
