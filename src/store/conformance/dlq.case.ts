/** Conformance cases: dead letters: recording, listing, redrive and purge. */
import assert from "node:assert/strict";
import type { Lease } from "../contract.ts";
import { T0, unique, enqueueEach, payloads, needs, leaseNextOfKey, type CaseContext } from "./helpers.ts";

export function deadLetterCases({ it, setup }: CaseContext): void {
  it("dlq - deadLetter records reason, attempts, last error and timestamps; list pages oldest first", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await store.queues.enqueue(
      [
        { queue, payload: "d1", partitionKey: "k" },
        { queue, payload: "d2" },
        { queue, payload: "d3" },
      ],
      { now: T0 },
    );
    let leases = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 10 });
    await store.queues.retry(leases[0] as Lease, { now: T0, delayMs: 10, error: "first failure" });
    const [d1] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 20 })) as [Lease];
    await store.queues.deadLetter(d1, { reason: "max-attempts", now: T0 + 30 });
    await store.queues.deadLetter(leases[1] as Lease, { reason: "non-retriable", error: "explicit", now: T0 + 40 });
    await store.queues.deadLetter(leases[2] as Lease, { reason: "max-age", now: T0 + 50 });
    leases = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 1000 });
    assert.deepEqual(leases, [], "dead letters are no longer leasable");

    const dead = await store.admin.getDead(d1.deliveryId);
    assert.deepEqual(dead, {
      deliveryId: d1.deliveryId,
      queue,
      payload: "d1",
      partitionKey: "k",
      reason: "max-attempts",
      attempts: 2,
      lastError: "first failure",
      enqueuedAt: T0,
      deadAt: T0 + 30,
    });
    assert.equal(await store.admin.getDead("no-such-id"), undefined);

    const page1 = await store.admin.listDead(queue, { limit: 2 });
    assert.deepEqual(
      page1.map((d) => [d.payload, d.reason, d.attempts, d.lastError]),
      [
        ["d1", "max-attempts", 2, "first failure"],
        ["d2", "non-retriable", 1, "explicit"],
      ],
    );
    const page2 = await store.admin.listDead(queue, { limit: 2, afterId: page1[1]?.deliveryId as string });
    assert.deepEqual(
      page2.map((d) => [d.payload, d.lastError]),
      [["d3", undefined]],
    );
    assert.deepEqual(await store.admin.listDead(unique("none"), { limit: 10 }), []);
  });

  it("dlq - redrive moves dead letters back as fresh deliveries; purge deletes them", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    const other = unique("q");
    await enqueueEach(store, queue, ["d1", "d2", "d3", "d4"]);
    await enqueueEach(store, other, ["o1"]);
    for (const lease of await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) {
      await store.queues.retry(lease, { now: T0, delayMs: 0, error: "e" });
    }
    for (const lease of await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) {
      await store.queues.deadLetter(lease, { reason: "max-attempts", now: T0 });
    }
    const dead = await store.admin.listDead(queue, { limit: 10 });
    const [otherDead] = await store.admin.listDead(other, { limit: 10 });
    assert.equal(dead.length, 4);

    // By id: ids of another queue and unknown ids are ignored.
    const moved = await store.admin.redrive(queue, {
      ids: [dead[1]?.deliveryId as string, otherDead?.deliveryId as string, "no-such-id"],
      now: T0 + 100,
    });
    assert.equal(moved, 1);
    const [redriven] = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 100 })) as Lease[];
    assert.equal(redriven?.payload, "d2");
    assert.equal(redriven?.attempt, 1, "attempts start over");
    assert.equal(redriven?.lastError, undefined);
    assert.equal(redriven?.enqueuedAt, T0 + 100);
    await store.queues.ack([redriven as Lease]);

    assert.equal(await store.admin.purgeDead(queue, { ids: [dead[0]?.deliveryId as string, otherDead?.deliveryId as string] }), 1);
    assert.equal(await store.admin.getDead(dead[0]?.deliveryId as string), undefined);
    assert.equal((await store.admin.getDead(otherDead?.deliveryId as string))?.payload, "o1");

    // All of a queue.
    assert.equal(await store.admin.redrive(queue, { now: T0 + 200 }), 2);
    assert.deepEqual(payloads(await store.queues.lease({ queues: [queue], max: 10, leaseMs: 100, now: T0 + 200 })), ["d3", "d4"]);
    assert.equal(await store.admin.redrive(queue, { now: T0 + 200 }), 0);
    assert.equal(await store.admin.purgeDead(other), 1);
    assert.equal(await store.admin.purgeDead(other), 0);
    assert.deepEqual(await store.admin.listDead(other, { limit: 10 }), []);
  });

  it("dlq - a redriven keyed delivery queues behind pending deliveries of its key", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["k-1"], { partitionKey: "k" });
    const [k1] = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as [Lease];
    await store.queues.deadLetter(k1, { reason: "non-retriable", now: T0 });
    await enqueueEach(store, queue, ["k-2"], { partitionKey: "k" });
    assert.equal(await store.admin.redrive(queue, { now: T0 }), 1);
    const [k2] = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as Lease[];
    assert.equal(k2?.payload, "k-2");
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 }), []);
    await store.queues.ack([k2 as Lease]);
    assert.deepEqual(payloads(await leaseNextOfKey(store, { max: 10, leaseMs: 100, now: T0 })), ["k-1"]);
  });

  // ---------------------------------------------------------------- concurrency
}
