/**
 * Runs a function's handler for the invocations of protocol.ts: builds `ctx` (emit, log, signal…), awaits
 * the handler and answers `done`. Shared by the instance entry (worker thread, child process) and the inline
 * host, so every host runs handlers the same way.
 */
import type { EmittedEvent, FunctionContext, FunctionDefinition, FunctionLogger } from "./define.ts";
import { toWireError, type HostMessage, type InstanceMessage, type LogLevel, type WireError } from "./protocol.ts";

export interface Runner {
  handle(message: HostMessage): void;
}

function remoteError(wire: WireError): Error {
  const err = new Error(wire.message) as Error & { code?: string; retryable?: boolean };
  err.name = wire.name;
  if (wire.code !== undefined) err.code = wire.code;
  if (wire.retryable !== undefined) err.retryable = wire.retryable;
  return err;
}

export function createRunner(def: FunctionDefinition, send: (message: InstanceMessage) => void): Runner {
  const pendingEmits = new Map<number, { resolve(): void; reject(err: Error): void }>();
  const aborters = new Map<number, AbortController>();
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

  async function run(m: Extract<HostMessage, { t: "invoke" }>): Promise<void> {
    const controller = new AbortController();
    aborters.set(m.id, controller);
    const timer = setTimeout(
      () => controller.abort(Object.assign(new Error("the invocation is about to time out"), { name: "TimeoutError" })),
      Math.max(0, m.signalAt - Date.now()),
    );
    const ctx: FunctionContext = {
      emit(events: EmittedEvent | EmittedEvent[]) {
        const reqId = ++nextReqId;
        send({ t: "emit", id: m.id, reqId, events: Array.isArray(events) ? events : [events] });
        return new Promise<void>((resolve, reject) => pendingEmits.set(reqId, { resolve, reject }));
      },
      log: makeLogger(m.id, {}),
      attempt: m.attempt,
      deadline: m.deadline,
      invocationId: m.invocationId,
      functionName: def.name,
      signal: controller.signal,
    };
    try {
      const value = await def.handler(m.event, ctx);
      send(value === undefined ? { t: "done", id: m.id } : { t: "done", id: m.id, value });
    } catch (err) {
      send({ t: "done", id: m.id, error: toWireError(err) });
    } finally {
      clearTimeout(timer);
      aborters.delete(m.id);
    }
  }

  return {
    handle(m) {
      if (m.t === "invoke") void run(m);
      else if (m.t === "abort") {
        aborters.get(m.id)?.abort(Object.assign(new Error("the invocation was cancelled"), { name: "AbortError" }));
      } else if (m.t === "emitted") {
        const pending = pendingEmits.get(m.reqId);
        pendingEmits.delete(m.reqId);
        if (m.error) pending?.reject(remoteError(m.error));
        else pending?.resolve();
      }
    },
  };
}
