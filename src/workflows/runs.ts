/** Runs in the state store: one value per run, written only by compare-and-set. */
import type { StateStore } from "../store/contract.ts";
import type { RunState } from "./run-state.ts";

export const runsNamespace = "sluice.workflow-runs";

export interface RunRecord {
  raw: string;
  state: RunState;
}

export class Runs {
  constructor(
    private readonly state: StateStore,
    private readonly now: () => number,
  ) {}

  async get(runId: string): Promise<RunRecord | undefined> {
    const raw = await this.state.get(runsNamespace, runId, { now: this.now() });
    return raw === undefined ? undefined : { raw, state: JSON.parse(raw) as RunState };
  }

  /** True when this call created the run. */
  create(run: RunState): Promise<boolean> {
    return this.state.putIfAbsent(runsNamespace, run.runId, JSON.stringify(run), { now: this.now() });
  }

  /** Writes `next` if the run is still `expected`; the new record, or undefined when it changed meanwhile. */
  async replace(expected: string, next: RunState, ttlMs?: number): Promise<RunRecord | undefined> {
    const raw = JSON.stringify(next);
    const ok = await this.state.compareAndSet(runsNamespace, next.runId, expected, raw, { now: this.now(), ...(ttlMs === undefined ? {} : { ttlMs }) });
    return ok ? { raw, state: next } : undefined;
  }

  async list(): Promise<RunState[]> {
    const rows = await this.state.list(runsNamespace, { now: this.now() });
    const out: RunState[] = [];
    for (const r of rows) {
      try {
        out.push(JSON.parse(r.value) as RunState);
      } catch {
        // A value that does not parse is no run of ours: skipped, not fatal for the listing.
      }
    }
    return out;
  }
}
