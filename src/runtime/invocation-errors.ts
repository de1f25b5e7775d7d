/** The errors an invocation fails with, each carrying the reason its record and the delivery keep. */
import { ErrorCode, NonRetriableError, RetryAfterError, SluiceError } from "../errors.ts";
import type { WireError } from "./protocol.ts";
import type { InvocationError } from "./runtime-types.ts";

export function failure(err: SluiceError, reason: string, invocationId: string): InvocationError {
  return Object.assign(err, { reason, invocationId });
}

export function crashed(detail: string, invocationId: string): InvocationError {
  return failure(new SluiceError(ErrorCode.HandlerCrashed, `crashed: ${detail}`, { retryable: true }), "crashed", invocationId);
}

/** Rebuilds a handler's error on this side of the boundary, keeping what the bus branches on. */
export function handlerError(wire: WireError, invocationId: string): InvocationError {
  const reason = `error: ${wire.message}`;
  let err: SluiceError;
  // By code first (what the bus branches on); the class name covers errors that lost their code on the way.
  if (wire.code === ErrorCode.NonRetriable || wire.name === "NonRetriableError") err = new NonRetriableError(wire.message);
  else if ((wire.code === ErrorCode.RetryAfter || wire.name === "RetryAfterError") && typeof wire.delayMs === "number" && Number.isFinite(wire.delayMs) && wire.delayMs >= 0) {
    err = new RetryAfterError(wire.delayMs, wire.message);
  }
  else err = new SluiceError(ErrorCode.HandlerError, reason, { retryable: true });
  if (wire.stack !== undefined) err.stack = wire.stack;
  return failure(err, reason, invocationId);
}
