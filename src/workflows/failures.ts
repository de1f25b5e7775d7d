/** How a step's failure is kept in the run and handed back to the bus. */
import { classifyFailure } from "../bus/handler-errors.ts";
import { ErrorCode, RetryAfterError, SluiceError } from "../errors.ts";
import type { WireError } from "../runtime/protocol.ts";
import type { RunError } from "./run-state.ts";

export function errorOf(err: unknown): RunError {
  if (typeof err === "object" && err !== null) {
    const e = err as { message?: unknown; code?: unknown; name?: unknown };
    return {
      message: typeof e.message === "string" ? e.message.slice(0, 4000) : String(err),
      ...(typeof e.code === "string" ? { code: e.code } : {}),
      ...(typeof e.name === "string" ? { name: e.name } : {}),
    };
  }
  return { message: String(err) };
}

/** The error that makes the bus retry this delivery (after the user's own delay when it asked for one). */
export function retryError(error: WireError | RunError | Record<string, unknown>, what: string): Error {
  const e = error as { message?: string; code?: string; delayMs?: number };
  const message = `${what}: ${e.message ?? "failed"}`;
  if (e.code === ErrorCode.RetryAfter && typeof e.delayMs === "number") return new RetryAfterError(e.delayMs, message);
  return new SluiceError(ErrorCode.HandlerError, message, { retryable: true });
}

export const isRetriable = (err: unknown) => classifyFailure(err).kind === "retry";
