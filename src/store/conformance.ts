/**
 * The storage conformance suite: every backend's test file calls `runStoreConformance` and so proves every
 * guarantee written in `contract.ts`. Backend-neutral: it only uses the contract, and passes `now` explicitly,
 * so time-based behaviour (lease expiry, delays, dedupe window, TTL) needs no sleeping.
 *
 * @example
 * ```ts
 * // test/store/sqlite.test.ts
 * runStoreConformance({
 *   name: "sqlite",
 *   async open() {
 *     const dir = mkdtempSync(join(tmpdir(), "sluice-"));
 *     const path = join(dir, "data.db");
 *     return {
 *       store: await createSqliteStore({ path }),
 *       reopen: () => createSqliteStore({ path }),
 *       cleanup: async () => rmSync(dir, { recursive: true, force: true }),
 *     };
 *   },
 * });
 * ```
 */
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { AppendEntry, Lease, NewDelivery, StorageBackend } from "./contract.ts";

/** What `open()` returns: a fresh, isolated backend, and a way to open the same data again. */
export interface StoreUnderTest {
  store: StorageBackend;
  /**
   * Opens another backend object over the same data. It is called both while `store` is still open (two
   * objects sharing data, e.g. two processes on one database) and after `store` was closed (durability).
   */
  reopen(): Promise<StorageBackend>;
  /** Removes the data (temp directory, database) once every backend object of the test is closed. */
  cleanup?(): Promise<void>;
}

export interface StoreConformanceOptions {
  /** Backend name, shown in the suite title. */
  name: string;
  /** A fresh, isolated backend per test. */
  open(): Promise<StoreUnderTest>;
  /** Known gaps, skipped by exact test title with the reason printed. */
  skip?: { reason: string; tests: string[] }[];
}

const T0 = 1_700_000_000_000;
const WINDOW_MS = 300_000;
const appendOptions = { now: T0, dedupeWindowMs: WINDOW_MS };

function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

function entry(bus: string, eventId: string, deliveries: NewDelivery[] = [], source = "test"): AppendEntry {
  return {
    bus,
    eventId,
    dedupeKey: `${source}\n${eventId}`,
    encoded: JSON.stringify({ specversion: "1.0", id: eventId, source, type: "test.happened" }),
    deliveries,
  };
}

/** Enqueues one delivery per payload, each in its own call so their enqueue order is the payload order. */
async function enqueueEach(
  store: StorageBackend,
  queue: string,
  payloads: string[],
  options: { now?: number; partitionKey?: string } = {},
): Promise<void> {
  for (const payload of payloads) {
    await store.queues.enqueue(
      [{ queue, payload, ...(options.partitionKey === undefined ? {} : { partitionKey: options.partitionKey }) }],
      { now: options.now ?? T0 },
    );
  }
}

function payloads(leases: Lease[]): string[] {
  return leases.map((l) => l.payload);
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code);
    return true;
  });
}

/** Fails when `promise` does not settle within `ms` (a timeout, not a sleep: it resolves as soon as it settles). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function runStoreConformance(options: StoreConformanceOptions): void {
  const skipped = new Map<string, string>();
  for (const gap of options.skip ?? []) for (const title of gap.tests) skipped.set(title, gap.reason);

  /** Opens a backend for one test and closes every backend object it opened when the test ends. */
  async function setup(t: TestContext): Promise<{ store: StorageBackend; reopen(): Promise<StorageBackend> }> {
    const opened = await options.open();
    const stores: StorageBackend[] = [opened.store];
    t.after(async () => {
      for (const s of stores) await s.close();
      await opened.cleanup?.();
    });
    return {
      store: opened.store,
      async reopen() {
        const s = await opened.reopen();
        stores.push(s);
        return s;
      },
    };
  }

  function it(title: string, body: (t: TestContext) => Promise<void>): void {
    const reason = skipped.get(title);
    if (reason !== undefined) test(title, { skip: reason }, () => {});
    else test(title, body);
  }

  describe(`store conformance - ${options.name}`, () => {
    // ---------------------------------------------------------------- event log

    it("events - append stores each event with its deliveries and returns increasing seqs", async (t) => {
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

    it("events - dedupe: same key inside the window is a duplicate, outside it is stored again", async (t) => {
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

    it("events - dedupe: a duplicate does not extend the window, and a zero window disables dedupe", async (t) => {
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

    it("events - read filters by bus and time range and pages with afterSeq", async (t) => {
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

    it("events - trim deletes a bus's events stored before beforeAt and leaves their deliveries", async (t) => {
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

    // ---------------------------------------------------------------- leases

    it("events - appendAndLease leases the new deliveries leasable now, oldest first, up to max, in the append's commit", async (t) => {
      const { store } = await setup(t);
      const appendAndLease = store.events.appendAndLease?.bind(store.events);
      if (appendAndLease === undefined) {
        t.skip("this backend does not implement the optional appendAndLease");
        return;
      }
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
      await rejectsWithCode(store.queues.retry(leases[1]!, { availableAt: T0, error: "stale" }), "E_LEASE_LOST");
      assert.deepEqual(await store.queues.ack(again), { lost: [] });

      // max 0 leases nothing and stores everything.
      const none = await appendAndLease([entry(bus, "e6", [{ queue: qa }])], { ...appendOptions, lease: { max: 0, leaseMs: 1000 } });
      assert.deepEqual(none.leases, []);
      assert.equal(none.results[0]?.status, "stored");
      assert.deepEqual(payloads(await store.queues.lease({ queues: [qa], max: 10, leaseMs: 1000, now: T0 + 600 })), [
        JSON.stringify({ specversion: "1.0", id: "e6", source: "test", type: "test.happened" }),
      ]);
    });

    it("queues - a lease hides its delivery until it expires; then it is leased again with a new token", async (t) => {
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

    it("queues - a stale token fails ack, retry, deadLetter and extend with E_LEASE_LOST", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await enqueueEach(store, queue, ["p1"]);
      const [stale] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 })) as [Lease];
      const [fresh] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 100 })) as [Lease];
      assert.equal(fresh.deliveryId, stale.deliveryId);

      assert.deepEqual(await store.queues.ack([stale]), { lost: [stale.deliveryId] });
      await rejectsWithCode(store.queues.retry(stale, { availableAt: T0, error: "x" }), "E_LEASE_LOST");
      await rejectsWithCode(store.queues.deadLetter(stale, { reason: "max-attempts", now: T0 }), "E_LEASE_LOST");
      await rejectsWithCode(store.queues.extend(stale, { leaseUntil: T0 + 10_000 }), "E_LEASE_LOST");
      await rejectsWithCode(store.queues.extend({ deliveryId: "no-such-id", token: "t" }, { leaseUntil: 1 }), "E_LEASE_LOST");

      // The stale calls changed nothing: the fresh lease still holds.
      assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 150 }), []);
      assert.deepEqual(await store.queues.ack([fresh]), { lost: [] });
      // Settled: acking again reports it lost.
      assert.deepEqual(await store.queues.ack([fresh]), { lost: [fresh.deliveryId] });
      assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 10_000 }), []);
    });

    it("queues - an expired lease nobody re-leased can still be acked", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await enqueueEach(store, queue, ["p1", "p2"]);
      const leases = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 });
      assert.equal(leases.length, 2);
      assert.deepEqual(await store.queues.ack(leases), { lost: [] });
      assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 1000 }), []);
    });

    it("queues - ack settles a batch and reports only the lost ones", async (t) => {
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

    it("queues - retry records the error and makes the delivery leasable again at availableAt", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await enqueueEach(store, queue, ["p1"]);
      const [lease] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 })) as [Lease];
      await store.queues.retry(lease, { availableAt: T0 + 500, error: "boom 1" });
      assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 499 }), []);
      const [second] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 500 })) as [Lease];
      assert.equal(second.deliveryId, lease.deliveryId);
      assert.equal(second.attempt, 2);
      assert.equal(second.lastError, "boom 1");
      assert.equal(second.enqueuedAt, T0, "enqueuedAt stays the first enqueue time");
      // The old token is spent.
      await rejectsWithCode(store.queues.retry(lease, { availableAt: T0, error: "x" }), "E_LEASE_LOST");
      await store.queues.retry(second, { availableAt: T0 + 500, error: "boom 2" });
      const [third] = (await store.queues.lease({ max: 1, leaseMs: 10_000, now: T0 + 500 })) as [Lease];
      assert.equal(third.attempt, 3);
      assert.equal(third.lastError, "boom 2");
    });

    it("queues - extend keeps a lease past its original expiry", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await enqueueEach(store, queue, ["p1"]);
      const [lease] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 })) as [Lease];
      await store.queues.extend(lease, { leaseUntil: T0 + 5000 });
      assert.deepEqual(await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 4999 }), []);
      const stats = await store.queues.stats([queue], { now: T0 + 4999 });
      assert.equal(stats[0]?.leased, 1);
      assert.deepEqual(await store.queues.ack([lease]), { lost: [] });
    });

    it("queues - availableAt delays a delivery; enqueue carries its payload and partition key", async (t) => {
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

    it("queues - lease is oldest first and respects max and the queue filter", async (t) => {
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

    it("queues - per-key ordering: a key's deliveries go one at a time, in order; other keys and keyless ones proceed", async (t) => {
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
      await store.queues.retry(byPayload.get("k1-a") as Lease, { availableAt: T0 + 500, error: "boom" });
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
      assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 1000, now: T0 })), ["k-2"]);
    });

    it("queues - stats count ready, delayed, leased and dead per queue", async (t) => {
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
      assert.deepEqual(await store.queues.stats([qa, qb, unknown], { now: T0 }), [
        // ready: k1; delayed: later (availableAt) and k2 (behind k1); leased: r1; dead: r2.
        { queue: qa, ready: 1, delayed: 2, leased: 1, dead: 1 },
        { queue: qb, ready: 1, delayed: 0, leased: 0, dead: 0 },
        { queue: unknown, ready: 0, delayed: 0, leased: 0, dead: 0 },
      ]);
      // After the lease expired and the delay passed.
      const all = await store.queues.stats(undefined, { now: T0 + 1000 });
      assert.deepEqual(
        all.filter((s) => s.queue === qa || s.queue === qb),
        [
          { queue: qa, ready: 3, delayed: 1, leased: 0, dead: 1 },
          { queue: qb, ready: 1, delayed: 0, leased: 0, dead: 0 },
        ].sort((x, y) => (x.queue < y.queue ? -1 : 1)),
      );
    });

    // ---------------------------------------------------------------- dead letters

    it("dlq - deadLetter records reason, attempts, last error and timestamps; list pages oldest first", async (t) => {
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
      await store.queues.retry(leases[0] as Lease, { availableAt: T0 + 10, error: "first failure" });
      const [d1] = (await store.queues.lease({ max: 1, leaseMs: 100, now: T0 + 20 })) as [Lease];
      await store.queues.deadLetter(d1, { reason: "max-attempts", now: T0 + 30 });
      await store.queues.deadLetter(leases[1] as Lease, { reason: "non-retriable", error: "explicit", now: T0 + 40 });
      await store.queues.deadLetter(leases[2] as Lease, { reason: "max-age", now: T0 + 50 });
      leases = await store.queues.lease({ max: 10, leaseMs: 100, now: T0 + 1000 });
      assert.deepEqual(leases, [], "dead letters are no longer leasable");

      const dead = await store.queues.getDead(d1.deliveryId);
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
      assert.equal(await store.queues.getDead("no-such-id"), undefined);

      const page1 = await store.queues.listDead(queue, { limit: 2 });
      assert.deepEqual(
        page1.map((d) => [d.payload, d.reason, d.attempts, d.lastError]),
        [
          ["d1", "max-attempts", 2, "first failure"],
          ["d2", "non-retriable", 1, "explicit"],
        ],
      );
      const page2 = await store.queues.listDead(queue, { limit: 2, afterId: page1[1]?.deliveryId as string });
      assert.deepEqual(
        page2.map((d) => [d.payload, d.lastError]),
        [["d3", undefined]],
      );
      assert.deepEqual(await store.queues.listDead(unique("none"), { limit: 10 }), []);
    });

    it("dlq - redrive moves dead letters back as fresh deliveries; purge deletes them", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      const other = unique("q");
      await enqueueEach(store, queue, ["d1", "d2", "d3", "d4"]);
      await enqueueEach(store, other, ["o1"]);
      for (const lease of await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) {
        await store.queues.retry(lease, { availableAt: T0, error: "e" });
      }
      for (const lease of await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) {
        await store.queues.deadLetter(lease, { reason: "max-attempts", now: T0 });
      }
      const dead = await store.queues.listDead(queue, { limit: 10 });
      const [otherDead] = await store.queues.listDead(other, { limit: 10 });
      assert.equal(dead.length, 4);

      // By id: ids of another queue and unknown ids are ignored.
      const moved = await store.queues.redrive(queue, {
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

      assert.equal(await store.queues.purgeDead(queue, { ids: [dead[0]?.deliveryId as string, otherDead?.deliveryId as string] }), 1);
      assert.equal(await store.queues.getDead(dead[0]?.deliveryId as string), undefined);
      assert.equal((await store.queues.getDead(otherDead?.deliveryId as string))?.payload, "o1");

      // All of a queue.
      assert.equal(await store.queues.redrive(queue, { now: T0 + 200 }), 2);
      assert.deepEqual(payloads(await store.queues.lease({ queues: [queue], max: 10, leaseMs: 100, now: T0 + 200 })), ["d3", "d4"]);
      assert.equal(await store.queues.redrive(queue, { now: T0 + 200 }), 0);
      assert.equal(await store.queues.purgeDead(other), 1);
      assert.equal(await store.queues.purgeDead(other), 0);
      assert.deepEqual(await store.queues.listDead(other, { limit: 10 }), []);
    });

    it("dlq - a redriven keyed delivery queues behind pending deliveries of its key", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await enqueueEach(store, queue, ["k-1"], { partitionKey: "k" });
      const [k1] = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as [Lease];
      await store.queues.deadLetter(k1, { reason: "non-retriable", now: T0 });
      await enqueueEach(store, queue, ["k-2"], { partitionKey: "k" });
      assert.equal(await store.queues.redrive(queue, { now: T0 }), 1);
      const [k2] = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as Lease[];
      assert.equal(k2?.payload, "k-2");
      assert.deepEqual(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 }), []);
      await store.queues.ack([k2 as Lease]);
      assert.deepEqual(payloads(await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })), ["k-1"]);
    });

    // ---------------------------------------------------------------- concurrency

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
      assert.deepEqual(await store.queues.stats([queue], { now: T0 }), [{ queue, ready: 0, delayed: 0, leased: 0, dead: 0 }]);
    });

    it("queues - lease and ack of 1000 deliveries in one call each", async (t) => {
      const { store } = await setup(t);
      const queue = unique("q");
      await store.events.append(
        Array.from({ length: 100 }, (_, i) => entry(unique("bus"), `e${i}`, Array.from({ length: 10 }, () => ({ queue })))),
        appendOptions,
      );
      const leases = await store.queues.lease({ max: 1000, leaseMs: 60_000, now: T0 });
      assert.equal(leases.length, 1000);
      assert.deepEqual(await store.queues.ack(leases), { lost: [] });
      assert.deepEqual(await store.queues.stats([queue], { now: T0 + 120_000 }), [
        { queue, ready: 0, delayed: 0, leased: 0, dead: 0 },
      ]);
    });

    it("queues - the deliveries of one event to several queues are acked, retried and dead-lettered each on its own", async (t) => {
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
      await store.queues.retry(l2, { availableAt: T0 + 500, error: "boom" });
      await store.queues.deadLetter(l3, { reason: "non-retriable", error: "bad", now: T0 + 10 });
      assert.deepEqual(await store.queues.stats([q1, q2, q3], { now: T0 + 10 }), [
        { queue: q1, ready: 0, delayed: 0, leased: 0, dead: 0 },
        { queue: q2, ready: 0, delayed: 1, leased: 0, dead: 0 },
        { queue: q3, ready: 0, delayed: 0, leased: 0, dead: 1 },
      ]);
      const [dead] = await store.queues.listDead(q3, { limit: 10 });
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

    it("queues - an expired lease of a fan-out event is leased again for its unacked deliveries only", async (t) => {
      const { store } = await setup(t);
      const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
      await store.events.append([entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }])], appendOptions);
      const first = (await store.queues.lease({ max: 10, leaseMs: 100, now: T0 })) as [Lease, Lease, Lease];
      assert.deepEqual(await store.queues.ack([first[1]]), { lost: [] });
      // Extended leases hold past the first expiry.
      await store.queues.extend(first[0], { leaseUntil: T0 + 200 });
      await store.queues.extend(first[2], { leaseUntil: T0 + 200 });
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
      await rejectsWithCode(store.queues.retry(first[2], { availableAt: T0, error: "x" }), "E_LEASE_LOST");
      assert.deepEqual(await store.queues.ack(second), { lost: [] });
      assert.deepEqual(await store.queues.ack(second), { lost: second.map((l) => l.deliveryId) });
      assert.deepEqual(await store.queues.stats([q1, q2, q3], { now: T0 + 1000 }), [
        { queue: q1, ready: 0, delayed: 0, leased: 0, dead: 0 },
        { queue: q2, ready: 0, delayed: 0, leased: 0, dead: 0 },
        { queue: q3, ready: 0, delayed: 0, leased: 0, dead: 0 },
      ]);
    });

    it("queues - a lease for some queues, or smaller than an event's fan-out, takes part of its deliveries", async (t) => {
      const { store } = await setup(t);
      const [q1, q2, q3] = [unique("q1"), unique("q2"), unique("q3")];
      await store.events.append(
        [entry(unique("bus"), "e1", [{ queue: q1 }, { queue: q2 }, { queue: q3 }]), entry(unique("bus"), "e2", [{ queue: q1 }, { queue: q2 }])],
        appendOptions,
      );
      assert.deepEqual(await store.queues.stats([q1, q2, q3], { now: T0 }), [
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
      assert.deepEqual(await store.queues.stats([q1, q2, q3], { now: T0 }), [
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

    it("state - put, get and delete, with namespaces isolated", async (t) => {
      const { store } = await setup(t);
      const ns = unique("ns");
      const other = unique("ns");
      const now = T0;
      assert.equal(await store.state.get(ns, "a", { now }), undefined);
      await store.state.put(ns, "a", "1", { now });
      await store.state.put(other, "a", "other", { now });
      assert.equal(await store.state.get(ns, "a", { now }), "1");
      await store.state.put(ns, "a", "2", { now });
      assert.equal(await store.state.get(ns, "a", { now: now + 1e12 }), "2", "no ttl: never expires");
      await store.state.delete(ns, "a");
      await store.state.delete(ns, "never-there");
      assert.equal(await store.state.get(ns, "a", { now }), undefined);
      assert.equal(await store.state.get(other, "a", { now }), "other");
    });

    it("state - ttl expires a value at now + ttlMs; put without ttl clears it", async (t) => {
      const { store } = await setup(t);
      const ns = unique("ns");
      await store.state.put(ns, "k", "v", { now: T0, ttlMs: 1000 });
      assert.equal(await store.state.get(ns, "k", { now: T0 + 999 }), "v");
      assert.equal(await store.state.get(ns, "k", { now: T0 + 1000 }), undefined);
      assert.deepEqual(await store.state.list(ns, { now: T0 + 1000 }), []);
      await store.state.put(ns, "k", "v2", { now: T0 });
      assert.equal(await store.state.get(ns, "k", { now: T0 + 1e9 }), "v2");
    });

    it("state - putIfAbsent writes only when the key is absent or expired; one of concurrent calls wins", async (t) => {
      const { store } = await setup(t);
      const ns = unique("ns");
      assert.equal(await store.state.putIfAbsent(ns, "k", "first", { now: T0, ttlMs: 1000 }), true);
      assert.equal(await store.state.putIfAbsent(ns, "k", "second", { now: T0 + 999 }), false);
      assert.equal(await store.state.get(ns, "k", { now: T0 + 999 }), "first");
      assert.equal(await store.state.putIfAbsent(ns, "k", "third", { now: T0 + 1000 }), true, "expired counts as absent");
      assert.equal(await store.state.get(ns, "k", { now: T0 + 5000 }), "third");

      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.state.putIfAbsent(ns, "race", `v${i}`, { now: T0 })),
      );
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal(await store.state.get(ns, "race", { now: T0 }), `v${results.indexOf(true)}`);
    });

    it("state - compareAndSet writes only over the expected, unexpired value; one of concurrent calls wins", async (t) => {
      const { store } = await setup(t);
      const ns = unique("ns");
      assert.equal(await store.state.compareAndSet(ns, "k", "x", "y", { now: T0 }), false, "absent key");
      await store.state.put(ns, "k", "1", { now: T0, ttlMs: 1000 });
      assert.equal(await store.state.compareAndSet(ns, "k", "0", "2", { now: T0 }), false);
      assert.equal(await store.state.compareAndSet(ns, "k", "1", "2", { now: T0, ttlMs: 5000 }), true);
      assert.equal(await store.state.get(ns, "k", { now: T0 + 4999 }), "2", "the new ttl applies");
      assert.equal(await store.state.get(ns, "k", { now: T0 + 5000 }), undefined);
      assert.equal(await store.state.compareAndSet(ns, "k", "2", "3", { now: T0 + 5000 }), false, "expired value");

      await store.state.put(ns, "lock", "free", { now: T0 });
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.state.compareAndSet(ns, "lock", "free", `owner${i}`, { now: T0 })),
      );
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal(await store.state.get(ns, "lock", { now: T0 }), `owner${results.indexOf(true)}`);
    });

    it("state - list returns the live entries of one namespace", async (t) => {
      const { store } = await setup(t);
      const ns = unique("ns");
      await store.state.put(ns, "b", "2", { now: T0 });
      await store.state.put(ns, "a", "1", { now: T0, ttlMs: 10_000 });
      await store.state.put(ns, "gone", "x", { now: T0, ttlMs: 10 });
      await store.state.put(unique("ns"), "c", "3", { now: T0 });
      const listed = await store.state.list(ns, { now: T0 + 10 });
      assert.deepEqual(
        listed.sort((x, y) => (x.key < y.key ? -1 : 1)),
        [
          { key: "a", value: "1" },
          { key: "b", value: "2" },
        ],
      );
      assert.deepEqual(await store.state.list(unique("ns"), { now: T0 }), []);
    });

    // ---------------------------------------------------------------- lifecycle

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

    it("lifecycle - events, deliveries, leases, dead letters, dedupe and state survive close and reopen", async (t) => {
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
      assert.equal((await again.queues.getDead(e3.deliveryId))?.lastError, "nope");
      assert.equal(await again.state.get("ns", "k", { now: T0 + 4999 }), "v");
      assert.deepEqual(await again.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 999 }), [], "the lease still holds");
      // The old lease token still settles its delivery after the restart.
      assert.deepEqual(await again.queues.ack([e1]), { lost: [] });
      const [e2] = await again.queues.lease({ max: 10, leaseMs: 1000, now: T0 + 999 });
      assert.equal(JSON.parse(e2?.payload as string).id, "e2");
      assert.equal(e2?.attempt, 1);
    });
  });
}
