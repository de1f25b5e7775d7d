/**
 * Schedules as an event source: the scheduler (exactly once per tick across nodes, see schedules.ts) fires each
 * tick as a publish or an invoke through the source's context. A failed tick makes the source `degraded` until
 * a tick succeeds again.
 */
import { publishError } from "../../bus/publish-error.ts";
import { createScheduler, tickEvent, type Scheduler, type ScheduleSpec, type ScheduleStatus } from "../schedules.ts";
import type { EventSource, SourceContext } from "../source.ts";

export class ScheduleSource implements EventSource {
  readonly kind = "schedule";
  #scheduler: Scheduler | undefined;

  constructor(
    readonly name: string,
    readonly specs: readonly ScheduleSpec[],
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    this.#scheduler = createScheduler({
      schedules: this.specs,
      state: ctx.state,
      nodeId: ctx.nodeId,
      logger: ctx.logger,
      fire: async (spec, tick) => {
        const event = tickEvent(spec, tick);
        try {
          if (spec.action.kind === "emit") {
            const err = publishError(await ctx.publish(spec.action.bus, [event]));
            if (err) throw err;
          } else {
            await ctx.invoke(spec.action.function, event as never);
          }
        } catch (err) {
          ctx.health("degraded", `schedule ${spec.name}: ${(err as Error).message}`);
          throw err;
        }
        ctx.health("ok");
      },
    });
    await this.#scheduler.start();
    ctx.health("ok");
  }

  status(): ScheduleStatus[] {
    return this.#scheduler?.status() ?? [];
  }

  describe(): Record<string, unknown> {
    return { schedules: this.status().map((s) => ({ name: s.name, expression: s.expression, nextAt: s.nextAt, fired: s.fired, failures: s.failures })) };
  }

  async close(): Promise<void> {
    await this.#scheduler?.close();
  }
}
