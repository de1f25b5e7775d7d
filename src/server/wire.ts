/**
 * How the function runtime and the bus are wired together: one place, used by the server and by the integration
 * tests that build the same stack in-process.
 *
 * - Each function with an `on` pattern gets an implicit rule on the default bus whose one target (`fn`) carries
 *   the function's own `retry` settings as its retry policy.
 * - The runtime is the broker's function handler; its failures reach the bus as coded errors with a `reason`
 *   (see src/bus/handler-errors.ts for how the bus classifies them).
 * - `ctx.emit` (and `sluice.*` events of the runtime) publish into the default bus.
 */
import type { Broker } from "../bus/broker.ts";
import { publishError, type PublishOutcomeLike } from "../bus/publish-error.ts";
import { retryPolicyLimits } from "../bus/retry.ts";
import type { FunctionHandler, RetryPolicy, RuleInput } from "../bus/types.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { CloudEvent } from "../event/types.ts";
import type { FunctionConfig } from "../runtime/define.ts";
import type { Runtime, RuntimeOptions } from "../runtime/runtime.ts";
import type { EmitOrigin } from "../runtime/runtime-types.ts";

/** The implicit rule a function's `on` pattern becomes on the default bus, and its queue. */
export const functionRuleName = (fn: string) => `function.${fn}`;
export const functionQueue = (fn: string) => `rule:default/${functionRuleName(fn)}/fn`;

function retryInvalid(fn: string, field: string, message: string): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, `function "${fn}": ${field} ${message}`, { path: `$.${field}` });
}

/**
 * The bus retry policy of a function's deliveries, from its `retry` settings: `attempts` retries after the first
 * attempt (as Lambda's "retry attempts"), so `maxAttempts = attempts + 1`; `backoff.initial` and `backoff.max` are
 * the base and the cap of the full-jitter backoff. The event age limit stays the bus default (24 h).
 * Throws E_CONFIG_INVALID naming the function and the field when a value is outside what the bus accepts.
 */
export function functionRetryPolicy(fn: FunctionConfig): Required<Pick<RetryPolicy, "maxAttempts" | "baseBackoffMs" | "maxBackoffMs">> {
  const maxAttempts = fn.retry.attempts + 1;
  const [, attemptsMax] = retryPolicyLimits.maxAttempts;
  if (!Number.isInteger(fn.retry.attempts) || fn.retry.attempts < 0 || maxAttempts > attemptsMax) {
    throw retryInvalid(fn.name, "retry.attempts", `must be an integer from 0 to ${attemptsMax - 1} (retries after the first attempt), got ${fn.retry.attempts}`);
  }
  const ms = (value: number, field: string, range: readonly [number, number]): number => {
    const rounded = Math.round(value);
    if (!Number.isFinite(value) || rounded < range[0] || rounded > range[1]) {
      throw retryInvalid(fn.name, field, `must be from ${range[0]} ms to ${range[1]} ms, got ${value} ms`);
    }
    return rounded;
  };
  const baseBackoffMs = ms(fn.retry.backoff.initialMs, "retry.backoff.initial", retryPolicyLimits.baseBackoffMs);
  const maxBackoffMs = ms(fn.retry.backoff.maxMs, "retry.backoff.max", retryPolicyLimits.maxBackoffMs);
  if (maxBackoffMs < baseBackoffMs) throw retryInvalid(fn.name, "retry.backoff.max", "must not be less than retry.backoff.initial");
  return { maxAttempts, baseBackoffMs, maxBackoffMs };
}

/** The implicit rules of the functions that have an `on` pattern (validating each one's retry settings). */
export function functionRules(functions: FunctionConfig[]): RuleInput[] {
  const rules: RuleInput[] = [];
  for (const f of functions) {
    if (!f.on) continue;
    rules.push({
      name: functionRuleName(f.name),
      bus: "default",
      pattern: f.on,
      description: `the on pattern of function ${f.name}`,
      targets: [{ id: "fn", function: f.name, retryPolicy: functionRetryPolicy(f) }],
    });
  }
  return rules;
}

/** The runtime as the broker's function handler (the delivery's attempt, id and abort signal go along). */
export function runtimeFunctionHandler(runtime: Pick<Runtime, "deliver">): FunctionHandler {
  return {
    deliver: (fn, event, ctx) =>
      runtime.deliver(fn, event, {
        attempt: ctx.attempt,
        deliveryId: ctx.deliveryId,
        signal: ctx.signal,
        ...(ctx.traceparent === undefined ? {} : { traceparent: ctx.traceparent }),
      }),
  };
}

export { publishError, type PublishOutcomeLike } from "../bus/publish-error.ts";

/**
 * The runtime's `emit`: publishes into the default bus through `publish`, reports how many entries were newly
 * accepted, and fails (so `ctx.emit` rejects) when an entry was refused.
 */
export function runtimeEmit(
  publish: (bus: string, events: unknown[]) => Promise<PublishOutcomeLike>,
  onPublished?: (bus: string, accepted: number) => void,
  onEmitted?: (parent: CloudEvent, accepted: CloudEvent[], origin: EmitOrigin | undefined) => void,
): RuntimeOptions["emit"] {
  return async (events: CloudEvent[], parent, origin) => {
    const out = await publish("default", events);
    onPublished?.("default", out.entries.filter((e) => !("errorCode" in e) && (e as { duplicate?: boolean }).duplicate !== true).length);
    if (onEmitted !== undefined && parent !== undefined) {
      const accepted = events.filter((_e, i) => { const r = out.entries[i]; return r !== undefined && !("errorCode" in r); });
      if (accepted.length > 0) onEmitted(parent, accepted, origin);
    }
    const err = publishError(out);
    if (err) throw err;
    return out;
  };
}

/**
 * Wires a runtime into a broker created with `startDispatcher: false`: the runtime becomes the function handler,
 * the definitions are applied (by default the functions' implicit rules; the server passes its own step, which
 * includes them), then delivery starts, so no delivery runs before its handler and rules exist.
 */
export async function wireRuntime(broker: Broker, runtime: Runtime, applyDefinitions?: () => Promise<void>): Promise<void> {
  broker.setFunctionHandler(runtimeFunctionHandler(runtime));
  if (applyDefinitions) await applyDefinitions();
  else for (const r of functionRules(runtime.functions())) await broker.putRule(r);
  broker.startDispatcher();
}
