/**
 * Errors a handler (function, webhook, custom target) throws to steer retries. They are recognised by `code`,
 * not by prototype, so a runtime that carries errors across threads or processes as `{ code, message, ... }`
 * keeps their meaning.
 */
import { ErrorCode, SluiceError } from "../errors.ts";

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

/** How the dispatcher treats a failed attempt. */
export type FailureKind = { kind: "retry"; delayMs?: number } | { kind: "non-retriable" };

/** Classifies a thrown value by its `code` (works for errors rebuilt from JSON too). */
export function classifyFailure(err: unknown): FailureKind {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; delayMs?: unknown };
    if (e.code === ErrorCode.NonRetriable) return { kind: "non-retriable" };
    if (e.code === ErrorCode.RetryAfter && typeof e.delayMs === "number" && Number.isFinite(e.delayMs) && e.delayMs >= 0) {
      return { kind: "retry", delayMs: e.delayMs };
    }
  }
  return { kind: "retry" };
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
