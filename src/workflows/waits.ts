/**
 * `step.waitForEvent` bookkeeping in the state store: the waiters of each event type (read by the wait router,
 * the target of one rule per awaited type), the event that satisfied a wait (written once, by whichever finds it
 * first: the router or the archive scan), and the due times of sleeping and waiting runs (re-armed at start-up).
 */
import { createHash } from "node:crypto";
import { decodeEvent } from "../event/codec.ts";
import type { CloudEvent } from "../event/types.ts";
import { compilePattern } from "../pattern/compile.ts";
import type { StorageBackend } from "../store/contract.ts";
import type { WaitMatch } from "./protocol.ts";
import { readPath } from "./spec.ts";

const waitersNs = (type: string) => `sluice.workflow-waits:${type}`;
const hitsNs = "sluice.workflow-wait-hits";
export const timersNs = "sluice.workflow-timers";

export interface Waiter {
  workflow: string;
  runId: string;
  stepId: string;
  triggerId: string;
  match?: WaitMatch;
  if?: Record<string, unknown>;
}

/** The rule that routes one awaited event type to the wait router: `workflow-wait.<type>.<hash>`, at most 64 characters. */
export function waitRuleName(type: string): string {
  const hash = createHash("sha256").update(type).digest("hex").slice(0, 8);
  const readable = type.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 40);
  return `workflow-wait.${readable}.${hash}`;
}

export function matchesWaiter(w: Pick<Waiter, "match" | "if" | "triggerId">, event: CloudEvent): boolean {
  if (event.id === w.triggerId) return false;
  if (w.match && JSON.stringify(readPath(event, w.match.path) ?? null) !== JSON.stringify(w.match.value)) return false;
  if (w.if) {
    try {
      if (!compilePattern(w.if).matches(event)) return false;
    } catch {
      return false;
    }
  }
  return true;
}

export class Waits {
  constructor(
    private readonly store: StorageBackend,
    private readonly now: () => number,
  ) {}

  register(type: string, w: Waiter, ttlMs: number | undefined): Promise<void> {
    return this.store.state.put(waitersNs(type), `${w.runId}/${w.stepId}`, JSON.stringify(w), { now: this.now(), ...(ttlMs === undefined ? {} : { ttlMs }) });
  }

  async unregister(type: string, runId: string, stepId: string): Promise<void> {
    await this.store.state.delete(waitersNs(type), `${runId}/${stepId}`);
    await this.store.state.delete(hitsNs, `${runId}/${stepId}`);
  }

  async waiters(type: string): Promise<Waiter[]> {
    const rows = await this.store.state.list(waitersNs(type), { now: this.now() });
    return rows.map((r) => JSON.parse(r.value) as Waiter);
  }

  /** Records `event` as the one that satisfies the wait unless one already does; returns the one that does. */
  async offer(runId: string, stepId: string, event: CloudEvent, encoded: string): Promise<CloudEvent> {
    const key = `${runId}/${stepId}`;
    const now = this.now();
    if (await this.store.state.putIfAbsent(hitsNs, key, encoded, { now, ttlMs: 30 * 86_400_000 })) return event;
    return (await this.hit(runId, stepId)) ?? event;
  }

  async hit(runId: string, stepId: string): Promise<CloudEvent | undefined> {
    const raw = await this.store.state.get(hitsNs, `${runId}/${stepId}`, { now: this.now() });
    return raw === undefined ? undefined : decodeEvent(raw);
  }

  /** The first matching event of `type` stored on the default bus from `fromAt` on (at most `maxEvents` read). */
  async scanArchive(type: string, w: Pick<Waiter, "match" | "if" | "triggerId">, fromAt: number, maxEvents = 20_000): Promise<{ event: CloudEvent; encoded: string } | undefined> {
    let afterSeq: number | undefined;
    let read = 0;
    while (read < maxEvents) {
      const page = await this.store.events.read("default", { fromAt, limit: 500, ...(afterSeq === undefined ? {} : { afterSeq }) });
      if (page.length === 0) return undefined;
      for (const stored of page) {
        // A cheap text test first: most archived events are of other types.
        if (!stored.encoded.includes(JSON.stringify(type))) continue;
        let event: CloudEvent;
        try {
          event = decodeEvent(stored.encoded);
        } catch {
          continue;
        }
        if (event.type === type && matchesWaiter(w, event)) return { event, encoded: stored.encoded };
      }
      read += page.length;
      afterSeq = page[page.length - 1]!.seq;
    }
    return undefined;
  }

  setTimer(runId: string, at: number): Promise<void> {
    return this.store.state.put(timersNs, runId, String(at), { now: this.now(), ttlMs: Math.max(0, at - this.now()) + 86_400_000 });
  }

  clearTimer(runId: string): Promise<void> {
    return this.store.state.delete(timersNs, runId);
  }

  async timers(): Promise<{ runId: string; at: number }[]> {
    const rows = await this.store.state.list(timersNs, { now: this.now() });
    return rows.map((r) => ({ runId: r.key, at: Number(r.value) })).filter((t) => Number.isFinite(t.at));
  }
}
