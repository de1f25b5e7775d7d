/**
 * PostgreSQL-specific behaviour the backend-neutral conformance suite cannot see: migrations racing at start,
 * LISTEN/NOTIFY across store instances, SKIP LOCKED and per-key heads under concurrent leasers in separate
 * pools, connection loss, and group commit isolating a bad caller.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createPostgresStore, type PostgresStore } from "../../src/store/postgres/index.ts";
import { migrate, migrations } from "../../src/store/postgres/migrations.ts";
import type { AppendEntry } from "../../src/store/contract.ts";
import { isSluiceError } from "../../src/errors.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";

const skip = await skipUnless("postgres");

function schemaName(): string {
  return `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
}

function entry(bus: string, i: number, deliveries: AppendEntry["deliveries"]): AppendEntry {
  const eventId = `e-${i}-${randomUUID()}`;
  return { bus, eventId, dedupeKey: `src\n${eventId}`, encoded: JSON.stringify({ id: eventId, n: i }), deliveries };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

describe("postgres store", { skip }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const open: PostgresStore[] = [];
  const openStore = async (schema: string, extra: { applicationName?: string } = {}) => {
    const store = await createPostgresStore({ url: db.url, schema, poolSize: 4, ...extra });
    open.push(store);
    return store;
  };

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await db.drop();
  });

  test("postgres store - concurrent starts apply each migration exactly once under the advisory lock", async () => {
    const { default: pg } = await import("pg");
    const schema = schemaName();
    // The extra version fails when applied twice (no IF NOT EXISTS), so a race would surface as an error.
    const extra = migrations.length + 1;
    const list = [...migrations, { version: extra, name: "extra", sql: "CREATE TABLE $schema.extra (x int)" }];
    const all = list.map((m) => m.version);
    const pool = new pg.Pool({ connectionString: db.url, max: 6 });
    try {
      const runs = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const client = await pool.connect();
          try {
            return await migrate(client, schema, list);
          } finally {
            client.release();
          }
        }),
      );
      assert.deepEqual(runs.filter((r) => r.length > 0), [all]);
      const { rows } = await pool.query(`SELECT version FROM "${schema}".schema_version ORDER BY version`);
      assert.deepEqual(rows.map((r) => r.version), all);
    } finally {
      await pool.end();
    }
    // A schema written by a newer Sluice is refused rather than misread.
    await assert.rejects(createPostgresStore({ url: db.url, schema }), (err: unknown) => {
      assert.ok(isSluiceError(err, "E_STORE_UNAVAILABLE"));
      assert.match(err.message, /newer/);
      return true;
    });
    // Stores opening at once on a fresh schema all succeed.
    const other = schemaName();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore(other)));
    assert.equal(stores.length, 4);
  });

  test("postgres store - a schema at version 1 is migrated to the latest on open and keeps its data", async () => {
    const { default: pg } = await import("pg");
    const schema = schemaName();
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const client = await pool.connect();
      try {
        assert.deepEqual(await migrate(client, schema, migrations.slice(0, 1)), [1]);
        await client.query(`INSERT INTO "${schema}".state (namespace, key, value) VALUES ('ns', 'k', 'kept')`);
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
    const store = await openStore(schema);
    assert.equal(await store.state.get("ns", "k", { now: Date.now() }), "kept");
    const [stored] = await store.events.append([entry("default", 1, [{ queue: "q", partitionKey: "k" }])], { now: Date.now(), dedupeWindowMs: 60_000 });
    assert.equal(stored?.status, "stored");
    const [lease] = await store.queues.lease({ max: 1, leaseMs: 60_000, now: Date.now() });
    assert.ok(lease);
    assert.deepEqual(await store.queues.ack([lease]), { lost: [] });
  });

  test("postgres store - waitForWork wakes on an append by another store instance (LISTEN/NOTIFY)", async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    const ac = new AbortController();
    let woke = false;
    const waiting = a.queues.waitForWork(ac.signal).then(() => {
      woke = true;
    });
    await Promise.resolve();
    assert.equal(woke, false, "nothing happened yet, so the waiter must still wait");
    const started = performance.now();
    await b.events.append([entry("default", 1, [{ queue: "q" }])], { now: Date.now(), dedupeWindowMs: 60_000 });
    await withTimeout(waiting, 5000, "the NOTIFY wake-up");
    const wakeMs = performance.now() - started;
    assert.ok(!ac.signal.aborted);
    assert.ok(wakeMs < 5000);
    const leased = await a.queues.lease({ max: 10, leaseMs: 30_000, now: Date.now() });
    assert.equal(leased.length, 1);
  });

  test("postgres store - SKIP LOCKED: two instances leasing concurrently never hand out one delivery twice", async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    const total = 400;
    const entries = Array.from({ length: total }, (_, i) => entry("default", i, [{ queue: "q" }]));
    await a.events.append(entries, { now: Date.now(), dedupeWindowMs: 60_000 });
    const seen = new Map<string, string>();
    const drain = async (name: string, store: PostgresStore) => {
      for (;;) {
        const leases = await store.queues.lease({ queues: ["q"], max: 7, leaseMs: 60_000, now: Date.now() });
        if (leases.length === 0) return;
        for (const l of leases) {
          assert.equal(seen.get(l.deliveryId), undefined, `delivery ${l.deliveryId} leased twice`);
          seen.set(l.deliveryId, name);
        }
      }
    };
    await Promise.all([drain("a", a), drain("a2", a), drain("b", b), drain("b2", b)]);
    assert.equal(seen.size, total);
    const byWorker = new Set(seen.values());
    assert.ok(byWorker.size >= 2, "both instances leased");
    const [stats] = await a.admin.stats(["q"], { now: Date.now() });
    assert.deepEqual(stats, { queue: "q", ready: 0, delayed: 0, leased: total, dead: 0 });
  });

  test("postgres store - per-key order holds with concurrent leasers in two instances, keys in parallel", async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    const keys = ["k1", "k2", "k3", "k4", "k5"];
    const perKey = 20;
    // Published in several concurrent appends from both instances; publish order per key is append order.
    const expected = new Map<string, string[]>(keys.map((k) => [k, []]));
    for (let round = 0; round < perKey; round++) {
      const batch = keys.map((k) => {
        const e = entry("default", round, [{ queue: "q", partitionKey: k }]);
        expected.get(k)?.push(e.encoded);
        return e;
      });
      await (round % 2 === 0 ? a : b).events.append(batch, { now: Date.now(), dedupeWindowMs: 60_000 });
    }
    const got = new Map<string, string[]>(keys.map((k) => [k, []]));
    const inFlight = new Set<string>();
    let maxParallelKeys = 0;
    let failedOnce = false;
    const worker = async (store: PostgresStore) => {
      let idle = 0;
      while (idle < 3) {
        const leases = await store.queues.lease({ queues: ["q"], max: 3, leaseMs: 60_000, now: Date.now() });
        if (leases.length === 0) {
          idle++;
          await store.queues.waitForWork(AbortSignal.timeout(50));
          continue;
        }
        idle = 0;
        for (const l of leases) {
          const key = l.partitionKey ?? "";
          assert.ok(!inFlight.has(key), `two deliveries of ${key} leased at once`);
          inFlight.add(key);
        }
        maxParallelKeys = Math.max(maxParallelKeys, inFlight.size);
        await Promise.all(
          leases.map(async (l) => {
            const key = l.partitionKey ?? "";
            if (!failedOnce && key === "k3") {
              // A failing head holds its key: retried, then delivered before the next one of k3.
              failedOnce = true;
              inFlight.delete(key);
              await store.queues.retry(l, { delayMs: 0, error: "boom", now: Date.now() });
              return;
            }
            got.get(key)?.push(l.payload);
            // Released from the test's view just before the ack commits: a lease of the key's next
            // delivery that arrives before the ack resolves is legal only after this point.
            inFlight.delete(key);
            const { lost } = await store.queues.ack([l]);
            assert.deepEqual(lost, []);
          }),
        );
      }
    };
    await Promise.all([worker(a), worker(b), worker(a), worker(b)]);
    for (const k of keys) assert.deepEqual(got.get(k), expected.get(k), `order of ${k}`);
    assert.ok(maxParallelKeys >= 2, "different keys proceed in parallel");
    const { rows } = await a.admin.stats(["q"]).then((s) => ({ rows: s }));
    assert.deepEqual(rows, [{ queue: "q", ready: 0, delayed: 0, leased: 0, dead: 0 }]);
  });

  test("postgres store - a retry in one instance wakes a waiter in another", async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    // The append's own wake-up reaches b first; only then does b wait for the retry's.
    const appended = b.queues.waitForWork(new AbortController().signal);
    await a.events.append([entry("default", 1, [{ queue: "q" }])], { now: Date.now(), dedupeWindowMs: 60_000 });
    await withTimeout(appended, 5000, "the append's NOTIFY");
    const [lease] = await a.queues.lease({ max: 1, leaseMs: 60_000, now: Date.now() });
    assert.ok(lease);
    const waiting = b.queues.waitForWork(new AbortController().signal);
    await a.queues.retry(lease, { delayMs: 0, error: "boom", now: Date.now() });
    await withTimeout(waiting, 5000, "the retry's NOTIFY");
    const [again] = await b.queues.lease({ max: 1, leaseMs: 60_000, now: Date.now() });
    assert.equal(again?.deliveryId, lease.deliveryId);
    assert.equal(again?.attempt, 2);
    assert.equal(again?.lastError, "boom");
  });

  test("postgres store - state compare-and-set and putIfAbsent race across instances: exactly one wins", async () => {
    const schema = schemaName();
    const stores = [await openStore(schema), await openStore(schema), await openStore(schema)];
    const now = Date.now();
    const claims = await Promise.all(
      Array.from({ length: 12 }, (_, i) => stores[i % 3]!.state.putIfAbsent("locks", "job", `owner-${i}`, { now, ttlMs: 10_000 })),
    );
    assert.equal(claims.filter(Boolean).length, 1);
    const owner = await stores[0]!.state.get("locks", "job", { now });
    assert.equal(owner, `owner-${claims.indexOf(true)}`);
    const swaps = await Promise.all(
      Array.from({ length: 12 }, (_, i) => stores[i % 3]!.state.compareAndSet("locks", "job", owner ?? "", `next-${i}`, { now })),
    );
    assert.equal(swaps.filter(Boolean).length, 1);
    assert.equal(await stores[1]!.state.get("locks", "job", { now: now + 3_600_000 }), `next-${swaps.indexOf(true)}`, "CAS without ttl clears the expiry");
  });

  test("postgres store - unreachable database fails with a retryable E_STORE_UNAVAILABLE", async () => {
    await assert.rejects(
      createPostgresStore({ url: "postgres://postgres@127.0.0.1:1/none", connectTimeoutMs: 1000 }),
      (err: unknown) => isSluiceError(err, "E_STORE_UNAVAILABLE") && err.retryable,
    );
  });

  test("postgres store - killed connections give retryable errors, then recover; LISTEN reconnects", async () => {
    const schema = schemaName();
    const app = `sluice-${randomUUID().slice(0, 8)}`;
    const a = await openStore(schema, { applicationName: app });
    const b = await openStore(schema);
    await a.state.put("ns", "k", "v", { now: Date.now() });
    const { default: pg } = await import("pg");
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const ac = new AbortController();
    try {
      const firstWake = a.queues.waitForWork(ac.signal);
      const { rows } = await admin.query(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
        [app],
      );
      assert.ok(rows.length >= 2, "the pooled and the LISTEN connection were killed");
      // The reconnected listener wakes its waiters (notifications may have been missed meanwhile).
      await withTimeout(firstWake, 10_000, "the wake-up after the LISTEN connection reconnected");
      // Calls on killed pooled connections fail typed and retryable, never crash; later calls succeed.
      let value: string | undefined;
      for (let i = 0; i < 10 && value === undefined; i++) {
        try {
          value = await a.state.get("ns", "k", { now: Date.now() });
        } catch (err) {
          assert.ok(isSluiceError(err, "E_STORE_UNAVAILABLE") && err.retryable, `unexpected ${String(err)}`);
        }
      }
      assert.equal(value, "v");
      // And NOTIFY from another instance reaches the new LISTEN connection.
      const second = a.queues.waitForWork(ac.signal);
      await b.events.append([entry("default", 1, [{ queue: "q" }])], { now: Date.now(), dedupeWindowMs: 60_000 });
      await withTimeout(second, 5000, "a NOTIFY after the reconnect");
    } finally {
      ac.abort();
      await admin.end();
    }
  });

  test("postgres store - group commit: one caller's bad entry fails alone, concurrent callers keep their results", async () => {
    const a = await openStore(schemaName());
    const now = Date.now();
    const calls = Array.from({ length: 30 }, (_, i) =>
      a.events.append(
        // PostgreSQL text cannot hold NUL: this entry is rejected by the server.
        [entry("default", i, [{ queue: i === 13 ? "bad\u0000queue" : "q" }])],
        { now, dedupeWindowMs: 60_000 },
      ),
    );
    const settled = await Promise.allSettled(calls);
    settled.forEach((s, i) => {
      if (i === 13) assert.ok(s.status === "rejected" && isSluiceError(s.reason, "E_STORE_UNAVAILABLE"));
      else assert.ok(s.status === "fulfilled" && s.value[0]?.status === "stored", `call ${i}`);
    });
    const seqs = settled.flatMap((s) => (s.status === "fulfilled" ? s.value.map((r) => r.seq) : []));
    assert.equal(new Set(seqs).size, 29);
    const [stats] = await a.admin.stats(["q"], { now });
    assert.equal(stats?.ready, 29);
  });

  test("postgres store - event bodies round-trip byte for byte through append, read, lease and appendAndLease", async () => {
    const a = await openStore(schemaName());
    const now = Date.now();
    // Sent as one JSON array (append_and_lease, migration 8): quotes, backslashes, escapes and non-ASCII must survive.
    const bodies = ['{"a":"quote \\" backslash \\\\ tab\\t"}', "plain, not JSON: \"x\" \\ y", "line\nbreak \u00e9 \u{1F600} \u2028", "{}"];
    const entries = bodies.map((encoded, i) => ({ ...entry("bodies", i, [{ queue: "q1" }]), encoded }));
    await a.events.append(entries.slice(0, 2), { now, dedupeWindowMs: 60_000 });
    const { leases: direct } = await a.events.appendAndLease!(entries.slice(2), { now, dedupeWindowMs: 60_000, lease: { max: 10, leaseMs: 1000 } });
    assert.deepEqual((await a.events.read("bodies", { limit: 10 })).map((e) => e.encoded), bodies);
    const leased = await a.queues.lease({ max: 10, leaseMs: 1000, now });
    assert.deepEqual([...leased, ...direct].map((l) => l.payload), bodies);
  });

  test("postgres store - group commit: concurrent appends of one dedupe key store it once, from two instances", async () => {
    const schema = schemaName();
    const a = await openStore(schema);
    const b = await openStore(schema);
    const now = Date.now();
    const same = entry("default", 1, [{ queue: "q" }]);
    const calls = Array.from({ length: 20 }, (_, i) =>
      (i % 2 === 0 ? a : b).events.append([entry("default", 100 + i, [{ queue: "q" }]), same, same], { now: now + i, dedupeWindowMs: 60_000 }),
    );
    const results = await Promise.all(calls);
    const firsts = results.map((r) => r[1]);
    const storedOnce = firsts.filter((r) => r?.status === "stored");
    assert.equal(storedOnce.length, 1, "exactly one call stored the shared event");
    for (const r of results) {
      assert.equal(r[0]?.status, "stored");
      assert.equal(r[1]?.seq, storedOnce[0]?.seq);
      assert.deepEqual(r[2], { status: "duplicate", seq: storedOnce[0]?.seq });
    }
    const [stats] = await a.admin.stats(["q"], { now: now + 100 });
    assert.equal(stats?.ready, 21);
  });

  test("postgres store - close waits for in-flight appends, then rejects with E_CLOSED, and is idempotent", async () => {
    const store = await createPostgresStore({ url: db.url, schema: schemaName() });
    const pending = store.events.append([entry("default", 1, [{ queue: "q" }])], { now: Date.now(), dedupeWindowMs: 1000 });
    const closing = store.close();
    const [result] = await pending;
    assert.equal(result?.status, "stored");
    await closing;
    await store.close();
    await assert.rejects(store.queues.lease({ max: 1, leaseMs: 1000, now: Date.now() }), (err: unknown) => isSluiceError(err, "E_CLOSED"));
  });
});
