/** Driver errors as SluiceErrors, and the lease errors of the queue calls. */
import { ErrorCode, SluiceError } from "../../errors.ts";

/** Thrown (and caught) to roll back a batch delete that did not find every lease of the batch. */
export const someLeaseLost = new Error("some lease of the batch was lost");

const retryableSqliteCodes = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL)/;

/** Maps a driver error to E_STORE_UNAVAILABLE; our own SluiceErrors pass through. */
export function storeError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = (err as { code?: unknown }).code;
  const retryable = typeof code === "string" && retryableSqliteCodes.test(code);
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError(ErrorCode.StoreUnavailable, `sqlite store: ${message}`, { cause: err, retryable });
}

export function leaseLost(deliveryId: string): SluiceError {
  return new SluiceError(
    ErrorCode.LeaseLost,
    `the lease on delivery ${deliveryId} is no longer held (expired and re-leased, or already settled)`,
  );
}
