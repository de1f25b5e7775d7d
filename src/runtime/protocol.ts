/**
 * The one message protocol between the host and an instance, for worker threads and child processes alike.
 * Messages travel in batches (arrays): each side queues what it sends during one turn of its event loop and
 * posts the batch once, so a burst of invocations costs one structured-clone round trip, not one per message.
 */
import type { CloudEvent } from "../event/types.ts";
import type { EmittedEvent } from "./define.ts";

/** An error as it crosses the boundary: prototypes do not survive, so `name` and `code` carry the kind. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  retryable?: boolean;
  delayMs?: number;
  stack?: string;
}

export type HostMessage =
  | {
      t: "invoke";
      id: number;
      event: CloudEvent;
      attempt: number;
      invocationId: string;
      /**
       * Time left, relative: the instance turns it into its own wall-clock deadline, so ctx.deadline agrees with
       * the handler's Date.now() whatever clock the host runs on (tests run it on a manual one).
       */
      timeoutMs: number;
      /** ms from now at which ctx.signal aborts, a little before the timeout. */
      signalInMs: number;
    }
  /** Aborts ctx.signal of invocation `id` (the caller gave up). */
  | { t: "abort"; id: number }
  | { t: "emitted"; reqId: number; error?: WireError }
  /** To a standby worker: become an instance of this function (load its bundle, then answer `ready`). */
  | { t: "load"; init: InstanceInit };

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

export type InstanceMessage =
  /** A standby worker has loaded the entry and waits for `load`. */
  | { t: "standby" }
  /** The module loaded; `config` is the default export without its handler. */
  | { t: "ready"; config: unknown }
  | { t: "load-error"; error: WireError }
  | { t: "done"; id: number; value?: unknown; error?: WireError }
  | { t: "emit"; id: number; reqId: number; events: EmittedEvent[] }
  | { t: "log"; id: number; level: LogLevel; fields: Record<string, unknown>; msg: string | undefined };

/** What a standby worker receives at start instead of an InstanceInit: it waits for a `load` message. */
export interface StandbyInit {
  standby: true;
}

/** What the instance receives at start (workerData, or the first line of a child's argv). */
export interface InstanceInit {
  /** file URL of the bundled function module. */
  moduleUrl: string;
  functionName: string | undefined;
}

export function toWireError(err: unknown): WireError {
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown; retryable?: unknown; delayMs?: unknown };
    return {
      name: e.name,
      message: e.message,
      ...(typeof e.code === "string" ? { code: e.code } : {}),
      ...(typeof e.retryable === "boolean" ? { retryable: e.retryable } : {}),
      ...(typeof e.delayMs === "number" ? { delayMs: e.delayMs } : {}),
      ...(e.stack === undefined ? {} : { stack: e.stack }),
    };
  }
  return { name: "Error", message: typeof err === "string" ? err : safeString(err) };
}

/** The receiving side of `toWireError`: an Error with the same name, code, retry hints and stack. */
export function fromWireError(wire: WireError): Error {
  const err = new Error(wire.message) as Error & { code?: string; retryable?: boolean; delayMs?: number };
  err.name = wire.name;
  if (wire.code !== undefined) err.code = wire.code;
  if (wire.retryable !== undefined) err.retryable = wire.retryable;
  if (wire.delayMs !== undefined) err.delayMs = wire.delayMs;
  if (wire.stack !== undefined) err.stack = wire.stack;
  return err;
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Queues messages and posts them as one array per macrotask (flushed in a microtask, so a burst made in one
 * callback travels together without waiting for the next event-loop turn).
 * `post` is `worker.postMessage`, `parentPort.postMessage` or `process.send`.
 *
 * Posting copies the batch (structured clone or JSON), which throws for a value it cannot copy: nesting deeper
 * than the copier's stack, say. Such a batch is posted again one message at a time and each message that still
 * fails goes to `undeliverable`, so one bad message fails alone and never escapes into the event loop.
 */
export class Batcher<M> {
  private queue: M[] = [];
  private scheduled = false;
  constructor(
    private readonly post: (batch: M[]) => void,
    private readonly undeliverable: (message: M, err: unknown) => void,
  ) {}

  send(message: M): void {
    this.queue.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(this.flush);
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    try {
      this.post(batch);
    } catch (err) {
      if (batch.length === 1) this.undeliverable(batch[0] as M, err);
      else for (const m of batch) this.postAlone(m);
    }
  };

  private postAlone(message: M): void {
    try {
      this.post([message]);
    } catch (err) {
      this.undeliverable(message, err);
    }
  }
}
