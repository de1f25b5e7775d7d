/**
 * The `workflow` target kind: `{ id: "run", workflow: "<name>" }` delivers a workflow's triggers and step
 * deliveries to the engine; `{ workflow: "@waits" }` is the wait router of awaited event types. Both rules are
 * made by the server (implicit rules), not written by users.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import type { TargetHandler } from "../bus/targets/target.ts";
import { isName } from "../util/validate.ts";
import type { WorkflowEngine } from "./engine.ts";
import { waitRouter } from "./queue.ts";

declare module "../bus/types.ts" {
  interface TargetKindValues {
    /** A workflow name (the server's implicit workflow rules). */
    workflow: string;
  }
}

/** The kind, bound to an engine that may be set after the broker exists (deliveries wait for it). */
export function workflowTarget(engine: () => WorkflowEngine | undefined): TargetHandler<string> {
  return {
    kind: "workflow",
    compile(value, path) {
      if (value !== waitRouter && !isName(value)) throw new SluiceError(ErrorCode.BadRequest, "workflow must be a workflow name", { path });
      return value as string;
    },
    defaultId: () => "run",
    open: () => ({
      deliver(spec, event, context) {
        const e = engine();
        if (e === undefined) return Promise.reject(new SluiceError(ErrorCode.FunctionNotFound, "no workflow engine runs yet", { retryable: true }));
        return e.deliver(spec, event, context);
      },
    }),
  };
}
