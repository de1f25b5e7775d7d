/** Maps driver and server failures to SluiceErrors: connection loss is a retryable E_STORE_UNAVAILABLE. */
import { ErrorCode, SluiceError } from "../../errors.ts";

const connectionErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

/** SQLSTATEs after which the same call may succeed unchanged. */
const transientSqlStates = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "53400", // configuration_limit_exceeded
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/** True when the connection itself failed (the server may not have seen, or may have committed, the call). */
export function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && (connectionErrnos.has(code) || code.startsWith("08") || code.startsWith("57P"))) return true;
  const message = err instanceof Error ? err.message : "";
  return /Connection terminated|connection error|timeout exceeded when trying to connect|Client was closed|not queryable|ECONNREFUSED/i.test(
    message,
  );
}

/** Deadlocks and serialization failures: the transaction was rolled back and can run again at once. */
export function isRetryableConflict(err: unknown): boolean {
  const code = codeOf(err);
  return code === "40001" || code === "40P01";
}

export function storeError(err: unknown, operation: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = codeOf(err);
  const retryable = isConnectionError(err) || (code !== undefined && transientSqlStates.has(code));
  const detail = err instanceof Error ? err.message : String(err);
  return new SluiceError(ErrorCode.StoreUnavailable, `PostgreSQL store: ${operation} failed: ${detail}`, {
    cause: err,
    retryable,
  });
}
