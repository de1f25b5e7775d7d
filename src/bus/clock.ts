/**
 * Time as the bus sees it. Injectable so retry timing can be tested without waiting: a test clock decides what
 * `now()` returns and when timers fire. Only delivery scheduling uses it (backoff, delayed wake-ups, lease upkeep,
 * retention); I/O timeouts (webhooks, the close grace period) use real time.
 */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * The wall clock. Its timers keep the process alive, as a running dispatcher should (a broker in a plain script
 * keeps delivering until `close()`).
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A pino-shaped logger; the bus logs constant messages with data in fields. Defaults to a no-op. */
export interface Logger {
  debug(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
  child(fields: object): Logger;
}

export const noopLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return noopLogger;
  },
};
