/** The events the runtime publishes about itself (`sluice.*`, source `sluice/runtime`), with time-sortable ids. */
import { newEventId } from "../event/ids.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { BudgetWindow } from "./metering.ts";
import type { FunctionEntry, Invocation } from "./records.ts";

function sluiceEvent(type: string, subject: string, nowMs: number): CloudEvent {
  return { specversion: "1.0", id: newEventId(nowMs), source: "sluice/runtime", type, time: new Date(nowMs).toISOString(), subject };
}

/** `fn` went over its budget in `window`. */
export function budgetExceeded(fn: FunctionEntry, window: BudgetWindow, nowMs: number): CloudEvent {
  const b = fn.config.budget!;
  return {
    ...sluiceEvent("sluice.budget.exceeded", fn.name, nowMs),
    data: {
      functionName: fn.name,
      budget: { gbSeconds: b.gbSeconds, invocations: b.invocations, perMs: b.perMs, throttle: b.throttle },
      windowStartAt: window.startAt,
      windowEndAt: window.endAt,
      invocations: window.counters.invocations,
      gbSeconds: window.counters.gbSeconds,
    },
  };
}

/** `inv` tried to emit past the hop limit: its event chain is stopped. */
export function loopDetected(inv: Invocation, correlationId: unknown, hops: number, maxHops: number, nowMs: number): CloudEvent {
  const parent = inv.event;
  return {
    ...sluiceEvent("sluice.loop.detected", inv.fn.name, nowMs),
    [SluiceExtension.CorrelationId]: correlationId,
    data: { functionName: inv.fn.name, eventId: parent.id, eventType: parent.type, hops, maxHops },
  };
}
