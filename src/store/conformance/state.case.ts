/** Conformance cases: the key/value state store. */
import assert from "node:assert/strict";
import { T0, unique, type CaseContext } from "./helpers.ts";

export function stateCases({ it, setup }: CaseContext): void {
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
}
