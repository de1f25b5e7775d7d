/**
 * How the bus reads a handler's failure: retried, retried after a delay, or final. Failures are recognised by
 * `code`, not by prototype (NonRetriableError and RetryAfterError live in src/errors.ts), so a runtime that
 * carries errors across threads or processes as `{ code, message, ... }` keeps their meaning.
 */
import { ErrorCode } from "../errors.ts";

/**
 * How the dispatcher treats a failed attempt. A final failure dead-letters at once with `reason`
 * (absent means `non-retriable`).
 */
export type FailureKind = { kind: "retry"; delayMs?: number } | { kind: "non-retriable"; reason?: string };

const knownCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * Codes that describe the state of this process or its store (shutting down, overloaded, store down, lease lost,
 * throttled), never the event: such a failure is retried even when its `retryable` flag was left false.
 */
const transientCodes: ReadonlySet<string> = new Set([
  ErrorCode.Closed,
  ErrorCode.Backpressure,
  ErrorCode.StoreUnavailable,
  ErrorCode.LeaseLost,
  ErrorCode.Throttled,
]);

/** A reason as the dead-letter list records it: a short lower-case token (`recursive-loop`). */
const reasonToken = /^[a-z][a-z0-9-]{0,63}$/;

/**
 * Classifies a thrown value by its `code` and `retryable` flag, never by prototype (so it works for errors
 * rebuilt from JSON on this side of a thread or process boundary):
 * - `E_NON_RETRIABLE` is final (`non-retriable`);
 * - `E_RETRY_AFTER` with a valid `delayMs` retries after that delay;
 * - any other Sluice code with `retryable: false` is final, except the transient codes above; its dead-letter
 *   reason is the error's own `reason` when that is a token (the runtime's `recursive-loop`), else `non-retriable`;
 * - everything else (plain errors, `retryable: true`) is retried with backoff.
 */
export function classifyFailure(err: unknown): FailureKind {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; delayMs?: unknown; retryable?: unknown; reason?: unknown };
    if (e.code === ErrorCode.NonRetriable) return { kind: "non-retriable" };
    if (e.code === ErrorCode.RetryAfter && typeof e.delayMs === "number" && Number.isFinite(e.delayMs) && e.delayMs >= 0) {
      return { kind: "retry", delayMs: e.delayMs };
    }
    if (typeof e.code === "string" && knownCodes.has(e.code) && e.retryable === false && !transientCodes.has(e.code)) {
      if (typeof e.reason === "string" && reasonToken.test(e.reason) && e.reason !== "non-retriable") return { kind: "non-retriable", reason: e.reason };
      if (e.code === ErrorCode.RecursiveLoop) return { kind: "non-retriable", reason: "recursive-loop" };
      return { kind: "non-retriable" };
    }
  }
  return { kind: "retry" };
}

/**
 * The text recorded as a delivery's last error. A failure that carries a `reason` (the function runtime sets
 * `timeout`, `out-of-memory`, `crashed`, `recursive-loop`, `throttled: …` or `error: <message>`) is recorded by it:
 * its message when that starts with the reason's name (`timeout: billing ran past 30000 ms`), else the reason
 * itself (`error: <message>`). Anything else is `CODE: message` (see describeError).
 */
export function failureText(err: unknown): string {
  if (typeof err === "object" && err !== null) {
    const e = err as { reason?: unknown; message?: unknown };
    if (typeof e.reason === "string" && e.reason !== "") {
      const message = typeof e.message === "string" ? e.message : "";
      const name = e.reason.split(":", 1)[0]!;
      const text = message === name || message.startsWith(`${name}:`) ? message : e.reason;
      return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
    }
  }
  return describeError(err);
}

/** A one-line description of a failure for the delivery record: `CODE: message` when there is a code. */
export function describeError(err: unknown): string {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; message?: unknown };
    const message = typeof e.message === "string" ? e.message : String(err);
    const text = typeof e.code === "string" ? `${e.code}: ${message}` : message;
    return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  }
  return String(err).slice(0, 2000);
}
