/**
 * One error class for the whole platform. Callers branch on `code`, never on the message:
 * prototypes do not survive worker-thread and process boundaries, codes do.
 *
 * Every code is listed in docs/errors.md; test/errors-doc.test.ts fails when one is missing.
 */
export const ErrorCode = {
  /** An event failed CloudEvents 1.0 validation or a Sluice limit. */
  EventInvalid: "E_EVENT_INVALID",
  /** An encoded event is larger than the configured size limit. */
  EventTooLarge: "E_EVENT_TOO_LARGE",
  /** An event pattern is malformed (unknown operator, wrong operand, too deep, too large…). */
  PatternInvalid: "E_PATTERN_INVALID",
  /** An input transformer (inputPaths / inputTemplate) is malformed. */
  TransformInvalid: "E_TRANSFORM_INVALID",
  /** A JSON document could not be parsed. */
  JsonInvalid: "E_JSON_INVALID",
  /** A JSON document nests objects and arrays deeper than the limit (128 levels). */
  JsonTooDeep: "E_JSON_TOO_DEEP",
  /** A configuration value is invalid. */
  ConfigInvalid: "E_CONFIG_INVALID",
  /** A named bus does not exist. */
  BusNotFound: "E_BUS_NOT_FOUND",
  /** A named rule does not exist. */
  RuleNotFound: "E_RULE_NOT_FOUND",
  /** A named function does not exist. */
  FunctionNotFound: "E_FUNCTION_NOT_FOUND",
  /** A resource (rule, bus, function) with that name already exists. */
  AlreadyExists: "E_ALREADY_EXISTS",
  /** Storage or queue limits reached; retry later. */
  Backpressure: "E_BACKPRESSURE",
  /** The storage backend failed or is unreachable. */
  StoreUnavailable: "E_STORE_UNAVAILABLE",
  /** A lease is no longer held (expired, or acked by another worker). */
  LeaseLost: "E_LEASE_LOST",
  /** A handler ran past its timeout. */
  HandlerTimeout: "E_HANDLER_TIMEOUT",
  /** A handler threw or rejected. */
  HandlerError: "E_HANDLER_ERROR",
  /** A handler's instance crashed (process.exit, fatal error). */
  HandlerCrashed: "E_HANDLER_CRASHED",
  /** A handler's instance ran out of memory. */
  HandlerOutOfMemory: "E_HANDLER_OUT_OF_MEMORY",
  /** An event chain passed the hop limit. */
  RecursiveLoop: "E_RECURSIVE_LOOP",
  /** A function is throttled (concurrency or budget). */
  Throttled: "E_THROTTLED",
  /** A webhook target answered with a failure or did not answer. */
  WebhookFailed: "E_WEBHOOK_FAILED",
  /** A handler asked not to retry this delivery (`NonRetriableError`): it is dead-lettered at once. */
  NonRetriable: "E_NON_RETRIABLE",
  /** A handler asked to retry after a given delay (`RetryAfterError`). */
  RetryAfter: "E_RETRY_AFTER",
  /** A replay with that name does not exist. */
  ReplayNotFound: "E_REPLAY_NOT_FOUND",
  /** The object was closed; no more work is accepted. */
  Closed: "E_CLOSED",
  /** A named thing (a dead letter, a replay) does not exist. */
  NotFound: "E_NOT_FOUND",
  /** A request was malformed (HTTP, CLI). */
  BadRequest: "E_BAD_REQUEST",
  /** A broker sink (amqp, nats, mqtt, redisStream) or remote bus did not confirm a delivery. */
  SinkFailed: "E_SINK_FAILED",
  /** An inbound webhook's signature is missing, wrong or stale. */
  SignatureInvalid: "E_SIGNATURE_INVALID",
  /** A fault of Sluice's own; the server log has the details, the answer does not. */
  Internal: "E_INTERNAL",
  /** The request needs an API key and sent none (`Authorization: Bearer <key>`). */
  AuthRequired: "E_AUTH_REQUIRED",
  /** The request sent a key that is malformed or unknown. */
  KeyInvalid: "E_KEY_INVALID",
  /** The request sent a key past its expiry. */
  KeyExpired: "E_KEY_EXPIRED",
  /** The request sent a key that was revoked. */
  KeyRevoked: "E_KEY_REVOKED",
  /** The key is valid but lacks the scope the request needs. */
  ScopeMissing: "E_SCOPE_MISSING",
  /** The request's Host or Origin is not one the server answers (DNS rebinding, cross-site requests). */
  OriginRefused: "E_ORIGIN_REFUSED",
  /** The request body has a content type the endpoint does not take (admin writes take application/json only). */
  UnsupportedMediaType: "E_UNSUPPORTED_MEDIA_TYPE",
  /** The key (or address) sent more requests than its rate limit allows; retry after `Retry-After`. */
  RateLimited: "E_RATE_LIMITED",
  /** An outgoing call was refused: its address is private, loopback, link-local or a metadata service. */
  AddressRefused: "E_ADDRESS_REFUSED",
  /** A webhook target is disabled (its receiver answered 410 Gone). */
  TargetDisabled: "E_TARGET_DISABLED",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The HTTP status of each code, declared once: a new code does not compile without one. Failures of a
 * handler keep 500 (the gateway answers for the function); a caller's mistake is 4xx; a state that passes is
 * 429 or 503 (answered with Retry-After).
 */
export const httpStatus = {
  E_EVENT_INVALID: 400,
  E_EVENT_TOO_LARGE: 413,
  E_PATTERN_INVALID: 400,
  E_TRANSFORM_INVALID: 400,
  E_JSON_INVALID: 400,
  E_JSON_TOO_DEEP: 400,
  E_CONFIG_INVALID: 400,
  E_BUS_NOT_FOUND: 404,
  E_RULE_NOT_FOUND: 404,
  E_FUNCTION_NOT_FOUND: 404,
  E_ALREADY_EXISTS: 409,
  E_BACKPRESSURE: 429,
  E_STORE_UNAVAILABLE: 503,
  E_LEASE_LOST: 409,
  E_HANDLER_TIMEOUT: 504,
  E_HANDLER_ERROR: 500,
  E_HANDLER_CRASHED: 500,
  E_HANDLER_OUT_OF_MEMORY: 500,
  E_RECURSIVE_LOOP: 400,
  E_THROTTLED: 429,
  E_WEBHOOK_FAILED: 502,
  E_NON_RETRIABLE: 500,
  E_RETRY_AFTER: 500,
  E_REPLAY_NOT_FOUND: 404,
  E_CLOSED: 503,
  E_NOT_FOUND: 404,
  E_BAD_REQUEST: 400,
  E_SIGNATURE_INVALID: 401,
  E_SINK_FAILED: 502,
  E_INTERNAL: 500,
  E_AUTH_REQUIRED: 401,
  E_KEY_INVALID: 401,
  E_KEY_EXPIRED: 401,
  E_KEY_REVOKED: 401,
  E_SCOPE_MISSING: 403,
  E_ORIGIN_REFUSED: 403,
  E_UNSUPPORTED_MEDIA_TYPE: 415,
  E_RATE_LIMITED: 429,
  E_ADDRESS_REFUSED: 502,
  E_TARGET_DISABLED: 410,
} as const satisfies Record<ErrorCode, number>;

/** HTTP status for a code; 500 for a string that is no code (an error from elsewhere). */
export function statusForCode(code: string): number {
  return Object.hasOwn(httpStatus, code) ? httpStatus[code as ErrorCode] : 500;
}

export interface SluiceErrorOptions extends ErrorOptions {
  /** JSON path of the offending part of an input, e.g. `$.data.total[0].numeric`. */
  path?: string;
  /** True when the same call may succeed later unchanged. */
  retryable?: boolean;
}

export class SluiceError extends Error {
  override readonly name: string = "SluiceError";
  readonly path: string | undefined;
  readonly retryable: boolean;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: SluiceErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.path = options.path;
    this.retryable = options.retryable ?? false;
  }

  /** A plain object that survives structured clone and JSON (for threads, processes and HTTP). */
  toJSON(): { code: ErrorCode; message: string; path?: string; retryable: boolean } {
    return {
      code: this.code,
      message: this.message,
      ...(this.path === undefined ? {} : { path: this.path }),
      retryable: this.retryable,
    };
  }
}

/** True for a SluiceError with the given code, including one rebuilt from JSON. */
export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  if (!(err instanceof SluiceError)) return false;
  return code === undefined || err.code === code;
}

// Errors a handler (function, webhook, custom target) throws to steer retries. The bus recognises them by `code`
// (src/bus/handler-errors.ts), not by prototype, since they cross threads and processes as plain objects.

/**
 * Fails the delivery for good: it is dead-lettered at once with reason `non-retriable`.
 * @example
 * if (!order.customerId) throw new NonRetriableError("order without customer");
 */
export class NonRetriableError extends SluiceError {
  override readonly name: string = "NonRetriableError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(ErrorCode.NonRetriable, message, { ...options, retryable: false });
  }
}

/**
 * Fails the attempt and asks for the next one after `delayMs` (instead of the backoff). The retry policy's
 * attempt and age limits still apply.
 * @example
 * if (res.status === 503) throw new RetryAfterError(30_000, "upstream busy");
 */
export class RetryAfterError extends SluiceError {
  override readonly name: string = "RetryAfterError";
  constructor(
    readonly delayMs: number,
    message = `retry after ${delayMs} ms`,
    options: { cause?: unknown } = {},
  ) {
    super(ErrorCode.RetryAfter, message, { ...options, retryable: true });
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new RangeError("RetryAfterError: delayMs must be a finite number >= 0");
  }

  override toJSON(): ReturnType<SluiceError["toJSON"]> & { delayMs: number } {
    return { ...super.toJSON(), delayMs: this.delayMs };
  }
}
