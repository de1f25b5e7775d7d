/**
 * A wake-up channel for `DeliveryQueues.waitForWork`: waiters park on `wait(signal)`, writers call
 * `notify()` after a commit that created or unblocked work. Spurious wake-ups are allowed by the contract
 * (callers lease and find nothing), missed ones are covered by the caller's poll timer.
 *
 * Backend-neutral: the SQLite store shares one per database file within a process; a shared backend can
 * call `notify()` from its own cross-process channel (e.g. PostgreSQL LISTEN/NOTIFY).
 */
export class WorkSignal {
  #waiters = new Set<() => void>();

  /** Resolves on the next `notify()`, or at once / when `signal` aborts. Never rejects. */
  wait(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.#waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Wakes every current waiter. */
  notify(): void {
    for (const done of [...this.#waiters]) done();
  }

  /** Number of parked waiters (for tests and metrics). */
  get waiting(): number {
    return this.#waiters.size;
  }
}
