/**
 * Test helpers for the bus suite: an in-process function handler (registered through the broker's real
 * FunctionHandler seam) that records every call, and condition waits driven by events, never by sleeping.
 */
import { EventEmitter } from "node:events";
import type { Broker } from "../../src/bus/broker.ts";
import type { CloudEvent } from "../../src/event/types.ts";
import type { DeliveryContext, DeliveryEvents, FunctionHandler } from "../../src/bus/types.ts";

export interface Call {
  fn: string;
  event: CloudEvent;
  attempt: number;
  deliveryId: string;
  /** Clock time (broker clock) at the call. */
  at: number;
  ok?: boolean;
}

/** Fires "change" on every handler call and every delivery lifecycle event; waits check their condition then. */
export class Changes extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(100);
  }

  /** Resolves once `condition()` holds, checked now and on every change; rejects after `timeoutMs`. */
  until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try {
          ok = condition();
        } catch (err) {
          cleanup();
          reject(err);
          return;
        }
        if (ok) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("change", check);
      };
      this.on("change", check);
    });
  }
}

export class Recorder implements FunctionHandler {
  readonly calls: Call[] = [];
  readonly changes: Changes;
  /** What the handler does; throw to fail the attempt. */
  behaviour: (fn: string, event: CloudEvent, ctx: DeliveryContext) => unknown = () => undefined;
  readonly #now: () => number;

  constructor(changes: Changes, now: () => number = Date.now) {
    this.changes = changes;
    this.#now = now;
  }

  async deliver(fn: string, event: CloudEvent, ctx: DeliveryContext): Promise<void> {
    const call: Call = { fn, event, attempt: ctx.attempt, deliveryId: ctx.deliveryId, at: this.#now() };
    this.calls.push(call);
    this.changes.emit("change");
    try {
      await this.behaviour(fn, event, ctx);
      call.ok = true;
    } catch (err) {
      call.ok = false;
      throw err;
    } finally {
      this.changes.emit("change");
    }
  }

  ok(fn?: string): Call[] {
    return this.calls.filter((c) => c.ok === true && (fn === undefined || c.fn === fn));
  }
}

/** Records the broker's lifecycle notifications and turns them into changes. */
export function watch(broker: Broker, changes: Changes) {
  const seen = { delivered: [] as DeliveryEvents["delivered"][], retry: [] as DeliveryEvents["retry"][], dead: [] as DeliveryEvents["dead"][] };
  broker.on("delivered", (e) => {
    seen.delivered.push(e);
    changes.emit("change");
  });
  broker.on("retry", (e) => {
    seen.retry.push(e);
    changes.emit("change");
  });
  broker.on("dead", (e) => {
    seen.dead.push(e);
    changes.emit("change");
  });
  return seen;
}

/** Lets pending I/O callbacks and store round trips run (to check that something did NOT happen yet). */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export function ev(type: string, data: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { specversion: "1.0", source: "/test", type, data, ...extra };
}

/**
 * For conditions no event announces (another process picking up a change): checks every 10 ms until it holds,
 * failing after `timeoutMs`.
 */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
