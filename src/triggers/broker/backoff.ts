/**
 * Reconnecting with backoff. amqplib has no automatic recovery (amqp-node/amqplib#411) and a Redis consumer
 * group or a JetStream consumer may vanish with its server's state, so a broker source runs `connectLoop`: it
 * connects and declares its topology, runs until the connection ends, waits (exponential with jitter, reset
 * after a connection that lasted), and does it again until the source closes.
 */

/** Resolves after `ms`, rejects when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface ConnectLoopOptions {
  signal: AbortSignal;
  /** Connects and declares topology; resolves with `ended`, which settles when the connection ends. */
  connect(): Promise<{ ended: Promise<unknown> }>;
  onConnected(): void;
  onDisconnected(reason: string, retryInMs: number): void;
  minMs?: number;
  maxMs?: number;
  /** A connection that lasted this long resets the backoff. */
  stableMs?: number;
}

/** Runs until `signal` aborts; never rejects. */
export async function connectLoop(o: ConnectLoopOptions): Promise<void> {
  const min = o.minMs ?? 200;
  const max = o.maxMs ?? 10_000;
  let delay = min;
  while (!o.signal.aborted) {
    const started = Date.now();
    let reason: string;
    try {
      const { ended } = await o.connect();
      o.onConnected();
      await ended;
      reason = "the connection closed";
    } catch (err) {
      reason = (err as Error)?.message ?? String(err);
    }
    if (o.signal.aborted) return;
    if (Date.now() - started > (o.stableMs ?? 5000)) delay = min;
    const wait = Math.round(delay * (0.5 + Math.random() / 2));
    o.onDisconnected(reason, wait);
    try {
      await sleep(wait, o.signal);
    } catch {
      return;
    }
    delay = Math.min(delay * 2, max);
  }
}
