/**
 * `concurrency: { key, limit }`: at most `limit` runs of a workflow hold a slot per key value, across nodes. One
 * state value per (workflow, key) lists the holders and the runs queued behind them, changed by compare-and-set;
 * a run that finishes hands its slot to the oldest queued run.
 */
import type { StateStore } from "../store/contract.ts";

const ns = "sluice.workflow-slots";

interface SlotValue {
  holders: string[];
  queued: string[];
}

export class Slots {
  constructor(
    private readonly state: StateStore,
    private readonly now: () => number,
  ) {}

  async #update(workflow: string, key: string, change: (v: SlotValue) => void): Promise<SlotValue> {
    const k = `${workflow}\n${key}`;
    for (;;) {
      const now = this.now();
      const raw = await this.state.get(ns, k, { now });
      const value: SlotValue = raw === undefined ? { holders: [], queued: [] } : (JSON.parse(raw) as SlotValue);
      change(value);
      const next = JSON.stringify(value);
      const ok = raw === undefined ? await this.state.putIfAbsent(ns, k, next, { now }) : await this.state.compareAndSet(ns, k, raw, next, { now });
      if (ok) return value;
    }
  }

  /** True when `runId` holds a slot now; false when it was queued. */
  async acquire(workflow: string, key: string, runId: string, limit: number): Promise<boolean> {
    const v = await this.#update(workflow, key, (v) => {
      if (v.holders.includes(runId)) return;
      if (v.holders.length < limit) {
        v.holders.push(runId);
        v.queued = v.queued.filter((r) => r !== runId);
      } else if (!v.queued.includes(runId)) v.queued.push(runId);
    });
    return v.holders.includes(runId);
  }

  /** Frees `runId`'s slot; returns the queued runs that now hold one (to be woken). */
  async release(workflow: string, key: string, runId: string, limit: number): Promise<string[]> {
    let promoted: string[] = [];
    await this.#update(workflow, key, (v) => {
      promoted = [];
      v.holders = v.holders.filter((r) => r !== runId);
      while (v.holders.length < limit && v.queued.length > 0) {
        const next = v.queued.shift()!;
        v.holders.push(next);
        promoted.push(next);
      }
    });
    return promoted;
  }
}
