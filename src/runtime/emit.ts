/**
 * ctx.emit: turns what a handler emits into child events of the event it handles (correlation id, trace
 * parent, hop count), and stops an event chain that goes past limits.maxHops as a recursive loop.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { newEventId } from "../event/ids.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { EmittedEvent } from "./define.ts";
import type { Invocation } from "./records.ts";
import type { RuntimeOptions } from "./runtime-types.ts";
import { loopDetected } from "./sluice-events.ts";

export interface EmitOptions {
  maxHops: number;
  now(): number;
  publish: RuntimeOptions["emit"];
  logger: Logger;
}

export async function emitChildren(inv: Invocation, emitted: EmittedEvent[], o: EmitOptions): Promise<void> {
  const parent = inv.event;
  const hops = (Number(parent[SluiceExtension.Hops]) || 0) + 1;
  const correlationId = parent[SluiceExtension.CorrelationId] ?? parent.id;
  if (hops > o.maxHops) {
    if (!inv.loopDetected) {
      // Marks the invocation: it settles as recursive-loop (final) whatever its handler returns.
      inv.loopDetected = true;
      const loopEvent = loopDetected(inv, correlationId, hops, o.maxHops, o.now());
      await o.publish([loopEvent], parent).catch((err: unknown) => o.logger.error({ err, functionName: inv.fn.name }, "loop event not published"));
      o.logger.warn({ functionName: inv.fn.name, eventId: parent.id, correlationId, hops }, "recursive loop stopped");
    }
    throw new SluiceError(ErrorCode.RecursiveLoop, `recursive-loop: emitting from hop ${hops - 1} would pass the limit of ${o.maxHops} hops`);
  }
  const nowMs = o.now();
  const time = new Date(nowMs).toISOString();
  const children = emitted.map((e, i): CloudEvent => {
    if (typeof e !== "object" || e === null) throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: an event must be an object", { path: `$[${i}]` });
    if (typeof e.type !== "string" || e.type === "") throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: type must be a non-empty string", { path: `$[${i}].type` });
    if (typeof e.source !== "string" || e.source === "") throw new SluiceError(ErrorCode.EventInvalid, "ctx.emit: source must be a non-empty string", { path: `$[${i}].source` });
    const child: CloudEvent = { ...e, specversion: "1.0", id: typeof e.id === "string" ? e.id : newEventId(nowMs), time: typeof e.time === "string" ? e.time : time, source: e.source, type: e.type };
    child[SluiceExtension.CorrelationId] = e[SluiceExtension.CorrelationId] ?? correlationId;
    child[SluiceExtension.CausationId] = parent.id;
    // The emitting invocation's span is the child's parent when tracing is on; otherwise the context passes along.
    const traceparent = e[SluiceExtension.TraceParent] ?? inv.span?.traceparent ?? parent[SluiceExtension.TraceParent];
    if (traceparent !== undefined) child[SluiceExtension.TraceParent] = traceparent;
    child[SluiceExtension.Hops] = hops;
    return child;
  });
  await o.publish(children, parent, { functionName: inv.fn.name, invocationId: inv.invocationId });
}
