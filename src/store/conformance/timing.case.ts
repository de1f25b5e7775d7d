/**
 * Conformance cases on real time, for every backend: the guarantees the manual-clock cases check (lease expiry,
 * retry delays, extension, delayed deliveries, per-key order under retries, dead letters, dedupe, read ranges,
 * trim, fan-out, durability), with short real durations, so that a backend on server time proves them too.
 * Nothing here asserts an upper bound on time except generous deadlines for things that must happen.
 */
import assert from "node:assert/strict";
import type { Lease, LeaseRequest, StorageBackend } from "../contract.ts";
import { entry, enqueueEach, payloads, rejectsWithCode, unique, type CaseContext } from "./helpers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Declares the queues with `leaseMs`, as a deployment does before it leases. */
async function declare(store: StorageBackend, leaseMs: number, ...queues: string[]): Promise<void> {
  await store.declare({ dedupeWindowMs: 60_000, queues: queues.map((queue) => ({ queue, leaseMs })) });
}

/** Leases (on real time) until `done` accepts what was gathered, or fails after `ms`. */
async function leaseUntil(store: StorageBackend, request: Omit<LeaseRequest, "now">, done: (all: Lease[]) => boolean, ms = 10_000): Promise<Lease[]> {
  const all: Lease[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    all.push(...(await store.queues.lease({ ...request, now: Date.now() })));
    if (done(all)) return all;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms; leased so far: ${JSON.stringify(payloads(all))}`);
    await sleep(25);
  }
}

const now = () => Date.now();

export function timingCases({ it, setup }: CaseContext): void {
  it("timing - a lease hides its delivery until it expires; then a new lease with a new token and the next attempt", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 1000, queue);
    await enqueueEach(store, queue, ["p1"], { now: now() });
    const [first] = (await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: now() })) as [Lease];
    assert.equal(first.attempt, 1);
    const leasedAt = Date.now();
    assert.ok(first.leaseUntil >= leasedAt + 900, "leaseUntil is about leaseMs ahead");
    assert.deepEqual(await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: now() }), []);
    const [second] = (await leaseUntil(store, { queues: [queue], max: 10, leaseMs: 1000 }, (all) => all.length > 0)) as [Lease];
    assert.ok(Date.now() - leasedAt >= 900, "not leased again before the lease expired");
    assert.equal(second.deliveryId, first.deliveryId);
    assert.equal(second.attempt, 2);
    assert.notEqual(second.token, first.token);

    assert.deepEqual(await store.queues.ack([first]), { lost: [first.deliveryId] });
    await rejectsWithCode(store.queues.retry(first, { delayMs: 0, error: "x", now: now() }), "E_LEASE_LOST");
    await rejectsWithCode(store.queues.deadLetter(first, { reason: "max-attempts", now: now() }), "E_LEASE_LOST");
    await rejectsWithCode(store.queues.extend(first, { leaseMs: 10_000, now: now() }), "E_LEASE_LOST");
    assert.deepEqual(await store.queues.ack([second]), { lost: [] });
    assert.deepEqual(await store.queues.ack([second]), { lost: [second.deliveryId] }, "settled: acking again reports it lost");
  });

  it("timing - retry makes the delivery leasable again after delayMs, with the error and the first enqueue time", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 30_000, queue);
    await enqueueEach(store, queue, ["p1"], { now: now() });
    const [lease] = (await store.queues.lease({ queues: [queue], max: 1, leaseMs: 30_000, now: now() })) as [Lease];
    const retriedAt = Date.now();
    await store.queues.retry(lease, { delayMs: 700, error: "boom 1", now: retriedAt });
    assert.deepEqual(await store.queues.lease({ queues: [queue], max: 1, leaseMs: 30_000, now: now() }), []);
    const [second] = (await leaseUntil(store, { queues: [queue], max: 1, leaseMs: 30_000 }, (all) => all.length > 0)) as [Lease];
    assert.ok(Date.now() - retriedAt >= 650, "not leasable before the delay");
    assert.equal(second.deliveryId, lease.deliveryId);
    assert.equal(second.attempt, 2);
    assert.equal(second.lastError, "boom 1");
    assert.equal(second.enqueuedAt, lease.enqueuedAt);
    await store.queues.retry(second, { delayMs: 0, error: "boom 2", now: now() });
    const [third] = (await leaseUntil(store, { queues: [queue], max: 1, leaseMs: 30_000 }, (all) => all.length > 0)) as [Lease];
    assert.deepEqual([third.attempt, third.lastError], [3, "boom 2"]);
    assert.deepEqual(await store.queues.ack([third]), { lost: [] });
  });

  it("timing - extend keeps a lease past its original expiry", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 2000, queue);
    await enqueueEach(store, queue, ["p1"], { now: now() });
    const [lease] = (await store.queues.lease({ queues: [queue], max: 1, leaseMs: 2000, now: now() })) as [Lease];
    const until = Date.now() + 3500;
    while (Date.now() < until) {
      await sleep(400);
      await store.queues.extend(lease, { leaseMs: 2000, now: now() });
      assert.deepEqual(await store.queues.lease({ queues: [queue], max: 1, leaseMs: 2000, now: now() }), [], "an extended lease holds");
    }
    const [stats] = await store.admin.stats([queue], { now: now() });
    assert.equal((stats?.ready ?? 0) + (stats?.delayed ?? 0) + (stats?.leased ?? 0), 1);
    assert.deepEqual(await store.queues.ack([lease]), { lost: [] });
  });

  it("timing - availableAt delays a delivery; a keyed one enqueued with it goes at once", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 30_000, queue);
    const availableAt = Date.now() + 800;
    await store.queues.enqueue(
      [
        { queue, payload: "later", availableAt },
        { queue, payload: "keyed", partitionKey: "k" },
      ],
      { now: now() },
    );
    const first = await leaseUntil(store, { queues: [queue], max: 10, leaseMs: 30_000 }, (all) => all.length > 0);
    assert.deepEqual(payloads(first), ["keyed"]);
    const [later] = await leaseUntil(store, { queues: [queue], max: 10, leaseMs: 30_000 }, (all) => all.length > 0);
    assert.ok(Date.now() >= availableAt - 50, "not leased before availableAt");
    assert.deepEqual([later?.payload, later?.attempt], ["later", 1]);
  });

  it("timing - per-key order holds through a retry: a key's next delivery waits until its head is acked", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 30_000, queue);
    await store.queues.enqueue(
      [
        { queue, payload: "k1-a", partitionKey: "k1" },
        { queue, payload: "k2-a", partitionKey: "k2" },
        { queue, payload: "k1-b", partitionKey: "k1" },
        { queue, payload: "free" },
      ],
      { now: now() },
    );
    const request = { queues: [queue], max: 10, leaseMs: 30_000 };
    const first = await leaseUntil(store, request, (all) => all.length >= 3);
    assert.deepEqual(payloads(first).sort(), ["free", "k1-a", "k2-a"]);
    const byPayload = new Map(first.map((l) => [l.payload, l]));
    await store.queues.retry(byPayload.get("k1-a") as Lease, { delayMs: 300, error: "boom", now: now() });
    await store.queues.ack([byPayload.get("k2-a") as Lease, byPayload.get("free") as Lease]);
    const again = await leaseUntil(store, request, (all) => all.length > 0);
    assert.deepEqual([again[0]?.payload, again[0]?.attempt, again.length], ["k1-a", 2, 1], "k1-b does not overtake its failing head");
    await store.queues.ack(again);
    const next = await leaseUntil(store, request, (all) => all.length > 0);
    assert.deepEqual(payloads(next), ["k1-b"]);
    await store.queues.deadLetter(next[0] as Lease, { reason: "non-retriable", now: now() });
  });

  it("timing - dead letters keep reason, attempts and last error; list, redrive and purge", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 30_000, queue);
    const t0 = Date.now();
    await store.queues.enqueue(
      [
        { queue, payload: "d1", partitionKey: "k" },
        { queue, payload: "d2" },
        { queue, payload: "d3" },
      ],
      { now: t0 },
    );
    const request = { queues: [queue], max: 10, leaseMs: 30_000 };
    const leases = await leaseUntil(store, request, (all) => all.length >= 3);
    const by = new Map(leases.map((l) => [l.payload, l]));
    await store.queues.retry(by.get("d1") as Lease, { delayMs: 0, error: "first failure", now: now() });
    const [d1] = (await leaseUntil(store, request, (all) => all.length > 0)) as [Lease];
    const deadAt = Date.now();
    await store.queues.deadLetter(d1, { reason: "max-attempts", now: deadAt });
    await store.queues.deadLetter(by.get("d2") as Lease, { reason: "non-retriable", error: "explicit", now: deadAt });
    await store.queues.deadLetter(by.get("d3") as Lease, { reason: "max-age", now: deadAt });
    assert.deepEqual(await store.queues.lease({ ...request, now: now() }), [], "dead letters are not leasable");

    const dead = await store.admin.getDead(d1.deliveryId);
    assert.deepEqual({ ...dead, enqueuedAt: 0 }, {
      deliveryId: d1.deliveryId,
      queue,
      payload: "d1",
      partitionKey: "k",
      reason: "max-attempts",
      attempts: 2,
      lastError: "first failure",
      enqueuedAt: 0,
      deadAt,
    });
    assert.ok(Math.abs((dead?.enqueuedAt ?? 0) - t0) < 60_000, "enqueuedAt is the enqueue time");
    const page1 = await store.admin.listDead(queue, { limit: 2 });
    assert.equal(page1.length, 2);
    const page2 = await store.admin.listDead(queue, { limit: 2, afterId: page1[1]?.deliveryId as string });
    assert.deepEqual(
      [...page1, ...page2].map((d) => d.payload).sort(),
      ["d1", "d2", "d3"],
    );
    const [stats] = await store.admin.stats([queue], { now: now() });
    assert.deepEqual([stats?.dead, (stats?.ready ?? 0) + (stats?.delayed ?? 0) + (stats?.leased ?? 0)], [3, 0]);

    assert.equal(await store.admin.redrive(queue, { ids: [by.get("d2")?.deliveryId as string, "no-such-id"], now: now() }), 1);
    const [redriven] = (await leaseUntil(store, request, (all) => all.length > 0)) as [Lease];
    assert.deepEqual([redriven.payload, redriven.attempt, redriven.lastError], ["d2", 1, undefined]);
    await store.queues.ack([redriven]);
    assert.equal(await store.admin.purgeDead(queue, { ids: [d1.deliveryId] }), 1);
    assert.equal(await store.admin.getDead(d1.deliveryId), undefined);
    assert.equal(await store.admin.redrive(queue, { now: now() }), 1);
    assert.deepEqual(payloads(await leaseUntil(store, request, (all) => all.length > 0)), ["d3"]);
    assert.equal(await store.admin.purgeDead(queue), 0);
  });

  it("timing - dedupe inside the window on real time; per bus and source; a zero window disables it", async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    await declare(store, 30_000, queue);
    const options = () => ({ now: now(), dedupeWindowMs: 60_000 });
    const [first] = await store.events.append([entry(bus, "e1", [{ queue }])], options());
    assert.equal(first?.status, "stored");
    assert.deepEqual(await store.events.append([entry(bus, "e1", [{ queue }])], options()), [{ status: "duplicate", seq: first?.seq }]);
    const others = await store.events.append([entry(bus, "e1", [{ queue }], "other-source"), entry(unique("bus"), "e1", [{ queue }])], options());
    assert.deepEqual(
      others.map((r) => r.status),
      ["stored", "stored"],
    );
    const batch = await store.events.append([entry(bus, "e9", [{ queue }]), entry(bus, "e9", [{ queue }])], options());
    assert.deepEqual(batch[1], { status: "duplicate", seq: batch[0]?.seq });
    const off = await store.events.append([entry(bus, "e2"), entry(bus, "e2")], { now: now(), dedupeWindowMs: 0 });
    assert.deepEqual(
      off.map((r) => r.status),
      ["stored", "stored"],
    );
    const leases = await leaseUntil(store, { queues: [queue], max: 100, leaseMs: 30_000 }, (all) => all.length >= 4);
    await sleep(200);
    leases.push(...(await store.queues.lease({ queues: [queue], max: 100, leaseMs: 30_000, now: now() })));
    assert.equal(leases.length, 4, "one delivery per stored event, none for duplicates");
  });

  it("timing - read pages by afterSeq and filters by storedAt; trim drops what was stored before a time", async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    await declare(store, 30_000, queue);
    for (let i = 0; i < 5; i++) {
      await store.events.append([entry(bus, `e${i}`, [{ queue }]), entry(unique("bus"), `o${i}`)], { now: now(), dedupeWindowMs: 0 });
      await sleep(30);
    }
    const all = await store.events.read(bus, { limit: 100 });
    assert.deepEqual(
      all.map((e) => e.eventId),
      ["e0", "e1", "e2", "e3", "e4"],
    );
    for (let i = 1; i < all.length; i++) {
      assert.ok((all[i]?.seq as number) > (all[i - 1]?.seq as number));
      assert.ok((all[i]?.storedAt as number) >= (all[i - 1]?.storedAt as number));
    }
    const page = await store.events.read(bus, { limit: 2, afterSeq: all[1]?.seq as number });
    assert.deepEqual(
      page.map((e) => e.eventId),
      ["e2", "e3"],
    );
    const at2 = all[2]?.storedAt as number;
    const at4 = all[4]?.storedAt as number;
    if (at2 > (all[1]?.storedAt as number) && at4 > (all[3]?.storedAt as number)) {
      const ids = (await store.events.read(bus, { fromAt: at2, toAt: at4, limit: 100 })).map((e) => e.eventId);
      assert.deepEqual(ids, ["e2", "e3"]);
      assert.equal(await store.events.trim(bus, at2), 2);
      assert.deepEqual(
        (await store.events.read(bus, { limit: 100 })).map((e) => e.eventId),
        ["e2", "e3", "e4"],
      );
    }
    const leases = await leaseUntil(store, { queues: [queue], max: 100, leaseMs: 30_000 }, (l) => l.length >= 5);
    assert.equal(leases.length, 5, "deliveries outlive the archived events");
  });

  it("timing - one event to three queues: acked, retried and dead-lettered each on its own", async (t) => {
    const { store } = await setup(t);
    const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
    await declare(store, 30_000, q1, q2, q3);
    const e = entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }]);
    await store.events.append([e], { now: now(), dedupeWindowMs: 60_000 });
    const request = { queues: [q1, q2, q3], max: 10, leaseMs: 30_000 };
    const leases = await leaseUntil(store, request, (all) => all.length >= 3);
    const by = new Map(leases.map((l) => [l.queue, l]));
    assert.equal(new Set(leases.map((l) => l.deliveryId)).size, 3);
    assert.deepEqual(await store.queues.ack([by.get(q1) as Lease]), { lost: [] });
    await store.queues.retry(by.get(q2) as Lease, { delayMs: 200, error: "boom", now: now() });
    await store.queues.deadLetter(by.get(q3) as Lease, { reason: "non-retriable", error: "bad", now: now() });
    const again = await leaseUntil(store, request, (all) => all.length > 0);
    assert.deepEqual(
      again.map((l) => [l.deliveryId, l.queue, l.attempt, l.lastError]),
      [[by.get(q2)?.deliveryId, q2, 2, "boom"]],
    );
    await store.queues.ack(again);
    const stats = await store.admin.stats([q1, q2, q3], { now: now() });
    assert.deepEqual(
      stats.map((s) => [s.queue, s.ready + s.delayed + s.leased, s.dead]),
      [
        [q1, 0, 0],
        [q2, 0, 0],
        [q3, 0, 1],
      ],
    );
  });

  it("timing - events, leases, dead letters, dedupe and state survive close and reopen", async (t) => {
    const { store, reopen } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    await declare(store, 30_000, queue);
    await store.events.append([entry(bus, "e1", [{ queue, partitionKey: "k" }]), entry(bus, "e2", [{ queue, partitionKey: "k" }]), entry(bus, "e3", [{ queue }])], {
      now: now(),
      dedupeWindowMs: 60_000,
    });
    const leases = await leaseUntil(store, { queues: [queue], max: 10, leaseMs: 30_000 }, (all) => all.length >= 2);
    const by = new Map(leases.map((l) => [JSON.parse(l.payload).id as string, l]));
    assert.deepEqual([...by.keys()].sort(), ["e1", "e3"]);
    await store.queues.deadLetter(by.get("e3") as Lease, { reason: "non-retriable", error: "nope", now: now() });
    await store.state.put("ns", "k", "v", { now: now(), ttlMs: 60_000 });
    await store.close();

    const again = await reopen();
    assert.deepEqual(
      (await again.events.read(bus, { limit: 10 })).map((e) => e.eventId),
      ["e1", "e2", "e3"],
    );
    assert.equal((await again.events.append([entry(bus, "e1")], { now: now(), dedupeWindowMs: 60_000 }))[0]?.status, "duplicate");
    assert.equal((await again.admin.getDead(by.get("e3")?.deliveryId as string))?.lastError, "nope");
    assert.equal(await again.state.get("ns", "k", { now: now() }), "v");
    assert.deepEqual(await again.queues.lease({ queues: [queue], max: 10, leaseMs: 30_000, now: now() }), [], "the lease still holds");
    assert.deepEqual(await again.queues.ack([by.get("e1") as Lease]), { lost: [] }, "the old token settles after a restart");
    const [e2] = await leaseUntil(again, { queues: [queue], max: 10, leaseMs: 30_000 }, (all) => all.length > 0);
    assert.deepEqual([JSON.parse(e2?.payload as string).id, e2?.attempt], ["e2", 1]);
  });

  it("timing - 1000 deliveries of one append are leased and acked in large batches", async (t) => {
    const { store } = await setup(t);
    const queue = unique("q");
    await declare(store, 60_000, queue);
    await store.events.append(
      Array.from({ length: 100 }, (_, i) => entry(unique("bus"), `e${i}`, Array.from({ length: 10 }, () => ({ queue })))),
      { now: now(), dedupeWindowMs: 60_000 },
    );
    const leases = await leaseUntil(store, { queues: [queue], max: 1000, leaseMs: 60_000 }, (all) => all.length >= 1000);
    assert.equal(new Set(leases.map((l) => l.deliveryId)).size, 1000);
    assert.deepEqual(await store.queues.ack(leases), { lost: [] });
    const [stats] = await store.admin.stats([queue], { now: now() });
    assert.equal((stats?.ready ?? 0) + (stats?.delayed ?? 0) + (stats?.leased ?? 0), 0);
  });
}
