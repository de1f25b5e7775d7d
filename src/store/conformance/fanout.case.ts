/** Conformance cases: one event to several queues, and waitForWork. */
import assert from "node:assert/strict";
import type { Lease } from "../contract.ts";
import { T0, appendOptions, unique, entry, rejectsWithCode, within, needs, type CaseContext } from "./helpers.ts";

export function fanOutCases({ it, setup }: CaseContext): void {
  it("queues - the deliveries of one event to several queues are acked, retried and dead-lettered each on its own", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
    const e = entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }]);
    await store.events.append([e], appendOptions);
    const leases = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(
      leases.map((l) => [l.queue, l.payload, l.attempt]),
      [q1, q2, q3].map((q) => [q, e.encoded, 1]),
    );
    assert.equal(new Set(leases.map((l) => l.deliveryId)).size, 3);
    const [l1, l2, l3] = leases as [Lease, Lease, Lease];

    assert.deepEqual(await store.queues.ack([l1]), { lost: [] });
    await store.queues.retry(l2, { now: T0, delayMs: 500, error: "boom" });
    await store.queues.deadLetter(l3, { reason: "non-retriable", error: "bad", now: T0 + 10 });
    assert.deepEqual(await store.admin.stats([q1, q2, q3], { now: T0 + 10 }), [
      { queue: q1, ready: 0, delayed: 0, leased: 0, dead: 0 },
      { queue: q2, ready: 0, delayed: 1, leased: 0, dead: 0 },
      { queue: q3, ready: 0, delayed: 0, leased: 0, dead: 1 },
    ]);
    const [dead] = await store.admin.listDead(q3, { limit: 10 });
    assert.equal(dead?.deliveryId, l3.deliveryId);
    assert.equal(dead?.payload, e.encoded);

    // The retried delivery keeps its id; the acked one is not delivered again.
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 499 }), []);
    const again = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 500 });
    assert.deepEqual(
      again.map((l) => [l.deliveryId, l.queue, l.attempt, l.lastError]),
      [[l2.deliveryId, q2, 2, "boom"]],
    );
    assert.deepEqual(await store.queues.ack(again), { lost: [] });
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 60_000 }), []);
  });

  it("queues - an expired lease of a fan-out event is leased again for its unacked deliveries only", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
    await store.events.append([entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }])], appendOptions);
    const first = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as [Lease, Lease, Lease];
    assert.deepEqual(await store.queues.ack([first[1]]), { lost: [] });
    // Extended leases hold past the first expiry.
    await store.queues.extend(first[0], { now: T0, leaseMs: 200 });
    await store.queues.extend(first[2], { now: T0, leaseMs: 200 });
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 150 }), []);
    const second = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 200 });
    assert.deepEqual(
      second.map((l) => [l.deliveryId, l.queue, l.attempt]),
      [
        [first[0].deliveryId, q1, 2],
        [first[2].deliveryId, q3, 2],
      ],
    );
    // The first lease's token is stale now; the second settles both.
    assert.deepEqual(await store.queues.ack([first[0]]), { lost: [first[0].deliveryId] });
    await rejectsWithCode(store.queues.retry(first[2], { now: T0, delayMs: 0, error: "x" }), "E_LEASE_LOST");
    assert.deepEqual(await store.queues.ack(second), { lost: [] });
    assert.deepEqual(await store.queues.ack(second), { lost: second.map((l) => l.deliveryId) });
    assert.deepEqual(await store.admin.stats([q1, q2, q3], { now: T0 + 1000 }), [
      { queue: q1, ready: 0, delayed: 0, leased: 0, dead: 0 },
      { queue: q2, ready: 0, delayed: 0, leased: 0, dead: 0 },
      { queue: q3, ready: 0, delayed: 0, leased: 0, dead: 0 },
    ]);
  });

  it("queues - a lease for some queues, or smaller than an event's fan-out, takes part of its deliveries", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
    await store.events.append(
      [entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }]), entry(unique("bus"), "e2", [{ queue: q1 }, { queue: q2 }])],
      appendOptions,
    );
    assert.deepEqual(await store.admin.stats([q1, q2, q3], { now: T0 }), [
      { queue: q1, ready: 2, delayed: 0, leased: 0, dead: 0 },
      { queue: q2, ready: 2, delayed: 0, leased: 0, dead: 0 },
      { queue: q3, ready: 1, delayed: 0, leased: 0, dead: 0 },
    ]);
    const onlyQ2 = await store.queues.lease({ queues: [q2], max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(
      onlyQ2.map((l) => l.queue),
      [q2, q2],
    );
    const two = await store.queues.lease({ max: 2, leaseMs: 1000, now: T0 });
    assert.deepEqual(
      two.map((l) => l.queue),
      [q1, q3],
    );
    const rest = await store.queues.lease({ max: 2, leaseMs: 1000, now: T0 });
    assert.deepEqual(
      rest.map((l) => l.queue),
      [q1],
    );
    const all = [...onlyQ2, ...two, ...rest];
    assert.equal(new Set(all.map((l) => l.deliveryId)).size, 5);
    assert.deepEqual(await store.admin.stats([q1, q2, q3], { now: T0 }), [
      { queue: q1, ready: 0, delayed: 0, leased: 2, dead: 0 },
      { queue: q2, ready: 0, delayed: 0, leased: 2, dead: 0 },
      { queue: q3, ready: 0, delayed: 0, leased: 1, dead: 0 },
    ]);
    assert.deepEqual(await store.queues.ack(all), { lost: [] });
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 60_000 }), []);
  });

  it("queues - waitForWork resolves after an append or enqueue, and when its signal aborts", async (t) => {
    const { store, reopen } = await setup(t);
    const queue = unique("q");
    const controller = new AbortController();
    const woken = store.queues.waitForWork(controller.signal);
    await store.events.append([entry(unique("bus"), "e1", [{ queue }])], appendOptions);
    await within(woken, 5000, "a wake-up after append");

    const again = store.queues.waitForWork(controller.signal);
    await store.queues.enqueue([{ queue, payload: "p" }], { now: T0 });
    await within(again, 5000, "a wake-up after enqueue");

    // A second backend object on the same data wakes up too.
    const second = await reopen();
    const remote = second.queues.waitForWork(controller.signal);
    await store.queues.enqueue([{ queue, payload: "p2" }], { now: T0 });
    await within(remote, 10_000, "a wake-up of another backend object");

    const aborted = store.queues.waitForWork(controller.signal);
    controller.abort();
    await within(aborted, 5000, "the abort");
    await within(store.queues.waitForWork(controller.signal), 5000, "an already aborted signal");
  });

  // ---------------------------------------------------------------- state store
}
