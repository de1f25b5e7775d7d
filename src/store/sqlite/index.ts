export { createSqliteStore } from "./store.ts";
export type { SqliteStore, SqliteStoreOptions } from "./store.ts";
