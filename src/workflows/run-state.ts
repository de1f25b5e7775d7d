/**
 * A run as it is stored (one JSON value in the state store, changed only by compare-and-set) and the statuses
 * it goes through.
 *
 * `v` counts the transitions that handed the run to a new delivery: every such transition enqueues its
 * successor delivery (carrying the new `v`) before it writes, so a delivery whose `v` is not the run's is stale
 * (or belongs to a write that never happened) and is dropped. `claim` marks the delivery doing the run's current
 * work, so that a duplicate delivery of the same `v` drops instead of doing that work twice.
 */
import type { CloudEvent } from "../event/types.ts";
import type { WaitMatch } from "./protocol.ts";

export const runStatuses = [
  "running",
  "sleeping",
  "waiting",
  "completed",
  "failed",
  "compensating",
  "compensated",
  "compensation-failed",
  "cancelled",
] as const;
export type RunStatus = (typeof runStatuses)[number];

/** Statuses a run never leaves. */
export const finalStatuses: ReadonlySet<RunStatus> = new Set(["completed", "failed", "compensated", "cancelled"]);

export type StepKind = "run" | "sleep" | "wait" | "emit" | "invoke";

export interface RunError {
  message: string;
  code?: string;
  name?: string;
}

export interface StepRecord {
  id: string;
  kind: StepKind;
  status: "running" | "completed" | "failed" | "sleeping" | "waiting";
  attempts: number;
  startedAt: number;
  endedAt?: number;
  error?: RunError;
  /** What undoes the step: a closure declared with `step.run`, or a function. */
  compensate?: { closure: true } | { function: string };
  compensation?: { status: "pending" | "running" | "completed" | "failed"; attempts: number; error?: RunError; endedAt?: number };
  /** A wait's criteria, for the archive scans of its wake-ups. */
  waiter?: { match?: WaitMatch; if?: Record<string, unknown>; lookbackMs: number };
  /** Sleep: when it wakes; wait: when it times out (null: never). */
  until?: number | null;
}

export interface RunState {
  runId: string;
  workflow: string;
  v: number;
  status: RunStatus;
  trigger: CloudEvent;
  /** Waits match events stored from here on (the trigger's time, or the run's creation if earlier). */
  sinceAt: number;
  createdAt: number;
  updatedAt: number;
  endedAt?: number;
  /** Results of completed steps, by step id: what a replay returns. */
  memo: Record<string, unknown>;
  steps: StepRecord[];
  output?: unknown;
  error?: RunError;
  /** Why compensations run: the run failed, or it was cancelled. */
  ending?: "failed" | "cancelled";
  wait?: { stepId: string; type: string; timeoutAt: number | null };
  sleep?: { stepId: string; until: number };
  claim?: { owner: string; until: number };
  /** A concurrency slot this run holds or waits for. */
  slot?: { key: string; held: boolean };
}

export function isFinal(status: RunStatus): boolean {
  return finalStatuses.has(status);
}

export function stepOf(state: RunState, id: string): StepRecord | undefined {
  return state.steps.find((s) => s.id === id);
}

/** The completed steps whose compensation has not happened, newest first. */
export function pendingCompensations(state: RunState): StepRecord[] {
  return state.steps
    .filter((s) => s.status === "completed" && s.compensate !== undefined && s.compensation?.status !== "completed")
    .sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0) || state.steps.indexOf(b) - state.steps.indexOf(a));
}

/** A short summary for listings. */
export function summary(state: RunState): Record<string, unknown> {
  return {
    runId: state.runId,
    workflow: state.workflow,
    status: state.status,
    steps: state.steps.length,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    ...(state.endedAt === undefined ? {} : { endedAt: state.endedAt }),
    triggerId: state.trigger.id,
    ...(state.error ? { error: state.error.message } : {}),
  };
}
