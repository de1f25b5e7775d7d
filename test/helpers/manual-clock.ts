/**
 * A clock for tests of timing: `now()` only moves when the test calls `advance(ms)`, which fires the timers that
 * came due, in time order (or `advanceTo(at)`). Implements Sluice's `Clock` (bus, schedules).
 */
import type { Clock } from "../../src/clock.ts";

export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, { at: number; callback: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Moves time forward, firing every timer due on the way (each at its own time). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].callback();
    }
    this.#now = end;
  }

  /** Moves time forward to `at` (never back), firing the timers due on the way. */
  advanceTo(at: number): void {
    this.advance(Math.max(0, at - this.#now));
  }
}
