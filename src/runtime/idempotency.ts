/**
 * Idempotent functions: an event whose key already ran (on this node or any node sharing the state store) is
 * skipped and answered with the first run's result. The key is claimed in the state store before the run.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import type { Clock } from "../clock.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { StateStore } from "../store/contract.ts";
import type { Invocations } from "./invocation.ts";
import type { FunctionEntry } from "./records.ts";

export interface IdempotencyOptions {
  state: StateStore;
  invocations: Invocations;
  clock: Clock;
  logger: Logger;
}

function readPath(event: CloudEvent, path: string): unknown {
  let cur: unknown = event;
  for (const part of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export async function runIdempotent(fn: FunctionEntry, event: CloudEvent, attempt: number, signal: AbortSignal | undefined, o: IdempotencyOptions): Promise<unknown> {
  const idem = fn.config.idempotency!;
  const { state, clock } = o;
  const raw = idem.key === undefined ? `${event.source}\n${event.id}` : readPath(event, idem.key);
  if (raw === undefined || raw === null || typeof raw === "object") {
    throw new SluiceError(ErrorCode.EventInvalid, `idempotency key ${idem.key} is missing from the event or not a scalar`, { path: `$.${idem.key}` });
  }
  const key = String(raw);
  const ns = `idempotency:${fn.name}`;
  const skipped = (value: unknown): unknown => {
    o.invocations.meterNotRun(fn, event, attempt, "skipped");
    return value;
  };
  for (;;) {
    // A duplicate on this node waits for the first and takes its result (or tries again if it failed).
    const local = fn.claims.get(key);
    if (local) {
      const outcome = await local.then((value) => ({ value }), () => undefined);
      if (outcome) return skipped(outcome.value);
      continue;
    }
    let done!: (value: unknown) => void;
    let fail!: (err: unknown) => void;
    const mine = new Promise<unknown>((res, rej) => {
      done = res;
      fail = rej;
    });
    mine.catch(() => undefined);
    fn.claims.set(key, mine);
    let claimed = false;
    try {
      claimed = await state.putIfAbsent(ns, key, JSON.stringify({ status: "running", at: clock.now() }), {
        now: clock.now(),
        ttlMs: fn.config.timeoutMs + 60_000,
      });
      if (claimed) {
        const value = await o.invocations.enqueue(fn, event, attempt, signal, true);
        await state.put(ns, key, JSON.stringify(value === undefined ? { status: "done" } : { status: "done", value }), { now: clock.now(), ttlMs: idem.ttlMs });
        done(value);
        return value;
      }
      const current = await state.get(ns, key, { now: clock.now() });
      if (current === undefined) {
        fail(new Error("claim expired"));
        continue; // expired between the two calls: claim again
      }
      const parsed = JSON.parse(current) as { status: string; value?: unknown };
      if (parsed.status === "done") {
        done(parsed.value);
        return skipped(parsed.value);
      }
      // Another node runs this key: fail the attempt so it is retried after that one finished or let go.
      throw new SluiceError(ErrorCode.Throttled, `throttled: an invocation with idempotency key ${key} is running elsewhere`, { retryable: true });
    } catch (err) {
      if (claimed) await state.delete(ns, key).catch((e: unknown) => o.logger.error({ err: e, functionName: fn.name }, "idempotency claim not released"));
      fail(err);
      throw err;
    } finally {
      if (fn.claims.get(key) === mine) fn.claims.delete(key);
    }
  }
}
