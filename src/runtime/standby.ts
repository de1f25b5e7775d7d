/**
 * Standby workers: threads started ahead of need with the instance entry loaded but no function, which a
 * worker-mode cold start adopts instead of starting a thread. They belong to no function.
 */
import type { Logger } from "../logger.ts";
import { defaultMemoryMb } from "./define.ts";
import { startStandbyWorker, type StandbyWorker } from "./hosts.ts";
import type { FunctionRegistry } from "./registry.ts";

export class StandbyPool {
  readonly #workers = new Set<StandbyWorker>();
  #closed = false;

  constructor(
    private readonly registry: FunctionRegistry,
    private readonly size: number,
    private readonly logger: Logger,
  ) {}

  /** Standby workers up and ready to be adopted. */
  readyCount(): number {
    let n = 0;
    for (const s of this.#workers) if (s.ready) n++;
    return n;
  }

  /** A standby worker started with `memoryMb` (one that is up already, if there is one), now out of the pool. */
  take(memoryMb: number): StandbyWorker | undefined {
    let pick: StandbyWorker | undefined;
    for (const s of this.#workers) {
      if (s.memoryMb !== memoryMb) continue;
      pick = s;
      if (s.ready) break;
    }
    if (pick) this.#workers.delete(pick);
    return pick;
  }

  /** Stops standbys of a memory setting no longer wanted and starts new ones up to the pool's size. */
  replenish(): void {
    const entry = this.registry.entry;
    if (this.#closed || !entry) return;
    const memoryMb = this.#memoryMb();
    for (const s of [...this.#workers]) {
      if (s.memoryMb !== memoryMb) {
        this.#workers.delete(s);
        void s.terminate();
      }
    }
    if (memoryMb === undefined) return;
    while (this.#workers.size < this.size) {
      const s: StandbyWorker = startStandbyWorker(entry, memoryMb, {
        onReady: () => undefined,
        onExit: (kind, detail) => {
          // Not restarted here (a thread that cannot start would loop): the next cold start replaces it.
          if (!this.#workers.delete(s)) return;
          if (kind !== "terminated") this.logger.warn({ kind, detail }, "standby worker stopped");
        },
      });
      this.#workers.add(s);
    }
  }

  /** Starts no more standbys and stops those there are. */
  close(): Promise<void>[] {
    this.#closed = true;
    const stopping = [...this.#workers].map((s) => s.terminate());
    this.#workers.clear();
    return stopping;
  }

  /**
   * The memory setting standby workers are started with (resourceLimits are fixed at thread start): the most
   * common one among worker-mode functions loaded from files, the default on a tie. None without such functions.
   */
  #memoryMb(): number | undefined {
    const counts = new Map<number, number>();
    for (const fn of this.registry.values()) {
      if (fn.file && fn.config.isolation !== "process") counts.set(fn.config.memoryMb, (counts.get(fn.config.memoryMb) ?? 0) + 1);
    }
    let best: number | undefined;
    let bestCount = 0;
    for (const [mb, n] of counts) {
      if (n > bestCount || (n === bestCount && mb === defaultMemoryMb)) {
        best = mb;
        bestCount = n;
      }
    }
    return best;
  }
}
