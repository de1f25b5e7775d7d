/**
 * Sluice public API. Only what is exported here is public; everything else is internal.
 */
export { ErrorCode, SluiceError, isSluiceError } from "./errors.ts";
export type { SluiceErrorOptions } from "./errors.ts";
export { createSqliteStore } from "./store/sqlite/index.ts";
export type { SqliteStore, SqliteStoreOptions } from "./store/sqlite/index.ts";
export type {
  AppendEntry,
  AppendResult,
  DeadLetter,
  DeliveryQueues,
  EventLog,
  Lease,
  LeaseRequest,
  NewDelivery,
  QueueStats,
  ReadRange,
  StateStore,
  StorageBackend,
  StoredEvent,
} from "./store/contract.ts";
export { createPostgresStore } from "./store/postgres/index.ts";
export type { PostgresStore, PostgresStoreOptions } from "./store/postgres/index.ts";
