/** Tracks in-flight calls so that `close()` waits for them, and refuses calls after close with E_CLOSED. */
import { ErrorCode, SluiceError } from "../../errors.ts";

export class Gate {
  #closed = false;
  readonly #inFlight = new Set<Promise<unknown>>();

  get closed(): boolean {
    return this.#closed;
  }

  run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new SluiceError(ErrorCode.Closed, `NATS store: ${operation} after close`));
    const p = fn().catch((err: unknown) => {
      throw natsError(err, operation);
    });
    this.#inFlight.add(p);
    const forget = () => this.#inFlight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Refuses new calls and resolves when the current ones settled. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}

/** Maps client failures to SluiceErrors: a connection or timeout failure is a retryable E_STORE_UNAVAILABLE. */
export function natsError(err: unknown, operation: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new SluiceError(ErrorCode.StoreUnavailable, `NATS store: ${operation} failed: ${detail}`, { cause: err, retryable: true });
}
