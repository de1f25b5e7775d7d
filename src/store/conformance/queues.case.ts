/** Conformance cases: delivery queues: leases and tokens, ack, retry, extend, delays, order, per-key ordering, stats. */
import assert from "node:assert/strict";
import type { Lease } from "../contract.ts";
import { T0, appendOptions, unique, entry, enqueueEach, payloads, rejectsWithCode, needs, leaseNextOfKey, type CaseContext } from "./helpers.ts";

export function queueCases({ it, setup }: CaseContext): void {
  it("queues - a lease hides its delivery until it expires; then it is leased again with a new token", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1"]);
    const [first] = await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: T0 });
    assert.equal(first?.attempt, 1);
    assert.equal(first?.leaseUntil, T0 + 1000);
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 999 }), []);

    const [second] = await store.queues.lease({ queues: [queue], max: 10, leaseMs: 500, now: T0 + 1000 });
    assert.equal(second?.deliveryId, first?.deliveryId);
    assert.equal(second?.attempt, 2);
    assert.equal(second?.leaseUntil, T0 + 1500);
    assert.notEqual(second?.token, first?.token);
    const [third] = await store.queues.lease({ max: 10, leaseMs: 500, now: T0 + 1500 });
    assert.equal(third?.attempt, 3);
  });

  it("queues - a stale token fails ack, retry, deadLetter and extend with E_LEASE_LOST", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1"]);
    const [stale] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 })) as [Lease];
    const [fresh] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 100 })) as [Lease];
    assert.equal(fresh.deliveryId, stale.deliveryId);

    assert.deepEqual(await store.queues.ack([stale]), { lost: [stale.deliveryId] });
    await rejectsWithCode(store.queues.retry(stale, { now: T0, delayMs: 0, error: "x" }), "E_LEASE_LOST");
    await rejectsWithCode(store.queues.deadLetter(stale, { reason: "max-attempts", now: T0 }), "E_LEASE_LOST");
    await rejectsWithCode(store.queues.extend(stale, { now: T0, leaseMs: 10_000 }), "E_LEASE_LOST");
    await rejectsWithCode(store.queues.extend({ deliveryId: "no-such-id", token: "t", queue }, { now: T0, leaseMs: 1 }), "E_LEASE_LOST");

    // The stale calls changed nothing: the fresh lease still holds.
    assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 150 }), []);
    assert.deepEqual(await store.queues.ack([fresh]), { lost: [] });
    // Settled: acking again reports it lost.
    assert.deepEqual(await store.queues.ack([fresh]), { lost: [fresh.deliveryId] });
    assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 10_000 }), []);
  });

  it("queues - an expired lease nobody re-leased can still be acked", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1", "p2"]);
    const leases = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 });
    assert.equal(leases.length, 2);
    assert.deepEqual(await store.queues.ack(leases), { lost: [] });
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 1000 }), []);
  });

  it("queues - ack settles a batch and reports only the lost ones", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1", "p2", "p3"]);
    const leases = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 });
    const bogus = { deliveryId: leases[1]?.deliveryId as string, token: "not-the-token" };
    const result = await store.queues.ack([leases[0] as Lease, bogus, leases[2] as Lease]);
    assert.deepEqual(result, { lost: [bogus.deliveryId] });
    const again = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 1000 });
    assert.deepEqual(payloads(again), ["p2"]);
  });

  it("queues - retry records the error and makes the delivery leasable again at availableAt", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1"]);
    const [lease] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 })) as [Lease];
    await store.queues.retry(lease, { now: T0, delayMs: 500, error: "boom 1" });
    assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 499 }), []);
    const [second] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 500 })) as [Lease];
    assert.equal(second.deliveryId, lease.deliveryId);
    assert.equal(second.attempt, 2);
    assert.equal(second.lastError, "boom 1");
    assert.equal(second.enqueuedAt, T0, "enqueuedAt stays the first enqueue time");
    // The old token is spent.
    await rejectsWithCode(store.queues.retry(lease, { now: T0, delayMs: 0, error: "x" }), "E_LEASE_LOST");
    await store.queues.retry(second, { now: T0, delayMs: 500, error: "boom 2" });
    const [third] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 500 })) as [Lease];
    assert.equal(third.attempt, 3);
    assert.equal(third.lastError, "boom 2");
  });

  it("queues - extend keeps a lease past its original expiry", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["p1"]);
    const [lease] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 })) as [Lease];
    await store.queues.extend(lease, { now: T0, leaseMs: 5000 });
    assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 4999 }), []);
    const stats = await store.admin.stats([queue], { now: T0 + 4999 });
    assert.equal(stats[0]?.leased, 1);
    assert.deepEqual(await store.queues.ack([lease]), { lost: [] });
  });

  it("queues - availableAt delays a delivery; enqueue carries its payload and partition key", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await store.queues.enqueue(
      [
        { queue, payload: "later", availableAt: T0 + 1000 },
        { queue, payload: "keyed", partitionKey: "k" },
      ],
      { now: T0 },
    );
    await store.events.append([entry(unique("bus"), "e1", [{ queue, availableAt: T0 + 2000, payload: "from-append" }])], appendOptions);
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 10_000, now: T0 })), ["keyed"]);
    const [later] = await store.queues.lease({ max: 10, leaseMs: 10_000, now: T0 + 1000 });
    assert.equal(later?.payload, "later");
    assert.equal(later?.enqueuedAt, T0);
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 10_000, now: T0 + 1999 })), []);
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 10_000, now: T0 + 2000 })), ["from-append"]);
    await store.queues.enqueue([], { now: T0 });
  });

  it("queues - lease is oldest first and respects max and the queue filter", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const [qa, qb, qc] = [unique("qa"), unique("qb"), unique("qc")];
    for (let i = 0; i < 4; i++) {
      await enqueueEach(store, qa, [`a${i}`], { now: T0 + i * 10 });
      await enqueueEach(store, qb, [`b${i}`], { now: T0 + i * 10 + 1 });
      await enqueueEach(store, qc, [`c${i}`], { now: T0 + i * 10 + 2 });
    }
    const now = T0 + 1000;
    assert.deepEqual(payloads(await store.queues.lease({ queues: [qb, qa], max: 3, leaseMs: 100, now })), ["a0", "b0", "a1"]);
    assert.deepEqual(payloads(await store.queues.lease({ queues: [qc], max: 2, leaseMs: 100, now })), ["c0", "c1"]);
    assert.deepEqual(payloads(await store.queues.lease({ max: 4, leaseMs: 100, now })), ["b1", "a2", "b2", "c2"]);
    assert.deepEqual(await store.queues.lease({ queues: [], max: 10, leaseMs: 100, now }), []);
    assert.deepEqual(await store.queues.lease({ queues: [unique("none")], max: 10, leaseMs: 100, now }), []);
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 100, now })), ["a3", "b3", "c3"]);
  });

  it("queues - per-key ordering: a key's deliveries go one at a time, in order; other keys and keyless ones proceed", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await store.queues.enqueue(
      [
        { queue, payload: "k1-a", partitionKey: "k1" },
        { queue, payload: "k2-a", partitionKey: "k2" },
        { queue, payload: "k1-b", partitionKey: "k1" },
        { queue, payload: "free-1" },
        { queue, payload: "k1-c", partitionKey: "k1" },
        { queue, payload: "free-2" },
        { queue, payload: "k2-b", partitionKey: "k2" },
      ],
      { now: T0 },
    );
    const lease = (now: number) => store.queues.lease({ queues: [queue], max: 100, leaseMs: 1000, now });
    const first = await lease(T0);
    assert.deepEqual(payloads(first), ["k1-a", "k2-a", "free-1", "free-2"]);
    const byPayload = new Map(first.map((l) => [l.payload, l]));
    assert.equal(byPayload.get("k1-a")?.partitionKey, "k1");
    assert.deepEqual(await lease(T0), [], "a leased key holds its later deliveries");

    // k1's head fails and backs off: it holds k1 (k1-b must not overtake it); k2 proceeds.
    await store.queues.retry(byPayload.get("k1-a") as Lease, { now: T0, delayMs: 500, error: "boom" });
    await store.queues.ack([byPayload.get("k2-a") as Lease, byPayload.get("free-1") as Lease, byPayload.get("free-2") as Lease]);
    const k2b = await lease(T0 + 100);
    assert.deepEqual(payloads(k2b), ["k2-b"]);
    await store.queues.ack(k2b);
    assert.deepEqual(await lease(T0 + 499), []);

    const [k1a, ...none] = await lease(T0 + 500);
    assert.deepEqual([k1a?.payload, k1a?.attempt, none.length], ["k1-a", 2, 0]);
    // A lease expiry gives the key back to the same head, not to the next delivery.
    const [k1aAgain, ...none2] = await lease(T0 + 1500);
    assert.deepEqual([k1aAgain?.payload, k1aAgain?.attempt, none2.length], ["k1-a", 3, 0]);
    await store.queues.ack([k1aAgain as Lease]);

    const [k1b, ...none3] = await lease(T0 + 1500);
    assert.deepEqual([k1b?.payload, none3.length], ["k1-b", 0]);
    // Dead-lettering also releases the key.
    await store.queues.deadLetter(k1b as Lease, { reason: "non-retriable", error: "bad", now: T0 + 1500 });
    assert.deepEqual(payloads(await lease(T0 + 1500)), ["k1-c"]);
  });

  it("queues - the same partition key in different queues is ordered independently", async (t) => {
    const { store } = await setup(t);
    const [qa, qb] = [unique("qa"), unique("qb")];
    await store.events.append(
      [
        entry(unique("bus"), "e1", [
          { queue: qa, partitionKey: "k" },
          { queue: qb, partitionKey: "k" },
        ]),
      ],
      appendOptions,
    );
    const leases = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(leases.map((l) => l.queue).sort(), [qa, qb].sort());
  });

  it("queues - keyed deliveries added while the key's head is leased wait for it", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await enqueueEach(store, queue, ["k-1"], { partitionKey: "k" });
    const [head] = (await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 })) as [Lease];
    await enqueueEach(store, queue, ["k-2", "k-3"], { partitionKey: "k" });
    assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 }), []);
    await store.queues.ack([head]);
    assert.deepEqual(payloads(await leaseNextOfKey(store, { max: 10, leaseMs: 1000, now: T0 })), ["k-2"]);
  });

  it("queues - stats count ready, delayed, leased and dead per queue", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const [qa, qb] = [unique("qa"), unique("qb")];
    await store.queues.enqueue(
      [
        { queue: qa, payload: "r1" },
        { queue: qa, payload: "r2" },
        { queue: qa, payload: "later", availableAt: T0 + 1000 },
        { queue: qa, payload: "k1", partitionKey: "k" },
        { queue: qa, payload: "k2", partitionKey: "k" },
        { queue: qb, payload: "b1" },
      ],
      { now: T0 },
    );
    const leased = await store.queues.lease({ queues: [qa], max: 2, leaseMs: 100, now: T0 });
    assert.deepEqual(payloads(leased), ["r1", "r2"]);
    await store.queues.deadLetter(leased[1] as Lease, { reason: "max-attempts", now: T0 });
    const unknown = unique("none");
    assert.deepEqual(await store.admin.stats([qa, qb, unknown], { now: T0 }), [
      // ready: k1; delayed: later (availableAt) and k2 (behind k1); leased: r1; dead: r2.
      { queue: qa, ready: 1, delayed: 2, leased: 1, dead: 1 },
      { queue: qb, ready: 1, delayed: 0, leased: 0, dead: 0 },
      { queue: unknown, ready: 0, delayed: 0, leased: 0, dead: 0 },
    ]);
    // After the lease expired and the delay passed.
    const all = await store.admin.stats(undefined, { now: T0 + 1000 });
    assert.deepEqual(
      all.filter((s) => s.queue === qa || s.queue === qb),
      [
        { queue: qa, ready: 3, delayed: 1, leased: 0, dead: 1 },
        { queue: qb, ready: 1, delayed: 0, leased: 0, dead: 0 },
      ].sort((x, y) => (x.queue < y.queue ? -1 : 1)),
    );
  });

  // ---------------------------------------------------------------- dead letters
}
