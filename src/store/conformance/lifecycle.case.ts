/** Conformance cases: close, reopen and durability. */
import assert from "node:assert/strict";
import type { Lease } from "../contract.ts";
import { T0, appendOptions, unique, entry, rejectsWithCode, needs, type CaseContext } from "./helpers.ts";

export function lifecycleCases({ it, setup }: CaseContext): void {
  it("lifecycle - close waits for in-flight calls, is idempotent, and later calls fail with E_CLOSED", async (t) => {
    const { store, reopen } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    const inFlight = store.events.append([entry(bus, "e1", [{ queue }])], appendOptions);
    const statePut = store.state.put("ns", "k", "v", { now: T0 });
    const closing = store.close();
    await Promise.all([closing, store.close()]);
    assert.equal((await inFlight)[0]?.status, "stored");
    await statePut;
    await rejectsWithCode(store.events.append([entry(bus, "e2")], appendOptions), "E_CLOSED");
    await rejectsWithCode(store.queues.lease({ max: 1, leaseMs: 1, now: T0 }), "E_CLOSED");
    await rejectsWithCode(store.state.get("ns", "k", { now: T0 }), "E_CLOSED");

    const reopened = await reopen();
    assert.equal((await reopened.events.read(bus, { limit: 10 })).length, 1);
    assert.equal((await reopened.queues.lease({ max: 10, leaseMs: 100, now: T0 })).length, 1);
    assert.equal(await reopened.state.get("ns", "k", { now: T0 }), "v");
  });

  it("lifecycle - events, deliveries, leases, dead letters, dedupe and state survive close and reopen", needs("callerClock"), async (t) => {
    const { store, reopen } = await setup(t);
    const bus = unique("bus");
    const queue = unique("q");
    await store.events.append(
      [entry(bus, "e1", [{ queue, partitionKey: "k" }]), entry(bus, "e2", [{ queue, partitionKey: "k" }]), entry(bus, "e3", [{ queue }])],
      { now: T0, dedupeWindowMs: 10_000 },
    );
    const leases = await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 });
    assert.deepEqual(
      leases.map((l) => JSON.parse(l.payload).id),
      ["e1", "e3"],
    );
    const [e1, e3] = leases as [Lease, Lease];
    await store.queues.deadLetter(e3, { reason: "non-retriable", error: "nope", now: T0 });
    await store.state.put("ns", "k", "v", { now: T0, ttlMs: 5000 });
    await store.close();

    const again = await reopen();
    assert.deepEqual(
      (await again.events.read(bus, { limit: 10 })).map((e) => e.eventId),
      ["e1", "e2", "e3"],
    );
    const dup = await again.events.append([entry(bus, "e1")], { now: T0 + 1, dedupeWindowMs: 10_000 });
    assert.equal(dup[0]?.status, "duplicate");
    assert.equal((await again.admin.getDead(e3.deliveryId))?.lastError, "nope");
    assert.equal(await again.state.get("ns", "k", { now: T0 + 4999 }), "v");
    assert.deepEqual(await again.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 999 }), [], "the lease still holds");
    // The old lease token still settles its delivery after the restart.
    assert.deepEqual(await again.queues.ack([e1]), { lost: [] });
    const [e2] = await again.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 999 });
    assert.equal(JSON.parse(e2?.payload as string).id, "e2");
    assert.equal(e2?.attempt, 1);
  });

  it("capabilities - appendAndLease is declared exactly when events.appendAndLease is implemented", async (t) => {
    const { store } = await setup(t);
    const { capabilities } = store;
    for (const [name, value] of Object.entries(capabilities)) assert.equal(typeof value, "boolean", `capabilities.${name}`);
    assert.equal(typeof store.events.appendAndLease === "function", capabilities.appendAndLease);
  });
}
