/**
 * One timer for the deadlines of all dispatched invocations instead of a setTimeout per invocation. It is
 * armed for the earliest deadline (deadlines mostly grow, so a dispatch rarely re-arms it) and cleared when
 * nothing is dispatched, so it keeps the process alive exactly while an invocation runs.
 */
import type { Clock } from "../clock.ts";
import type { Invocation } from "./records.ts";

export class Deadlines {
  #dispatched = 0;
  #timer: unknown;
  #timerAt = Infinity;

  /**
   * @param clock reads the time and arms the timer
   * @param dispatched every invocation running on an instance (what a sweep looks through)
   * @param onTimeout called for each invocation found past its deadline
   */
  constructor(
    private readonly clock: Clock,
    private readonly dispatched: () => Iterable<Invocation>,
    private readonly onTimeout: (inv: Invocation) => void,
  ) {}

  /** An invocation was dispatched with this deadline (epoch ms). */
  started(deadline: number): void {
    this.#dispatched++;
    this.#arm(deadline);
  }

  /** A dispatched invocation settled. */
  finished(): void {
    if (--this.#dispatched > 0) return;
    this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #arm(deadline: number): void {
    if (deadline >= this.#timerAt) return;
    this.clock.clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = this.clock.setTimeout(() => this.#sweep(), Math.max(1, deadline - this.clock.now()));
  }

  /** Times out every dispatched invocation past its deadline, then re-arms for the earliest one left. */
  #sweep(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.clock.now();
    const expired: Invocation[] = [];
    let next = Infinity;
    for (const inv of this.dispatched()) {
      if (inv.deadline <= now) expired.push(inv);
      else if (inv.deadline < next) next = inv.deadline;
    }
    for (const inv of expired) this.onTimeout(inv);
    if (next !== Infinity && this.#dispatched > 0) this.#arm(next);
  }
}
