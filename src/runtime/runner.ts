/**
 * Runs a function's handler for the invocations of protocol.ts: builds `ctx` (emit, log, signal…), runs
 * the handler and answers `done`. Shared by the instance entry (worker thread, child process) and the inline
 * host, so every host runs handlers the same way.
 */
import type { EmittedEvent, FunctionContext, FunctionDefinition, FunctionLogger } from "./define.ts";
import { fromWireError, toWireError, type HostMessage, type InstanceMessage, type LogLevel } from "./protocol.ts";

export interface Runner {
  handle(message: HostMessage): void;
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as { then?: unknown }).then === "function";

export function createRunner(def: FunctionDefinition, send: (message: InstanceMessage) => void): Runner {
  const pendingEmits = new Map<number, { resolve(): void; reject(err: Error): void }>();
  /** Invocations whose handler has not finished, by id: where `abort` finds them. */
  const running = new Map<number, Context>();
  let nextReqId = 0;

  function makeLogger(id: number, bindings: Record<string, unknown>): FunctionLogger {
    const at =
      (level: LogLevel) =>
      (a: object | string, b?: string): void => {
        const fields = typeof a === "string" ? bindings : { ...bindings, ...(a as Record<string, unknown>) };
        send({ t: "log", id, level, fields, msg: typeof a === "string" ? a : b });
      };
    return {
      trace: at("trace"),
      debug: at("debug"),
      info: at("info"),
      warn: at("warn"),
      error: at("error"),
      fatal: at("fatal"),
      child: (more: object) => makeLogger(id, { ...bindings, ...(more as Record<string, unknown>) }),
    } as FunctionLogger;
  }

  /**
   * One invocation's ctx. Most handlers never read `signal` or `log`, so the AbortController (with its
   * pre-deadline timer) and the logger are made on first access: a warm no-op pays for neither.
   */
  class Context implements FunctionContext {
    readonly attempt: number;
    readonly deadline: number;
    readonly invocationId: string;
    readonly functionName = def.name;
    readonly #id: number;
    readonly #signalAt: number;
    #controller: AbortController | undefined;
    #abortReason: unknown;
    #aborted = false;
    #timer: NodeJS.Timeout | undefined;
    #log: FunctionLogger | undefined;

    constructor(m: Extract<HostMessage, { t: "invoke" }>) {
      this.#id = m.id;
      const now = Date.now();
      this.#signalAt = now + m.signalInMs;
      this.attempt = m.attempt;
      this.deadline = now + m.timeoutMs;
      this.invocationId = m.invocationId;
    }

    get signal(): AbortSignal {
      if (this.#controller === undefined) {
        const controller = new AbortController();
        this.#controller = controller;
        if (this.#aborted) controller.abort(this.#abortReason);
        else if (running.get(this.#id) === this) {
          this.#timer = setTimeout(
            () => controller.abort(Object.assign(new Error("the invocation is about to time out"), { name: "TimeoutError" })),
            Math.max(0, this.#signalAt - Date.now()),
          );
        }
      }
      return this.#controller.signal;
    }

    get log(): FunctionLogger {
      return (this.#log ??= makeLogger(this.#id, {}));
    }

    emit(events: EmittedEvent | EmittedEvent[]): Promise<void> {
      const reqId = ++nextReqId;
      send({ t: "emit", id: this.#id, reqId, events: Array.isArray(events) ? events : [events] });
      return new Promise<void>((resolve, reject) => pendingEmits.set(reqId, { resolve, reject }));
    }

    /** The caller gave up: aborts the signal now, or creates it aborted if the handler reads it later. */
    abort(reason: unknown): void {
      if (this.#controller !== undefined) this.#controller.abort(reason);
      else {
        this.#aborted = true;
        this.#abortReason = reason;
      }
    }

    finish(value: unknown, error: unknown, failed: boolean): void {
      clearTimeout(this.#timer);
      running.delete(this.#id);
      if (failed) send({ t: "done", id: this.#id, error: toWireError(error) });
      else send(value === undefined ? { t: "done", id: this.#id } : { t: "done", id: this.#id, value });
    }
  }

  function run(m: Extract<HostMessage, { t: "invoke" }>): void {
    const ctx = new Context(m);
    running.set(m.id, ctx);
    let result: unknown;
    try {
      result = def.handler(m.event, ctx);
    } catch (err) {
      ctx.finish(undefined, err, true);
      return;
    }
    // A synchronous handler answers in this turn; only a thenable costs a promise reaction.
    if (isThenable(result)) {
      // Through Promise.resolve: a thenable whose `then` throws fails the invocation instead of the instance.
      Promise.resolve(result).then(
        (value) => ctx.finish(value, undefined, false),
        (err: unknown) => ctx.finish(undefined, err, true),
      );
    } else ctx.finish(result, undefined, false);
  }

  return {
    handle(m) {
      if (m.t === "invoke") run(m);
      else if (m.t === "abort") {
        running.get(m.id)?.abort(Object.assign(new Error("the invocation was cancelled"), { name: "AbortError" }));
      } else if (m.t === "emitted") {
        const pending = pendingEmits.get(m.reqId);
        pendingEmits.delete(m.reqId);
        if (m.error) pending?.reject(fromWireError(m.error));
        else pending?.resolve();
      }
    },
  };
}
