/** Conformance cases: concurrent leasers, two backend objects on one data set, and large batches. */
import assert from "node:assert/strict";
import type { Lease, StorageBackend } from "../contract.ts";
import { T0, appendOptions, unique, entry, needs, type CaseContext } from "./helpers.ts";

export function concurrencyCases({ it, setup }: CaseContext): void {
  it("queues - concurrent lease calls never lease the same delivery twice", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    const total = 300;
    await store.queues.enqueue(
      Array.from({ length: total }, (_, i) => ({ queue, payload: `p${i}`, ...(i % 3 === 0 ? { partitionKey: `k${i % 7}` } : {}) })),
      { now: T0 },
    );
    const calls = await Promise.all(Array.from({ length: 12 }, () => store.queues.lease({ max: 40, leaseMs: 60_000, now: T0 })));
    const ids = calls.flat().map((l) => l.deliveryId);
    assert.equal(new Set(ids).size, ids.length, "a delivery was leased twice");
    // Keyless (200) plus one head per key (7) are leasable.
    assert.equal(ids.length, 207);
  });

  it("queues - two backend objects on the same data never lease the same delivery twice", async (t) => {
    const { store, reopen } = await setup(t);
    const second = await reopen();
    const queue = unique("q");
    const total = 400;
    await store.queues.enqueue(
      Array.from({ length: total }, (_, i) => ({ queue, payload: `p${i}` })),
      { now: T0 },
    );
    const leased: Lease[] = [];
    const worker = async (s: StorageBackend) => {
      for (;;) {
        const batch = await s.queues.lease({ queues: [queue], max: 25, leaseMs: 60_000, now: T0 });
        if (batch.length === 0) return;
        leased.push(...batch);
        const { lost } = await s.queues.ack(batch);
        assert.deepEqual(lost, []);
      }
    };
    await Promise.all([worker(store), worker(second), worker(store), worker(second)]);
    const ids = leased.map((l) => l.deliveryId);
    assert.equal(new Set(ids).size, ids.length, "a delivery was leased twice");
    assert.equal(ids.length, total);
    assert.deepEqual(await store.admin.stats([queue], { now: T0 }), [{ queue, ready: 0, delayed: 0, leased: 0, dead: 0 }]);
  });

  it("queues - lease and ack of 1000 deliveries in one call each", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await store.events.append(
      Array.from({ length: 100 }, (_, i) => entry(unique("bus"), `e${i}`, Array.from({ length: 10 }, () => ({ queue })))),
      appendOptions,
    );
    const leases = await store.queues.lease({ max: 1000, leaseMs: 60_000, now: T0 });
    assert.equal(leases.length, 1000);
    assert.deepEqual(await store.queues.ack(leases), { lost: [] });
    assert.deepEqual(await store.admin.stats([queue], { now: T0 + 120_000 }), [
      { queue, ready: 0, delayed: 0, leased: 0, dead: 0 },
    ]);
  });
}
