/**
 * The broker's internal entry point for the HTTP ingest: events the HTTP binding already validated and encoded are
 * stored as they are (no second validation), while the broker's own limits (event size, hop count) still apply.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBroker, publishNormalized } from "../../src/bus/broker.ts";
import { parseHttpEvents } from "../../src/event/http.ts";
import { normalizeEvent } from "../../src/event/normalize.ts";
import { SluiceExtension } from "../../src/event/types.ts";
import * as publicApi from "../../src/index.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";

test("server ingest - publishNormalized stores the binding's encoding once, keeps the size and hop limits, and is not public", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-normalized-"));
  const store = await createSqliteStore({ path: join(dir, "store.db") });
  const broker = await createBroker({ store, maxEventBytes: 2000, hopLimit: 3 });
  try {
    const body = Buffer.from(
      JSON.stringify([
        { specversion: "1.0", id: "a", source: "/t", type: "t.ok", data: { n: 1 } },
        { specversion: "1.0", id: "b", source: "/t", type: "t.big", data: { s: "x".repeat(3000) } },
        { specversion: "1.0", id: "c", source: "/t", type: "t.loop", [SluiceExtension.Hops]: 4 },
      ]),
    );
    const parsed = parseHttpEvents({ headers: { "content-type": "application/cloudevents-batch+json" }, body });
    const normalized = parsed.results.map((r) => {
      assert.ok(r.ok, "the binding itself accepts all three (its size limit is 256 KiB)");
      return r;
    });
    const out = await publishNormalized(broker, "default", normalized);
    assert.equal(out.failedEntryCount, 2);
    assert.deepEqual(out.entries[0], { eventId: "a" });
    assert.deepEqual(
      { code: (out.entries[1] as { errorCode: string }).errorCode, path: (out.entries[1] as { path?: string }).path },
      { code: "E_EVENT_TOO_LARGE", path: "$[1]" },
    );
    assert.deepEqual(
      { code: (out.entries[2] as { errorCode: string }).errorCode, path: (out.entries[2] as { path?: string }).path },
      { code: "E_RECURSIVE_LOOP", path: `$[2].${SluiceExtension.Hops}` },
    );
    const stored = await store.events.read("default", { fromAt: 0, toAt: Date.now() + 1000, limit: 10 });
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.encoded, normalized[0]!.encoded, "the encoding stored as the binding made it");

    // the same event again is a duplicate, as through publish()
    const again = await publishNormalized(broker, "default", [normalizeEvent({ specversion: "1.0", id: "a", source: "/t", type: "t.ok" })]);
    assert.deepEqual(again.entries[0], { eventId: "a", duplicate: true });
    await assert.rejects(publishNormalized(broker, "nope", normalized.slice(0, 1)), { code: "E_BUS_NOT_FOUND" });
    assert.equal("publishNormalized" in publicApi, false, "not part of the package's API");
    assert.equal("publishNormalized" in broker, false, "not a method users can call on a broker");
  } finally {
    await broker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
