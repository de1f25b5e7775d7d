/**
 * The replay driver: runs inside the workflow function's instance. It calls the user's `run(event, step)` with
 * a `step` whose completed steps return their stored results at once; the first step without a result does
 * its work (a `step.run` runs its function here) or names what the engine must do (sleep, wait, emit, invoke),
 * and the driver answers with that one operation. The unfinished `run` is left pending, never resumed: the next
 * delivery replays it with one more result.
 */
import { NonRetriableError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import type { FunctionContext } from "../runtime/define.ts";
import { toWireError } from "../runtime/protocol.ts";
import { parseDuration } from "../util/duration.ts";
import type { DriverInput, DriverOp } from "./protocol.ts";
import { readPath } from "./spec.ts";
import type { Step, StepRunOptions, WaitForEventOptions, WorkflowEmit } from "./types.ts";

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const stepIdRe = /^[^\s][^\n]{0,127}$/;

export type WorkflowRun = (event: CloudEvent & { data?: any }, step: Step) => unknown;

export function driveWorkflow(run: WorkflowRun, event: CloudEvent, ctx: FunctionContext): Promise<DriverOp> {
  const input = event.data as DriverInput;
  if (typeof input !== "object" || input === null || (input.mode !== "run" && input.mode !== "compensate")) {
    return Promise.reject(new NonRetriableError("a workflow runs through its trigger rule: invoke it by publishing its trigger event"));
  }
  const { memo, runId } = input;
  const has = (id: string) => Object.hasOwn(memo, id);
  return new Promise<DriverOp>((resolve) => {
    let answered = false;
    /** True once one step started its work: any other step of this replay waits for the next one. */
    let busy = false;
    const answer = (op: DriverOp) => {
      if (answered) return;
      answered = true;
      resolve(op);
    };
    const seen = new Set<string>();
    const claimId = (id: unknown, what: string): string => {
      if (typeof id !== "string" || !stepIdRe.test(id)) {
        const err = new NonRetriableError(`${what}: a step id must be a non-empty string of at most 128 characters, got ${JSON.stringify(id)}`);
        answer({ op: "failed", error: toWireError(err) });
        throw err;
      }
      if (seen.has(id)) {
        const err = new NonRetriableError(`${what}: step id "${id}" is used twice in one run; step ids must be unique`);
        answer({ op: "failed", error: toWireError(err) });
        throw err;
      }
      seen.add(id);
      return id;
    };
    /** The first step without a result takes the turn; in compensate mode no new step runs. */
    const takeTurn = (): boolean => {
      if (answered || busy || input.mode === "compensate") return false;
      busy = true;
      return true;
    };
    const invokeCounts = new Map<string, number>();

    const step: Step = {
      async run(id: string, fn: (info: { idempotencyKey: string; attempt: number }) => unknown, options?: StepRunOptions<any>): Promise<any> {
        claimId(id, "step.run");
        const idempotencyKey = `${runId}:${id}`;
        if (input.mode === "compensate" && id === input.stepId) {
          if (busy) return never();
          busy = true;
          const compensate = options?.compensate;
          if (typeof compensate !== "function") {
            answer({ op: "compensation-failed", id, error: toWireError(new NonRetriableError(`step "${id}" no longer declares a compensation`)) });
            return never();
          }
          Promise.resolve()
            .then(() => compensate(memo[id], { idempotencyKey: `${idempotencyKey}:compensate`, attempt: ctx.attempt }))
            .then(
              () => answer({ op: "compensated", id }),
              (err: unknown) => answer({ op: "compensation-failed", id, error: toWireError(err) }),
            );
          return never();
        }
        if (has(id)) return memo[id];
        if (typeof fn !== "function") throw new NonRetriableError(`step.run("${id}"): the second argument must be a function`);
        if (!takeTurn()) return never();
        try {
          const value = await fn({ idempotencyKey, attempt: ctx.attempt });
          answer({ op: "step", id, value: value === undefined ? null : value, compensate: typeof options?.compensate === "function" });
        } catch (err) {
          answer({ op: "step-failed", id, error: toWireError(err) });
        }
        return never();
      },

      async sleep(id: string, duration: number | string): Promise<void> {
        claimId(id, "step.sleep");
        if (has(id)) return;
        const ms = parseDuration(duration, `step.sleep("${id}")`);
        if (takeTurn()) answer({ op: "sleep", id, until: Date.now() + ms });
        return never();
      },

      async sleepUntil(id: string, time: Date | string | number): Promise<void> {
        claimId(id, "step.sleepUntil");
        if (has(id)) return;
        const at = time instanceof Date ? time.getTime() : typeof time === "string" ? Date.parse(time) : time;
        if (typeof at !== "number" || !Number.isFinite(at)) throw new NonRetriableError(`step.sleepUntil("${id}"): ${JSON.stringify(time)} is not a time`);
        if (takeTurn()) answer({ op: "sleep", id, until: at });
        return never();
      },

      async waitForEvent(id: string, options: WaitForEventOptions): Promise<(CloudEvent & { data?: any }) | null> {
        claimId(id, "step.waitForEvent");
        if (has(id)) return memo[id] as CloudEvent | null;
        if (typeof options !== "object" || options === null || typeof options.type !== "string" || options.type === "") {
          throw new NonRetriableError(`step.waitForEvent("${id}"): options.type must be an event type`);
        }
        if (options.match !== undefined && typeof options.match !== "string") throw new NonRetriableError(`step.waitForEvent("${id}"): match must be a dotted path like "data.orderId"`);
        if (options.if !== undefined && (typeof options.if !== "object" || options.if === null)) throw new NonRetriableError(`step.waitForEvent("${id}"): if must be an event pattern object`);
        const timeoutMs = options.timeout === undefined ? null : parseDuration(options.timeout, `step.waitForEvent("${id}").timeout`);
        const lookbackMs = options.lookback === undefined ? 0 : parseDuration(options.lookback, `step.waitForEvent("${id}").lookback`);
        if (!takeTurn()) return never();
        answer({
          op: "wait",
          id,
          type: options.type,
          ...(options.match === undefined ? {} : { match: { path: options.match, value: readPath(input.trigger, options.match) ?? null } }),
          ...(options.if === undefined ? {} : { if: options.if }),
          timeoutMs,
          lookbackMs,
        });
        return never();
      },

      async emit(id: string, emitted: WorkflowEmit): Promise<{ eventId: string }> {
        claimId(id, "step.emit");
        if (has(id)) return memo[id] as { eventId: string };
        if (typeof emitted !== "object" || emitted === null || typeof emitted.type !== "string") {
          throw new NonRetriableError(`step.emit("${id}"): the event needs a type`);
        }
        if (takeTurn()) answer({ op: "emit", id, event: { ...emitted } });
        return never();
      },

      async invoke<T = unknown>(fn: string, data?: unknown, options?: { id?: string; compensate?: string }): Promise<T> {
        if (typeof fn !== "string" || fn === "") throw new NonRetriableError("step.invoke: the first argument must be a function name");
        const n = (invokeCounts.get(fn) ?? 0) + 1;
        invokeCounts.set(fn, n);
        const id = claimId(options?.id ?? `invoke:${fn}${n === 1 ? "" : `:${n}`}`, "step.invoke");
        if (input.mode === "compensate" && id === input.stepId) {
          // A function compensation is run by the engine, not here: nothing to do in this replay.
          return never();
        }
        if (has(id)) return memo[id] as T;
        if (takeTurn()) answer({ op: "invoke", id, function: fn, data: data ?? null, ...(options?.compensate ? { compensate: options.compensate } : {}) });
        return never();
      },
    };

    Promise.resolve()
      .then(() => run(input.trigger, step))
      .then(
        (value) => {
          if (input.mode === "compensate") answer({ op: "compensation-failed", id: input.stepId, error: toWireError(new NonRetriableError(`the run no longer reaches step "${input.stepId}"`)) });
          else answer({ op: "done", value: value === undefined ? null : value });
        },
        (err: unknown) => {
          if (input.mode === "compensate") answer({ op: "compensation-failed", id: input.stepId, error: toWireError(new NonRetriableError(`the run failed before it reached step "${input.stepId}": ${(err as Error)?.message ?? String(err)}`)) });
          else answer({ op: "failed", error: toWireError(err) });
        },
      );
  });
}
