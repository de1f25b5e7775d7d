/**
 * Public types of the event bus: buses, rules, targets, retry policies, publish results and the broker.
 */
import type { CloudEvent } from "../event/types.ts";
import type { ErrorCode } from "../errors.ts";
import type { DeadLetter } from "../store/contract.ts";

/** How often a failed delivery is retried and for how long (see docs/delivery.md for the defaults). */
export interface RetryPolicy {
  /** Attempts in total, including the first. Default 12. */
  maxAttempts?: number;
  /** A delivery older than this (since it was enqueued) is dead-lettered with reason `max-age`. Default 24 h. */
  maxEventAgeMs?: number;
  /** First backoff ceiling; attempt n waits a random time in [0, min(maxBackoffMs, baseBackoffMs * 2^(n-1))). Default 1 s. */
  baseBackoffMs?: number;
  /** Upper bound of one backoff. Default 10 min. */
  maxBackoffMs?: number;
}

/** EventBridge-style input transformer: values picked by JSON path, substituted into a template. */
export interface InputTransformer {
  inputPaths?: Record<string, string>;
  inputTemplate: string;
}

export interface WebhookTargetSpec {
  /** `http:` or `https:` URL the CloudEvent is POSTed to (structured JSON). */
  url: string;
  /** HMAC-SHA256 key: the request carries `x-sluice-signature: sha256=<hex>` over `<timestamp>.<body>`. */
  secret?: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

interface TargetBase {
  /** Unique within the rule: letters, digits, `.`, `_`, `-` (at most 64). */
  id: string;
  /** The transformer's output replaces the delivered event's `data` (the CloudEvent envelope stays). */
  inputTransformer?: InputTransformer;
  retryPolicy?: RetryPolicy;
}
/**
 * Each target kind and the value it takes under its key (src/bus/targets/). A kind defined in its own folder adds
 * itself here with `declare module "…/bus/types.ts" { interface TargetKindValues { amqp: AmqpTargetSpec } }`.
 */
export interface TargetKindValues {
  /** A function name. */
  function: string;
  /** A bus name. */
  bus: string;
  /** A URL, or the long form. */
  webhook: string | WebhookTargetSpec;
}
/** A target of one kind: `{ id, function: "billing" }`. */
export type TargetOf<K extends keyof TargetKindValues> = TargetBase & { [P in K]: TargetKindValues[K] };
export type FunctionTarget = TargetOf<"function">;
export type BusTarget = TargetOf<"bus">;
export type WebhookTarget = TargetOf<"webhook">;
export type Target = { [K in keyof TargetKindValues]: TargetOf<K> }[keyof TargetKindValues];

export interface RuleInput {
  name: string;
  /** Bus the rule listens on. Default `default`. */
  bus?: string;
  /** An EventBridge event pattern. */
  pattern: unknown;
  /** Default true. */
  enabled?: boolean;
  description?: string;
  /** At most 5. */
  targets: Target[];
}

export interface Rule {
  name: string;
  bus: string;
  pattern: unknown;
  enabled: boolean;
  description?: string;
  targets: Target[];
  createdAt: number;
  updatedAt: number;
}

export interface BusInput {
  name: string;
  /** How long published events stay in the archive (for replay). Default 7 days; 0 disables the archive. */
  retentionMs?: number;
  description?: string;
}

export interface Bus {
  name: string;
  retentionMs: number;
  description?: string;
  createdAt: number;
}

/** One entry of a publish result, in entry order (EventBridge PutEvents style). */
export type PublishEntryResult =
  | { eventId: string; duplicate?: true }
  | { errorCode: ErrorCode; errorMessage: string; path?: string; eventId?: string };

export interface PublishResult {
  failedEntryCount: number;
  entries: PublishEntryResult[];
}

/** What a function handler receives besides the event. */
export interface DeliveryContext {
  /** 1 on the first attempt. */
  attempt: number;
  deliveryId: string;
  /** Aborted when the broker shuts down past its grace period or the lease is lost. */
  signal: AbortSignal;
}

/**
 * Delivers events to functions. The runtime provides the real one; resolving means success, throwing fails the
 * attempt (`NonRetriableError` dead-letters at once, `RetryAfterError` sets the next delay).
 */
export interface FunctionHandler {
  /**
   * Runs one delivery. `event` is read-only: the deliveries of one event to several targets may share one
   * decoded object (the runtime copies it into the function's instance).
   */
  deliver(functionName: string, event: CloudEvent, context: DeliveryContext): Promise<unknown>;
}

/** Identifies one target's queue (and dead-letter list). */
export interface TargetRef {
  /** Default `default`. */
  bus?: string;
  rule: string;
  target: string;
}

export interface DeadLetterInfo extends Omit<DeadLetter, "payload"> {
  /** The decoded event as it would have been delivered. */
  event: CloudEvent;
}

export interface ReplayInput {
  name: string;
  /** Source bus whose archive is read. */
  bus: string;
  /** Inclusive lower bound (epoch ms of storage). */
  fromAt: number;
  /** Exclusive upper bound; must not be in the future. */
  toAt: number;
  /** Only events matching this pattern are replayed. */
  pattern?: unknown;
  /** Republish into a bus, or enqueue for one rule (of the source bus) and its targets only. */
  destination: { bus: string } | { rule: string };
  /** At most this many events replayed per second, so a large replay does not flood its targets. */
  maxPerSecond?: number;
}

export type ReplayState = "running" | "completed" | "cancelled" | "failed";

export interface Replay {
  name: string;
  bus: string;
  fromAt: number;
  toAt: number;
  pattern?: unknown;
  destination: { bus: string } | { rule: string };
  maxPerSecond?: number;
  state: ReplayState;
  /** Events that matched and were republished / enqueued. */
  eventsReplayed: number;
  /** Events read from the archive. */
  eventsRead: number;
  /** Log position of the last event read (the resume cursor). */
  lastSeq: number;
  /** `storedAt` of the last event read. */
  lastAt?: number;
  startedAt: number;
  updatedAt: number;
  endedAt?: number;
  error?: string;
}

/** Delivery lifecycle notifications (metrics, dashboards, tests). */
export interface DeliveryEvents {
  delivered: { deliveryId: string; queue: string; attempt: number; durationMs: number };
  retry: { deliveryId: string; queue: string; attempt: number; delayMs: number; availableAt: number; error: string };
  dead: { deliveryId: string; queue: string; attempt: number; reason: string; error?: string };
}
