import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { parseScheduleExpression } from "../../src/triggers/schedule-expression.ts";
import { createScheduler, tickEvent, type ScheduleSpec, type Tick } from "../../src/triggers/schedules.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

const T0 = Date.parse("2026-05-01T10:00:00Z");
const MIN = 60_000;

function spec(name: string, over: Partial<ScheduleSpec> = {}): ScheduleSpec {
  return {
    name,
    expression: parseScheduleExpression({ rate: "1 minute" }),
    catchUp: false,
    action: { kind: "emit", bus: "default", type: "tick.fired", source: "test" },
    ...over,
  };
}

/** Collects fired ticks and lets a test wait for the n-th one. */
function recorder() {
  const ticks: Tick[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    ticks,
    fire: async (_s: ScheduleSpec, tick: Tick) => {
      ticks.push(tick);
      for (const w of waiters.filter((w) => ticks.length >= w.n)) w.resolve();
    },
    waitFor(n: number, timeoutMs = 5000) {
      if (ticks.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${ticks.length} of ${n} ticks fired`)), timeoutMs);
        waiters.push({ n, resolve: () => {
          clearTimeout(t);
          resolve();
        } });
      });
    },
  };
}

async function withStore(fn: (open: () => Promise<StorageBackend>) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-sched-"));
  const opened: StorageBackend[] = [];
  try {
    await fn(async () => {
      const s = await createSqliteStore({ path: join(dir, "store.db") });
      opened.push(s);
      return s;
    });
  } finally {
    for (const s of opened) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Lets pending store calls settle: waits until `check` holds. */
async function until(check: () => boolean, timeoutMs = 5000) {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not reached");
    await new Promise((r) => setImmediate(r));
  }
}

test("schedules - a rate schedule fires on every tick with a deterministic event id", async () => {
  await withStore(async (open) => {
    const store = await open();
    const clock = new ManualClock(T0 + 10_000);
    const rec = recorder();
    const s = spec("every-minute");
    const scheduler = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await scheduler.start();
    clock.advanceTo(T0 + MIN);
    await rec.waitFor(1);
    clock.advanceTo(T0 + 2 * MIN + 5);
    await rec.waitFor(2);
    await scheduler.close();
    assert.deepEqual(rec.ticks.map((t) => t.scheduledAt), [T0 + MIN, T0 + 2 * MIN]);
    const ev = tickEvent(s, rec.ticks[0]!);
    assert.equal(ev.id, "schedule-every-minute-2026-05-01T10:01:00.000Z");
    assert.equal(ev.type, "tick.fired");
    assert.equal(scheduler.status()[0]?.fired, 2);
  });
});

test("schedules - two nodes on one store fire each tick exactly once", async () => {
  await withStore(async (open) => {
    const [a, b] = [await open(), await open()];
    const clock = new ManualClock(T0 + 1);
    const rec = recorder();
    const s = spec(`shared-${Math.random().toString(36).slice(2)}`);
    const nodes = [a, b].map((store, i) =>
      createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock, nodeId: `node-${i}` }),
    );
    for (const n of nodes) await n.start();
    for (let i = 1; i <= 5; i++) clock.advanceTo(T0 + i * MIN);
    await rec.waitFor(5);
    for (const n of nodes) await n.close(); // waits for the losing claims too
    assert.deepEqual(
      rec.ticks.map((t) => t.scheduledAt),
      [1, 2, 3, 4, 5].map((i) => T0 + i * MIN),
    );
    const perNode = nodes.map((n) => n.status()[0]?.fired ?? 0);
    assert.equal(perNode[0]! + perNode[1]!, 5);
  });
});

test("schedules - ticks missed during downtime are skipped by default", async () => {
  await withStore(async (open) => {
    const store = await open();
    const clock = new ManualClock(T0 + 1);
    const rec = recorder();
    const s = spec("skipper");
    const first = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await first.start();
    clock.advanceTo(T0 + MIN);
    await rec.waitFor(1);
    await first.close();
    clock.advanceTo(T0 + 10 * MIN + 30_000); // down for ~9 ticks
    const second = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await second.start();
    assert.equal(rec.ticks.length, 1);
    clock.advanceTo(T0 + 11 * MIN);
    await rec.waitFor(2);
    await second.close();
    assert.deepEqual(rec.ticks.map((t) => [t.scheduledAt, t.catchUp]), [[T0 + MIN, false], [T0 + 11 * MIN, false]]);
  });
});

test("schedules - with catchUp the missed ticks are fired once, for the latest one", async () => {
  await withStore(async (open) => {
    const store = await open();
    const clock = new ManualClock(T0 + 1);
    const rec = recorder();
    const s = spec("catcher", { catchUp: true });
    const first = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await first.start();
    clock.advanceTo(T0 + MIN);
    await rec.waitFor(1);
    await first.close();
    clock.advanceTo(T0 + 10 * MIN + 30_000);
    // two nodes restart together: the catch-up still fires once
    const again = [await open(), store].map((st) => createScheduler({ schedules: [s], state: st.state, fire: rec.fire, clock }));
    await Promise.all(again.map((n) => n.start()));
    await rec.waitFor(2);
    for (const n of again) await n.close();
    assert.equal(rec.ticks.length, 2);
    assert.deepEqual(
      { at: rec.ticks[1]?.scheduledAt, catchUp: rec.ticks[1]?.catchUp, ticks: rec.ticks[1]?.ticks },
      { at: T0 + 10 * MIN, catchUp: true, ticks: 9 },
    );
  });
});

test("schedules - a failed action releases the claim and is retried", async () => {
  await withStore(async (open) => {
    const store = await open();
    const clock = new ManualClock(T0 + 1);
    const rec = recorder();
    let failures = 1;
    const scheduler = createScheduler({
      schedules: [spec("flaky")],
      state: store.state,
      fire: async (s, t) => {
        if (failures-- > 0) throw new Error("bus unavailable");
        await rec.fire(s, t);
      },
      clock,
      retryDelaysMs: [1000],
    });
    await scheduler.start();
    clock.advanceTo(T0 + MIN);
    await until(() => scheduler.status()[0]?.failures === 1);
    clock.advanceTo(T0 + MIN + 1000);
    await rec.waitFor(1);
    await scheduler.close();
    assert.deepEqual(rec.ticks.map((t) => t.scheduledAt), [T0 + MIN]);
  });
});

test("schedules - an at schedule fires once and not again after a restart", async () => {
  await withStore(async (open) => {
    const store = await open();
    const clock = new ManualClock(T0);
    const rec = recorder();
    const s = spec("once", { expression: parseScheduleExpression({ at: new Date(T0 + 5000).toISOString() }), catchUp: true });
    const first = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await first.start();
    clock.advanceTo(T0 + 5000);
    await rec.waitFor(1);
    await first.close();
    clock.advanceTo(T0 + 60_000);
    const second = createScheduler({ schedules: [s], state: store.state, fire: rec.fire, clock });
    await second.start();
    await second.close();
    assert.equal(rec.ticks.length, 1);
    assert.equal(second.status()[0]?.nextAt, undefined);
  });
});
