/** The function target, `{ function: "billing" }`: the runtime (the broker's function handler) runs the delivery. */
import { ErrorCode, SluiceError } from "../../errors.ts";
import type { TargetHandler } from "./target.ts";

export const functionTarget: TargetHandler<string> = {
  kind: "function",
  compile(value, path) {
    if (typeof value !== "string" || value.length === 0 || value.length > 128) {
      throw new SluiceError(ErrorCode.BadRequest, "function must be a function name", { path });
    }
    return value;
  },
  references: (name) => [{ kind: "function", name }],
  defaultId: (value) => `fn-${String(value)}`,
  open: (host) => ({
    // Not async: the delivery's promise is the handler's own (no wrapper promise per delivery).
    deliver(name, event, context) {
      const handler = host.functionHandler();
      if (handler === undefined) {
        return Promise.reject(new SluiceError(ErrorCode.FunctionNotFound, `no function handler is registered (function "${name}")`, { retryable: true }));
      }
      return handler.deliver(name, event, context) as Promise<void>;
    },
  }),
};
