/**
 * Time as Sluice's schedulers see it: the bus (backoff, delayed wake-ups, lease upkeep, retention) and the
 * triggers (cron and rate ticks). Injectable so timing can be tested without waiting: a test clock decides what
 * `now()` returns and when timers fire. I/O timeouts (webhooks, grace periods) use real time.
 */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * The wall clock. Its timers keep the process alive, as a running dispatcher or scheduler should (a broker in a
 * plain script keeps delivering until `close()`).
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
