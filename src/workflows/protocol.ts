/**
 * What the engine (in the host) and a workflow's driver (in the function's instance) say to each other. The
 * engine invokes the workflow function with a `sluice.workflow.step` event carrying the trigger and the results
 * of completed steps; the driver replays `run` up to the first step without a result, does that one thing (or
 * asks the engine to do it) and answers with one operation.
 */
import type { CloudEvent } from "../event/types.ts";
import type { WireError } from "../runtime/protocol.ts";

export const stepEventType = "sluice.workflow.step";

export type DriverInput =
  | { mode: "run"; runId: string; trigger: CloudEvent; memo: Record<string, unknown> }
  /** Runs the compensation declared with completed step `stepId` (given its result). */
  | { mode: "compensate"; runId: string; trigger: CloudEvent; memo: Record<string, unknown>; stepId: string };

export type WaitMatch = { path: string; value: unknown };

export type DriverOp =
  /** A `step.run` ran and returned `value`; `compensate` says whether it declared a compensation. */
  | { op: "step"; id: string; value: unknown; compensate: boolean }
  | { op: "step-failed"; id: string; error: WireError }
  | { op: "sleep"; id: string; until: number }
  | { op: "wait"; id: string; type: string; match?: WaitMatch; if?: Record<string, unknown>; timeoutMs: number | null; lookbackMs: number }
  | { op: "emit"; id: string; event: Record<string, unknown> }
  | { op: "invoke"; id: string; function: string; data: unknown; compensate?: string }
  | { op: "done"; value: unknown }
  | { op: "failed"; error: WireError }
  | { op: "compensated"; id: string }
  | { op: "compensation-failed"; id: string; error: WireError };
