/**
 * `defineWorkflow` and `defineSaga`: what users write. Both return a function definition (so the runtime loads,
 * isolates, times and meters a workflow like any function) whose handler is the replay driver, and whose
 * `workflow` field carries the settings the engine reads.
 */
import type { CloudEvent } from "../event/types.ts";
import { defineFunction, type FunctionDefinition, type FunctionDefinitionInput } from "../runtime/define.ts";
import { driveWorkflow } from "./driver.ts";
import { normalizeWorkflowSpec } from "./spec.ts";
import type { Step } from "./types.ts";

type RuntimeFields = Pick<FunctionDefinitionInput, "timeout" | "memory" | "isolation" | "instanceConcurrency">;

interface WorkflowCommon extends RuntimeFields {
  name: string;
  /** The trigger: an event pattern on the default bus. */
  on: Record<string, unknown>;
  /** Attempts of each step and each compensation, in total (default 4), and the backoff between them. */
  retry?: { attempts?: number; backoff?: { initial?: FunctionDefinitionInput["timeout"]; max?: FunctionDefinitionInput["timeout"] } };
  /** One run per key: a dotted path into the trigger (default: its source and id). */
  idempotency?: { key: string };
  /** At most `limit` runs at once per value of `key` (a dotted path into the trigger), across nodes. */
  concurrency?: { key?: string; limit: number };
  /** How long finished runs stay listed (default 7d). */
  retention?: FunctionDefinitionInput["timeout"];
}

export interface WorkflowDefinitionInput extends WorkflowCommon {
  run(event: CloudEvent & { data?: any }, step: Step): unknown;
}

export interface SagaDefinitionInput extends WorkflowCommon {
  /** Run in order; each `run` function gets `{ trigger, results }`, each `compensate` `{ trigger, result, results, step }`. */
  steps: { name: string; run: string; compensate?: string }[];
}

function settings(def: WorkflowCommon, kind: "workflow" | "saga", steps?: unknown): Record<string, unknown> {
  const spec: Record<string, unknown> = { kind, on: def.on };
  if (def.retry !== undefined) spec.retry = def.retry;
  if (def.idempotency !== undefined) spec.idempotency = def.idempotency;
  if (def.concurrency !== undefined) spec.concurrency = def.concurrency;
  if (def.retention !== undefined) spec.retention = def.retention;
  if (steps !== undefined) spec.steps = steps;
  normalizeWorkflowSpec(spec, def.name);
  return spec;
}

/**
 * A workflow's invocations are replays that mostly wait on I/O of their steps: one instance takes several at once
 * unless `instanceConcurrency` says otherwise.
 */
const defaultInstanceConcurrency = 16;

function runtimeFields(def: RuntimeFields): RuntimeFields {
  const out: RuntimeFields = { instanceConcurrency: defaultInstanceConcurrency };
  for (const k of ["timeout", "memory", "isolation", "instanceConcurrency"] as const) {
    if (def[k] !== undefined) (out as Record<string, unknown>)[k] = def[k];
  }
  return out;
}

/**
 * Declares a durable workflow. The file's default export must be its result.
 * @example
 * export default defineWorkflow({
 *   name: "fulfil-order",
 *   on: { type: ["order.created"] },
 *   async run(event, step) {
 *     const charge = await step.run("charge", () => chargeCard(event.data), { compensate: (c) => refund(c) });
 *     await step.sleep("cool-off", "10s");
 *     const shipped = await step.waitForEvent("shipped", { type: "shipment.sent", match: "data.orderId", timeout: "2h" });
 *     if (!shipped) throw new NonRetriableError("never shipped");
 *     return { charged: charge.amount };
 *   },
 * });
 */
export function defineWorkflow(def: WorkflowDefinitionInput): FunctionDefinition {
  if (typeof def?.run !== "function") throw new TypeError(`workflow "${def?.name}": run must be a function`);
  const run = def.run;
  return defineFunction({
    name: def.name,
    ...runtimeFields(def),
    workflow: settings(def, "workflow"),
    handler: (event, ctx) => driveWorkflow(run, event, ctx),
  });
}

/**
 * Declares a saga: steps that invoke functions in order, each with the function that undoes it. When a step
 * fails for good (or the run is cancelled), the compensations of the completed steps run newest first.
 * @example
 * export default defineSaga({
 *   name: "book-trip",
 *   on: { type: ["trip.requested"] },
 *   steps: [
 *     { name: "flight", run: "book-flight", compensate: "cancel-flight" },
 *     { name: "hotel", run: "book-hotel", compensate: "cancel-hotel" },
 *   ],
 * });
 */
export function defineSaga(def: SagaDefinitionInput): FunctionDefinition {
  const steps = Array.isArray(def?.steps) ? def.steps.map((s) => ({ ...s })) : def?.steps;
  const spec = settings(def, "saga", steps);
  const list = spec.steps as { name: string; run: string; compensate?: string }[];
  return defineFunction({
    name: def.name,
    ...runtimeFields(def),
    workflow: spec,
    handler: (event, ctx) =>
      driveWorkflow(
        async (trigger, step) => {
          const results: Record<string, unknown> = {};
          for (const s of list) {
            results[s.name] = await step.invoke(s.run, { trigger, results: { ...results } }, { id: s.name, ...(s.compensate ? { compensate: s.compensate } : {}) });
          }
          return results;
        },
        event,
        ctx,
      ),
  });
}
