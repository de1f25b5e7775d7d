import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";

test("sqlite store - append, lease, ack round trip survives reopen", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-sqlite-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "data.db");
  const store = await createSqliteStore({ path });
  const now = 1_000_000;
  const results = await store.events.append(
    [
      { bus: "b", eventId: "e1", dedupeKey: "s\ne1", encoded: '{"id":"e1"}', deliveries: [{ queue: "q" }] },
      { bus: "b", eventId: "e1", dedupeKey: "s\ne1", encoded: '{"id":"e1"}', deliveries: [{ queue: "q" }] },
    ],
    { now, dedupeWindowMs: 1000 },
  );
  assert.equal(results[0]?.status, "stored");
  assert.deepEqual(results[1], { status: "duplicate", seq: results[0]?.seq });
  await store.close();
  await store.close();

  const again = await createSqliteStore({ path });
  const leases = await again.queues.lease({ max: 10, leaseMs: 1000, now });
  assert.equal(leases.length, 1);
  assert.equal(leases[0]?.payload, '{"id":"e1"}');
  assert.deepEqual(await again.queues.ack(leases), { lost: [] });
  assert.deepEqual(await again.queues.lease({ max: 10, leaseMs: 1000, now: now + 5000 }), []);
  await again.close();
});
