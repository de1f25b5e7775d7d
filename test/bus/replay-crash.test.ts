/**
 * Crash test of archive replay: a child process runs a replay of a few thousand archived events and is SIGKILLed
 * mid-way; a new broker on the same SQLite file resumes it once the dead runner's lease expired. Every archived
 * event must reach the target at least once, and the replay must end `completed`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBroker } from "../../src/bus/broker.ts";
import { replayNamespace } from "../../src/bus/replay.ts";
import type { Replay } from "../../src/bus/types.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { ev } from "./harness.ts";

const childPath = fileURLToPath(new URL("./replay-crash-child.ts", import.meta.url));
const waitMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("replay (sqlite) - a replay whose process is SIGKILLed mid-way is resumed by the next broker and every event arrives", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-replay-crash-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "data.db");
  const total = 5000;
  const name = "crash-replay";

  // Archive the events, then add the rule the replay delivers to (so every delivery comes from the replay).
  const store = await createSqliteStore({ path });
  const closers: (() => Promise<void>)[] = [() => store.close()];
  t.after(async () => {
    for (const close of closers.reverse()) await close();
  });
  const seeder = await createBroker({ store, dispatch: false });
  await seeder.putBus({ name: "archive" });
  const fromAt = Date.now() - 1;
  for (let i = 0; i < total / 100; i++) {
    const res = await seeder.publish("archive", Array.from({ length: 100 }, (_, j) => ev("x", { n: i * 100 + j })));
    assert.equal(res.failedEntryCount, 0);
  }
  await waitMs(2);
  const toAt = Date.now();
  await seeder.putRule({ name: "copy", bus: "archive", pattern: { type: ["x"] }, targets: [{ id: "sink", function: "sink" }] });
  await seeder.close();

  const child = spawn(process.execPath, ["--import", "tsx", childPath, path, name, String(fromAt), String(toAt)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, NODE_NO_WARNINGS: "1" },
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  t.after(() => child.kill("SIGKILL"));
  // Kill it once the replay saved some progress, well before the end.
  const read = async () => {
    const raw = await store.state.get(replayNamespace, name, { now: Date.now() });
    return raw === undefined ? undefined : (JSON.parse(raw) as Replay);
  };
  const deadline = Date.now() + 30_000;
  let atKill: Replay | undefined;
  while ((atKill = await read()) === undefined || (atKill.state === "running" && atKill.eventsRead < 500)) {
    assert.ok(Date.now() < deadline, "the child's replay made no progress");
    await waitMs(2);
  }
  child.kill("SIGKILL");
  await exited;
  atKill = (await read())!;
  assert.equal(atKill.state, "running", `the replay was still running at the kill: ${JSON.stringify(atKill)}`);
  assert.ok(atKill.eventsRead > 0 && atKill.eventsRead < total, `killed mid-way (${atKill.eventsRead} of ${total} read)`);

  const received = new Map<number, number>();
  const deliveryIds = new Set<string>();
  let wake: (() => void) | undefined;
  const broker = await createBroker({
    store,
    limits: { leaseMs: 1000, pollIntervalMs: 100 },
    functionHandler: {
      async deliver(_fn, event, ctx) {
        assert.equal(event.replay, name);
        const n = (event.data as { n: number }).n;
        received.set(n, (received.get(n) ?? 0) + 1);
        deliveryIds.add(ctx.deliveryId);
        wake?.();
      },
    },
  });
  closers.push(() => broker.close());
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${total - received.size} archived events never arrived`)), 60_000);
    wake = () => {
      if (received.size === total) {
        clearTimeout(timer);
        resolve();
      }
    };
    wake();
  });
  let final = await broker.getReplay(name);
  while (final.state === "running" && Date.now() < deadline + 30_000) {
    await waitMs(20);
    final = await broker.getReplay(name);
  }
  assert.equal(final.state, "completed", JSON.stringify(final));
  for (let n = 0; n < total; n++) assert.ok(received.has(n), `event ${n} never arrived`);
  // Resumed from the saved position, not from the start: at most the page in flight at the kill came again.
  assert.ok(deliveryIds.size <= total + 100, `${deliveryIds.size} deliveries for ${total} events`);
  assert.ok(final.eventsRead >= total && final.eventsRead <= total + 100, `eventsRead ${final.eventsRead}`);
});
