/** Conformance cases: the event log: append, dedupe, read, trim, appendAndLease. */
import assert from "node:assert/strict";
import { T0, appendOptions, unique, entry, payloads, rejectsWithCode, needs, type CaseContext } from "./helpers.ts";

export function eventCases({ it, setup }: CaseContext): void {
  it("events - append stores each event with its deliveries and returns increasing seqs", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const [qa, qb] = [unique("qa"), unique("qb")];
    const entries = [
      entry(bus, "e1", [{ queue: qa }, { queue: qb, payload: "transformed-e1" }]),
      entry(bus, "e2", [{ queue: qa }]),
      entry(bus, "e3", []),
    ];
    const results = await store.events.append(entries, appendOptions);
    assert.deepEqual(
      results.map((r) => r.status),
      ["stored", "stored", "stored"],
    );
    const seqs = results.map((r) => r.seq);
    assert.ok((seqs[0] as number) < (seqs[1] as number) && (seqs[1] as number) < (seqs[2] as number), `seqs ${seqs}`);

    const read = await store.events.read(bus, { limit: 10 });
    assert.deepEqual(
      read,
      entries.map((e, i) => ({ bus, seq: seqs[i], eventId: e.eventId, encoded: e.encoded, storedAt: T0 })),
    );

    const fromA = await store.queues.lease({ queues: [qa], max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(payloads(fromA), [entries[0]?.encoded, entries[1]?.encoded]);
    const fromB = await store.queues.lease({ queues: [qb], max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(payloads(fromB), ["transformed-e1"]);
    for (const lease of [...fromA, ...fromB]) {
      assert.equal(lease.attempt, 1);
      assert.equal(lease.enqueuedAt, T0);
      assert.equal(lease.leaseUntil, T0 + 1000);
      assert.equal(lease.partitionKey, undefined);
      assert.equal(lease.lastError, undefined);
    }
    assert.deepEqual(await store.events.append([], appendOptions), []);
  });

  it("events - a failing append stores none of its entries and does not affect concurrent appends", async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    const broken = { ...entry(bus, "bad"), encoded: null as unknown as string };
    const failing = store.events.append([entry(bus, "first", [{ queue }]), broken], appendOptions);
    const healthy = store.events.append([entry(bus, "other", [{ queue }])], appendOptions);
    await assert.rejects(failing);
    assert.equal((await healthy)[0]?.status, "stored");

    assert.deepEqual(
      (await store.events.read(bus, { limit: 10 })).map((e) => e.eventId),
      ["other"],
    );
    const leases = await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: T0 });
    assert.equal(leases.length, 1, "the failed call's first entry left no delivery behind");
    // The dedupe key of the rolled-back entry was not recorded either.
    const retried = await store.events.append([entry(bus, "first", [{ queue }])], appendOptions);
    assert.equal(retried[0]?.status, "stored");
  });

  it("events - dedupe: same key inside the window is a duplicate, outside it is stored again", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    const [first] = await store.events.append([entry(bus, "e1", [{ queue }])], { now: T0, dedupeWindowMs: 1000 });
    assert.equal(first?.status, "stored");

    const inside = await store.events.append([entry(bus, "e1", [{ queue }])], { now: T0 + 999, dedupeWindowMs: 1000 });
    assert.deepEqual(inside, [{ status: "duplicate", seq: first?.seq }]);
    // Another source with the same id, or the same key on another bus, is not a duplicate.
    const others = await store.events.append(
      [entry(bus, "e1", [{ queue }], "other-source"), entry(unique("bus"), "e1", [{ queue }])],
      { now: T0 + 999, dedupeWindowMs: 1000 },
    );
    assert.deepEqual(
      others.map((r) => r.status),
      ["stored", "stored"],
    );

    const outside = await store.events.append([entry(bus, "e1", [{ queue }])], { now: T0 + 1000, dedupeWindowMs: 1000 });
    assert.equal(outside[0]?.status, "stored");
    assert.ok((outside[0]?.seq as number) > (first?.seq as number));

    // Duplicates within one call, and the duplicate created no delivery.
    const batch = await store.events.append([entry(bus, "e9", [{ queue }]), entry(bus, "e9", [{ queue }])], {
      now: T0 + 1000,
      dedupeWindowMs: 1000,
    });
    assert.equal(batch[0]?.status, "stored");
    assert.deepEqual(batch[1], { status: "duplicate", seq: batch[0]?.seq });

    assert.deepEqual(
      (await store.events.read(bus, { limit: 10 })).map((e) => e.eventId),
      ["e1", "e1", "e1", "e9"],
    );
    const leases = await store.queues.lease({ queues: [queue], max: 100, leaseMs: 1000, now: T0 + 1000 });
    assert.equal(leases.length, 5, "one delivery per stored event, none for duplicates");
  });

  it("events - dedupe: a duplicate does not extend the window, and a zero window disables dedupe", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    await store.events.append([entry(bus, "e1")], { now: T0, dedupeWindowMs: 1000 });
    const dup = await store.events.append([entry(bus, "e1")], { now: T0 + 900, dedupeWindowMs: 1000 });
    assert.equal(dup[0]?.status, "duplicate");
    const later = await store.events.append([entry(bus, "e1")], { now: T0 + 1500, dedupeWindowMs: 1000 });
    assert.equal(later[0]?.status, "stored", "the window runs from the first accepted append");

    const off = await store.events.append([entry(bus, "e2"), entry(bus, "e2")], { now: T0, dedupeWindowMs: 0 });
    assert.deepEqual(
      off.map((r) => r.status),
      ["stored", "stored"],
    );
  });

  it("events - read filters by bus and time range and pages with afterSeq", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const other = unique("bus");
    for (let i = 0; i < 10; i++) {
      await store.events.append([entry(bus, `e${i}`), entry(other, `o${i}`)], { now: T0 + i * 10, dedupeWindowMs: 0 });
    }
    const ids = (events: { eventId: string }[]) => events.map((e) => e.eventId);

    const pages: string[][] = [];
    let afterSeq: number | undefined;
    for (;;) {
      const page = await store.events.read(bus, { limit: 3, ...(afterSeq === undefined ? {} : { afterSeq }) });
      if (page.length === 0) break;
      pages.push(ids(page));
      afterSeq = page[page.length - 1]?.seq;
    }
    assert.deepEqual(pages, [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6", "e7", "e8"], ["e9"]]);

    // fromAt inclusive, toAt exclusive.
    assert.deepEqual(ids(await store.events.read(bus, { fromAt: T0 + 20, toAt: T0 + 50, limit: 100 })), ["e2", "e3", "e4"]);
    assert.deepEqual(ids(await store.events.read(bus, { fromAt: T0 + 85, limit: 100 })), ["e9"]);
    assert.deepEqual(ids(await store.events.read(bus, { toAt: T0 + 10, limit: 100 })), ["e0"]);
    assert.deepEqual(await store.events.read(unique("bus"), { limit: 100 }), []);

    // Paging through events stored in the same millisecond.
    const same = unique("bus");
    await store.events.append(
      Array.from({ length: 7 }, (_, i) => entry(same, `s${i}`)),
      { now: T0 + 500, dedupeWindowMs: 0 },
    );
    const samePages: string[][] = [];
    let cursor: number | undefined;
    for (;;) {
      const page = await store.events.read(same, { fromAt: T0 + 500, limit: 3, ...(cursor === undefined ? {} : { afterSeq: cursor }) });
      if (page.length === 0) break;
      samePages.push(ids(page));
      cursor = page[page.length - 1]?.seq;
    }
    assert.deepEqual(samePages, [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]);
  });

  it("events - trim deletes a bus's events stored before beforeAt and leaves their deliveries", needs("callerClock"), async (t) => {
    const { store } = await setup(t);
    const bus = unique("bus");
    const other = unique("bus");
    const queue = unique("q");
    for (let i = 0; i < 5; i++) {
      await store.events.append([entry(bus, `e${i}`, [{ queue }]), entry(other, `o${i}`)], {
        now: T0 + i * 10,
        dedupeWindowMs: 0,
      });
    }
    assert.equal(await store.events.trim(bus, T0 + 30), 3);
    assert.deepEqual(
      (await store.events.read(bus, { limit: 100 })).map((e) => e.eventId),
      ["e3", "e4"],
    );
    assert.equal((await store.events.read(other, { limit: 100 })).length, 5);
    assert.equal(await store.events.trim(bus, T0 + 30), 0);
    const leases = await store.queues.lease({ queues: [queue], max: 100, leaseMs: 1000, now: T0 + 100 });
    assert.deepEqual(
      payloads(leases),
      [0, 1, 2, 3, 4].map((i) => entry(bus, `e${i}`).encoded),
      "deliveries outlive the archived event, with its body",
    );
    // seq keeps increasing after a trim.
    const [next] = await store.events.append([entry(bus, "e5")], { now: T0 + 100, dedupeWindowMs: 0 });
    const all = await store.events.read(bus, { limit: 100 });
    assert.ok((next?.seq as number) > (all[all.length - 2]?.seq as number));
  });

  it("events - appendAndLease leases the new deliveries leasable now, oldest first, up to max, in the append's commit", needs("appendAndLease", "callerClock"), async (t) => {
    const { store } = await setup(t);
    const appendAndLease = store.events.appendAndLease?.bind(store.events);
    assert.ok(appendAndLease, "capabilities.appendAndLease is true, so events.appendAndLease must be implemented");
    const bus = unique("bus");
    const [qa, qb, qk] = [unique("qa"), unique("qb"), unique("qk")];
    await store.events.append([entry(bus, "e0")], appendOptions);
    const entries = [
      entry(bus, "e1", [{ queue: qa }, { queue: qb, payload: "transformed-e1" }]),
      entry(bus, "e2", [{ queue: qa, availableAt: T0 + 500 }]),
      entry(bus, "e3", [{ queue: qk, partitionKey: "k" }]),
      entry(bus, "e4", [{ queue: qk, partitionKey: "k" }]),
      entry(bus, "e0", [{ queue: qa }]),
      entry(bus, "e5", [{ queue: qa }]),
    ];
    const { results, leases } = await appendAndLease(entries, { ...appendOptions, lease: { max: 3, leaseMs: 1000 } });
    assert.deepEqual(
      results.map((r) => r.status),
      ["stored", "stored", "stored", "stored", "duplicate", "stored"],
    );
    // Leasable now: e1→qa, e1→qb, e3→qk and e5→qa (e2 is delayed, e4 waits behind e3's key, e0 is a duplicate).
    assert.deepEqual(
      leases.map((l) => [l.queue, l.payload]),
      [
        [qa, entries[0]?.encoded],
        [qb, "transformed-e1"],
        [qk, entries[2]?.encoded],
      ],
    );
    for (const lease of leases) {
      assert.equal(lease.attempt, 1);
      assert.equal(lease.enqueuedAt, T0);
      assert.equal(lease.leaseUntil, T0 + 1000);
      assert.equal(lease.lastError, undefined);
    }
    assert.equal(leases[2]?.partitionKey, "k");
    assert.equal(new Set(leases.map((l) => l.deliveryId)).size, 3);

    // The rest is left to lease(): only e5 now; e4 once e3 is acked; e2 when it becomes available.
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 })), [entries[5]?.encoded]);
    assert.deepEqual(await store.queues.ack([leases[0]!, leases[2]!]), { lost: [] });
    assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 1 })), [entries[3]?.encoded]);
    assert.deepEqual(payloads(await store.queues.lease({ queues: [qa], max: 10, leaseMs: 1000, now: T0 + 500 })), [entries[1]?.encoded]);

    // A lease taken by the append expires like any other: e1→qb is leased again, attempt 2, new token.
    const again = await store.queues.lease({ queues: [qb], max: 10, leaseMs: 1000, now: T0 + 1000 });
    assert.deepEqual(
      again.map((l) => [l.deliveryId, l.attempt, l.payload]),
      [[leases[1]?.deliveryId, 2, "transformed-e1"]],
    );
    assert.notEqual(again[0]?.token, leases[1]?.token);
    await rejectsWithCode(store.queues.retry(leases[1]!, { now: T0, delayMs: 0, error: "stale" }), "E_LEASE_LOST");
    assert.deepEqual(await store.queues.ack(again), { lost: [] });

    // max 0 leases nothing and stores everything.
    const none = await appendAndLease([entry(bus, "e6", [{ queue: qa }])], { ...appendOptions, lease: { max: 0, leaseMs: 1000 } });
    assert.deepEqual(none.leases, []);
    assert.equal(none.results[0]?.status, "stored");
    assert.deepEqual(payloads(await store.queues.lease({ queues: [qa], max: 10, leaseMs: 1000, now: T0 + 600 })), [
      JSON.stringify({ specversion: "1.0", id: "e6", source: "test", type: "test.happened" }),
    ]);
  });
}
