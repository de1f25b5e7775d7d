/** A snapshot of the runtime for metrics(): instance counts, queues and counters per function. */
import type { FunctionRegistry } from "./registry.ts";
import type { InstanceCounts, RuntimeMetrics } from "./runtime-types.ts";
import type { StandbyPool } from "./standby.ts";

export function snapshot(registry: FunctionRegistry, standby: StandbyPool, nowMs: number): RuntimeMetrics {
  const totals: RuntimeMetrics["instances"] = { starting: 0, idle: 0, busy: 0, total: 0, standby: standby.readyCount() };
  const functions: RuntimeMetrics["functions"] = {};
  for (const fn of registry.values()) {
    const counts: InstanceCounts = { starting: 0, idle: 0, busy: 0 };
    let inflight = 0;
    for (const i of fn.instances) {
      if (i.state === "stopping") continue;
      inflight += i.inflight.size;
      if (i.state === "starting") counts.starting++;
      else if (i.inflight.size === 0) counts.idle++;
      else counts.busy++;
    }
    totals.starting += counts.starting;
    totals.idle += counts.idle;
    totals.busy += counts.busy;
    totals.total += counts.starting + counts.idle + counts.busy;
    fn.budget?.roll(nowMs);
    functions[fn.name] = {
      ...fn.counters,
      instances: counts,
      queued: fn.queue.length,
      inflight,
      version: fn.version,
      ...(fn.budget
        ? {
            budget: {
              windowStartAt: fn.budget.startAt,
              windowEndAt: fn.budget.endAt,
              invocations: fn.budget.counters.invocations,
              gbSeconds: fn.budget.counters.gbSeconds,
              exceeded: fn.budget.exceeded,
            },
          }
        : {}),
    };
  }
  return { instances: totals, functions };
}
