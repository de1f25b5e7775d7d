/**
 * Event sources: producers of events from outside the bus (schedules, the CloudEvents HTTP ingest, and later
 * broker subscriptions, webhooks, change data capture). Each kind is one `SourceKind` in its own folder under
 * triggers/, listed in registry.ts; `defineApp({ sources: { name: { kind, ... } } })` names the sources to run.
 *
 * A kind validates its options without I/O and loads its driver in `create` with `await import()`, so only
 * kinds that are configured load one. A source publishes through its context, which resolves once the events
 * are durable: acknowledge upstream only after that (at least once, end to end).
 */
import type { FastifyInstance } from "fastify";
import type { PublishResult } from "../bus/types.ts";
import type { NormalizedEvent } from "../event/normalize.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { StateStore } from "../store/contract.ts";

/** Where a source is: `starting` until it says otherwise, `stopped` after close. */
export type SourceStatus = "starting" | "ok" | "degraded" | "failed" | "stopped";

/** What became of a message a source took from outside (`sluice_source_messages_total{outcome}`). */
export type SourceOutcome = "stored" | "duplicate" | "dead-lettered" | "error";

/** A message that cannot become an event: kept in Sluice's dead-letter list with its bytes, then acknowledged. */
export interface RejectedMessage {
  /** Why it was refused (`E_EVENT_TOO_LARGE: …`). */
  reason: string;
  /** The original payload. */
  body: Uint8Array;
  /** Where it came from and its broker metadata (topic, routing key, headers), JSON. */
  attributes: Record<string, unknown>;
}

/** What a running source hands the server. */
export interface SourceContext {
  /**
   * Publishes events into a bus; resolves when the accepted ones are durable, with per-entry results. Throws
   * E_BUS_NOT_FOUND, or E_BACKPRESSURE when the bus is overloaded: pause or refuse upstream then, never drop.
   */
  publish(bus: string, events: unknown[]): Promise<PublishResult>;
  /** `publish` for events already validated by `normalizeEvent` or `parseHttpEvents` (not validated again). */
  publishNormalized(bus: string, events: NormalizedEvent[]): Promise<PublishResult>;
  /** Runs a function synchronously and returns its result (a schedule's `invoke`). */
  invoke(functionName: string, event: CloudEvent): Promise<unknown>;
  /** Reports the source's health, shown by `GET /admin/sources` and `sluice status`. */
  health(status: Exclude<SourceStatus, "starting" | "stopped">, detail?: string): void;
  /** Stores a message that cannot become an event in the dead-letter list of queue `source:<name>`; durable when resolved. */
  deadLetter(message: RejectedMessage): Promise<void>;
  /** Counts messages by outcome (metrics, status). */
  count(outcome: SourceOutcome, n?: number): void;
  /** Messages waiting upstream, where the broker reports it (`sluice_source_lag`); undefined when unknown. */
  lag(messages: number | undefined): void;
  /** The shared key/value store (claims, cursors); use a namespace of the source's own. */
  readonly state: StateStore;
  readonly logger: Logger;
  /** This process, among all that share the store. */
  readonly nodeId: string;
  /** Aborted when the server starts shutting down: stop taking new work. */
  readonly signal: AbortSignal;
  /** Mounts routes on the server's HTTP port (before it listens). */
  readonly http: { register(plugin: (app: FastifyInstance) => Promise<void>): void };
}

export interface EventSource {
  readonly name: string;
  readonly kind: string;
  start(ctx: SourceContext): Promise<void>;
  /** Extra status for operators (a schedule's next tick), JSON. */
  describe?(): Record<string, unknown>;
  /** Stops taking work and waits for publishes in flight. Idempotent. */
  close(): Promise<void>;
}

/** Where a kind reports problems with its options; keys name the option (`sources.nightly.cron`). */
export interface ProblemSink {
  add(key: string, message: string, fix?: string): void;
  /** Reports keys of `options` not in `known`, with a did-you-mean. */
  unknownKeys(options: Record<string, unknown>, known: readonly string[], key: string): void;
  /** Reports a name that is not one of the app's functions. */
  functionRef(name: unknown, key: string): void;
  /** Reports a name that is not one of the app's buses. */
  busRef(name: unknown, key: string): void;
}

/**
 * One kind of event source.
 * @example
 * const ticker: SourceKind<{ bus: string }> = {
 *   kind: "ticker",
 *   validate: (name, o, key, problems) => (typeof o.bus === "string" ? { bus: o.bus } : void problems.add(`${key}.bus`, "is missing")),
 *   create: async (name, { bus }) => (await import("./ticker-source.ts")).createTicker(name, bus),
 * };
 */
export interface SourceKind<Options = unknown> {
  /** `kind:` in the config: lower-case letters, digits and "-". */
  readonly kind: string;
  /** Checks source `name`'s options (its config without `kind`), each problem under `key`; no I/O. Undefined when invalid. */
  validate(name: string, options: Record<string, unknown>, key: string, problems: ProblemSink): Options | undefined;
  /** Makes the source; its driver is loaded here with `await import()`. */
  create(name: string, options: Options): Promise<EventSource>;
}
