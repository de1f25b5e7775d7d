/**
 * Sluice public API. Only what is exported here is public; everything else is internal.
 */
// What a function file may import (defineFunction, its types, the errors a handler throws) is public as it is.
export * from "./runtime/function-api.ts";
export type { SluiceErrorOptions } from "./errors.ts";
export type { CloudEvent } from "./event/types.ts";
export { SluiceExtension } from "./event/types.ts";
export { EventRule, EventValidationError, validateCloudEvent } from "./event/validate.ts";
export { DEFAULT_MAX_EVENT_SIZE_BYTES, normalizeEvent } from "./event/normalize.ts";
export type { NormalizeOptions, NormalizedEvent } from "./event/normalize.ts";
export { decodeEvent, encodeEvent } from "./event/codec.ts";
export { newEventId } from "./event/ids.ts";
export { TransformError, compileTransformer } from "./pattern/transform.ts";
export type { CompiledTransformer, TransformContext, TransformerDefinition } from "./pattern/transform.ts";
import type { SqliteStore, SqliteStoreOptions } from "./store/sqlite/index.ts";
import type { PostgresStore, PostgresStoreOptions } from "./store/postgres/index.ts";
import type { Runtime, RuntimeOptions } from "./runtime/runtime.ts";
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
  StoreCapabilities,
  StoredEvent,
} from "./store/contract.ts";
export { openStore, registerStoreScheme, storeSchemes, UnknownStoreSchemeError } from "./store/registry.ts";
export type { StoreScheme } from "./store/registry.ts";
export type { PostgresStore, PostgresStoreOptions } from "./store/postgres/index.ts";
export { compilePattern, PatternError, PATTERN_LIMITS } from "./pattern/compile.ts";
export type { CompiledPattern, PatternMismatch } from "./pattern/compile.ts";
export { RuleIndex } from "./pattern/rule-index.ts";
export { createBroker } from "./bus/broker.ts";
export type { Broker, BrokerLimits, BrokerOptions, DeliveryListener } from "./bus/broker.ts";
export { verifyWebhookSignature, signatureHeader, timestampHeader } from "./bus/targets/webhook.ts";
export type { TargetHandler, TargetHost, TargetReference, TargetSender } from "./bus/targets/target.ts";
export { defaultRetryPolicy } from "./bus/retry.ts";
export type { Clock } from "./clock.ts";
export type { Logger } from "./logger.ts";
export type {
  Bus,
  BusInput,
  BusTarget,
  DeadLetterInfo,
  DeliveryContext,
  DeliveryEvents,
  FunctionHandler as FunctionTargetHandler,
  FunctionTarget,
  InputTransformer,
  PublishEntryResult,
  PublishResult,
  Replay,
  ReplayInput,
  ReplayState,
  RetryPolicy,
  Rule,
  RuleInput,
  Target,
  TargetKindValues,
  TargetOf,
  TargetRef,
  WebhookTarget,
  WebhookTargetSpec,
} from "./bus/types.ts";
export { parseDuration } from "./runtime/define.ts";
export type {
  DeliverOptions,
  FunctionSource,
  InstanceChange,
  InvocationError,
  Runtime,
  RuntimeLimits,
  RuntimeMetrics,
  RuntimeOptions,
} from "./runtime/runtime.ts";
export type { InvocationOutcome, InvocationRecord } from "./runtime/metering.ts";
export { defineApp, ConfigError } from "./server/config.ts";
export type {
  AppConfig,
  AppDefinition,
  BusConfig,
  ConfigProblem,
  EmitConfig,
  RouteConfig,
  RuleConfig,
  ScheduleConfig,
  ServerConfig,
  TargetConfig,
} from "./server/config.ts";

// The factories that need a driver (better-sqlite3, pg) or esbuild load it when called, so that importing
// "sluice" (a function file, a config file) loads none of them.

/** Opens (creating if needed) a SQLite store; see `SqliteStoreOptions`. */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  return (await import("./store/sqlite/index.ts")).createSqliteStore(options);
}

/** Connects to a PostgreSQL store (creating its schema if needed); see `PostgresStoreOptions`. */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  return (await import("./store/postgres/index.ts")).createPostgresStore(options);
}

/** Starts a function runtime (bundles function files with esbuild); see `RuntimeOptions`. */
export async function createRuntime(options: RuntimeOptions): Promise<Runtime> {
  return (await import("./runtime/runtime.ts")).createRuntime(options);
}
