/**
 * Crash test: 100 runs of a five-step workflow (a step, a sleep, a wait for an event, two steps) while
 * `sluice start` is killed with SIGKILL at random moments and restarted on the same store. Every run must reach
 * `completed`; each step's side effect happened once, except where a kill hit inside that step (then once per
 * killed process, never twice in one process); sleeps whose time came after the last restart woke on time.
 * Runs on SQLite and, when it is reachable, on PostgreSQL.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";
import { writeApp } from "./app.ts";

const workflow = `import { defineWorkflow, NonRetriableError } from \${API};
import { appendFileSync } from "node:fs";
const effect = (line: string) => appendFileSync(\${LOG}, line + " " + process.pid + "\\n");
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
export default defineWorkflow({
  name: "crashy",
  on: { type: ["crashy.start"] },
  retry: { attempts: 10, backoff: { initial: "20ms", max: "200ms" } },
  async run(event, step) {
    const n = event.data.n;
    await step.run("a", async () => { await pause(Math.random() * 30); effect("a " + n); return n; });
    await step.sleep("nap", "1500ms");
    const ack = await step.waitForEvent("ack", { type: "crashy.ack", match: "data.n", timeout: "10m" });
    if (!ack) throw new NonRetriableError("no ack");
    await step.run("b", async () => { await pause(Math.random() * 30); effect("b " + n); return n; });
    await step.run("c", async () => { await pause(Math.random() * 30); effect("c " + n); return n; });
    return { n };
  },
});
`;

const runs = 100;

async function postEvents(url: string, events: unknown[]): Promise<void> {
  const res = await fetch(`${url}/events`, { method: "POST", headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify(events) });
  if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${await res.text()}`);
}

const ev = (type: string, n: number) => ({ specversion: "1.0", id: randomUUID(), source: "crash-test", type, data: { n } });

async function crashRound(storeUrl: (dir: string) => string): Promise<void> {
  ensureBuilt();
  const app = writeApp({ "crashy.ts": workflow }, "crashy");
  const store = storeUrl(app.dir);
  const args = ["start", app.dir, "--port", "0", "--host", "127.0.0.1", "--store", store, "--log-level", "info"];
  let server: SluiceProcess = await startSluice(args);
  const killed = new Set<string>();
  const kill = async () => {
    killed.add(String(server.proc.pid));
    await server.stop("SIGKILL");
  };
  try {
    // Triggers, with the acks of the even runs in the same batches (before their waits begin).
    for (let i = 0; i < runs; i += 25) {
      const batch = [];
      for (let n = i; n < i + 25; n++) batch.push(ev("crashy.start", n), ...(n % 2 === 0 ? [ev("crashy.ack", n)] : []));
      await postEvents(server.url, batch);
    }
    for (let k = 0; k < 3; k++) {
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 1200));
      await kill();
      server = await startSluice(args);
    }
    const restartedAt = Date.now();
    // The odd runs' acks, after the last restart.
    const odd = [];
    for (let n = 1; n < runs; n += 2) odd.push(ev("crashy.ack", n));
    await postEvents(server.url, odd.slice(0, 50));

    const final = await eventually(
      async () => {
        const res = await fetch(`${server.url}/admin/runs?workflow=crashy&status=completed&limit=1000`);
        const list = (await res.json()) as { runId: string }[];
        return list.length === runs ? list : undefined;
      },
      `${runs} completed runs`,
      150_000,
    ).catch(async (err: Error) => {
      const res = await fetch(`${server.url}/admin/runs?workflow=crashy&limit=1000`);
      const by: Record<string, number> = {};
      for (const r of (await res.json()) as { status: string }[]) by[r.status] = (by[r.status] ?? 0) + 1;
      throw new Error(`${err.message}; statuses: ${JSON.stringify(by)}`);
    });
    assert.equal(final.length, runs);

    // Side effects: once, or once more per process that was killed while running that step.
    const byKey = new Map<string, string[]>();
    for (const line of app.effects()) {
      const [step, n, pid] = line.split(" ");
      const key = `${step} ${n}`;
      byKey.set(key, [...(byKey.get(key) ?? []), pid!]);
    }
    for (const step of ["a", "b", "c"]) {
      for (let n = 0; n < runs; n++) {
        const pids = byKey.get(`${step} ${n}`) ?? [];
        assert.ok(pids.length >= 1, `step ${step} of run ${n} never ran`);
        assert.equal(new Set(pids).size, pids.length, `step ${step} of run ${n} ran twice in one process: ${pids.join(",")}`);
        for (const pid of pids.slice(0, -1)) assert.ok(killed.has(pid), `step ${step} of run ${n} ran again although process ${pid} was not killed`);
      }
    }

    // Sleeps due after the last restart woke on time (generous bound: the machine is shared).
    let checked = 0;
    for (const r of final) {
      const res = await fetch(`${server.url}/admin/runs/${r.runId}`);
      const run = (await res.json()) as { steps: { id: string; until?: number; endedAt?: number }[] };
      const nap = run.steps.find((s) => s.id === "nap")!;
      if (nap.until! > restartedAt) {
        checked++;
        assert.ok(nap.endedAt! - nap.until! < 3000, `a sleep woke ${nap.endedAt! - nap.until!} ms late`);
      }
    }
    const rerun = [...byKey.values()].filter((pids) => pids.length > 1).length;
    console.log(`# ${killed.size} kills; ${rerun} step side effects repeated after a kill inside them; ${checked} sleeps due after the last restart checked`);
  } finally {
    await server.stop("SIGKILL");
  }
}

test("workflows (sqlite) - crash: SIGKILL of sluice start at random moments, every run completes, side effects once per step", { timeout: 300_000 }, async () => {
  await crashRound((dir) => `sqlite:${join(dir, "crash.db")}`);
});

const pgSkip = await skipUnless("postgres");
let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
after(async () => {
  await db?.drop();
});
test("workflows (postgres) - crash: SIGKILL of sluice start at random moments, every run completes, side effects once per step", { timeout: 300_000, skip: pgSkip }, async () => {
  db = await createTestDatabase();
  await crashRound(() => db!.url);
});
