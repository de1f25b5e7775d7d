/**
 * End to end: graceful shutdown of `sluice start` with a delivery in flight. Within the grace period the delivery
 * finishes and is acknowledged (a restart does not run it again); past it, the delivery is aborted, released, and
 * a restart delivers it again. Nothing is lost either way.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

let dir: string;

before(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-shutdown-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** An app whose `slow` function records each start and finish in a file and honours ctx.signal. */
function writeSlowApp(at: string): void {
  mkdirSync(join(at, "functions"), { recursive: true });
  writeFileSync(join(at, "sluice.config.ts"), `import { defineApp } from "sluice";\nexport default defineApp({ name: "shutdown-test" });\n`);
  writeFileSync(
    join(at, "functions", "slow.ts"),
    `import { appendFileSync } from "node:fs";
import { defineFunction } from "sluice";
export default defineFunction({
  name: "slow",
  on: { type: ["work.slow"] },
  timeout: "60s",
  retry: { attempts: 5, backoff: { initial: "10ms", max: "10ms" } },
  async handler(event, ctx) {
    const out = process.env.SLOW_OUT!;
    appendFileSync(out, \`started \${event.id} \${ctx.attempt}\\n\`);
    ctx.log.info({ eventId: event.id }, "slow work started");
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, (event.data as { ms: number }).ms);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new Error("aborted by shutdown"));
      });
    });
    appendFileSync(out, \`done \${event.id} \${ctx.attempt}\\n\`);
  },
});
`,
  );
}

/** A fresh app folder with the slow function, its output file, its store file, and an event id. */
function slowApp(prefix: string): { app: string; out: string; store: string; id: string } {
  const app = join(dir, `${prefix}-${randomUUID().slice(0, 8)}`);
  writeSlowApp(app);
  return { app, out: join(app, "out.txt"), store: join(app, "store.db"), id: randomUUID() };
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : []);

async function publish(s: SluiceProcess, id: string, ms: number): Promise<void> {
  const res = await fetch(`${s.url}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents+json" },
    body: JSON.stringify({ specversion: "1.0", id, source: "/test/shutdown", type: "work.slow", data: { ms } }),
  });
  assert.equal(res.status, 202, await res.text());
}

async function backlogOf(s: SluiceProcess, fn: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = new RegExp(`^sluice_backlog\\{function="${fn}"\\} (\\d+)`, "m").exec(text);
  assert.ok(m, `no sluice_backlog for ${fn} in /metrics`);
  return Number(m[1]);
}

function start(app: string, store: string, out: string, grace: string): Promise<SluiceProcess> {
  return startSluice(["start", app, "--port", "0", "--store", `sqlite:${store}`, "--shutdown-grace", grace], { SLOW_OUT: out });
}

test("shutdown - SIGTERM lets an in-flight delivery finish within the grace period; a restart does not run it again", async () => {
  const { app, out, store, id } = slowApp("within");
  let s = await start(app, store, out, "20s");
  try {
    await publish(s, id, 1500);
    await s.waitForLine(/slow work started/);
    const code = await s.stop("SIGTERM", 25_000);
    assert.equal(code, 0, s.output());
    assert.deepEqual(lines(out), [`started ${id} 1`, `done ${id} 1`], "the in-flight delivery finished before the exit");

    s = await start(app, store, out, "20s");
    assert.equal(await backlogOf(s, "slow"), 0, "the finished delivery was acknowledged before the exit");
    // A later event is handled after it: had the first still been pending, it would have run by now.
    const next = randomUUID();
    await publish(s, next, 1);
    await eventually(async () => (lines(out).includes(`done ${next} 1`) ? true : undefined), "the next event handled");
    assert.equal(lines(out).filter((l) => l.includes(id)).length, 2, "the first event ran once");
  } finally {
    await s.stop("SIGKILL");
  }
});

test("shutdown - past the grace period the delivery is aborted and released, and redelivered after a restart", async () => {
  const { app, out, store, id } = slowApp("past");
  let s = await start(app, store, out, "300ms");
  try {
    await publish(s, id, 4000);
    await s.waitForLine(/slow work started/);
    const code = await s.stop("SIGTERM", 20_000);
    assert.equal(code, 0, s.output());
    assert.deepEqual(lines(out), [`started ${id} 1`], "the delivery did not finish before the exit");

    s = await start(app, store, out, "20s");
    await eventually(async () => (lines(out).some((l) => l.startsWith(`done ${id} `)) ? true : undefined), "the released delivery redelivered and finished", 30_000);
    const runs = lines(out).filter((l) => l.includes(id));
    assert.equal(runs.filter((l) => l.startsWith("done")).length, 1, runs.join("\n"));
    assert.equal(runs.filter((l) => l.startsWith("started")).length, 2, runs.join("\n"));
    await eventually(async () => ((await backlogOf(s, "slow")) === 0 ? true : undefined), "an empty backlog");
  } finally {
    await s.stop("SIGKILL");
  }
});

test("shutdown - after SIGKILL a restarted SQLite server takes back the dead process's leases at once and says so", async () => {
  const { app, out, store, id } = slowApp("killed");
  let s = await start(app, store, out, "20s");
  try {
    await publish(s, id, 60_000);
    await s.waitForLine(/slow work started/);
    await s.stop("SIGKILL");
    const restartedAt = Date.now();
    s = await start(app, store, out, "20s");
    await s.waitForLine(/took back the leases of a process that died/, 10_000);
    // The lease is 30 s: without taking it back, the second attempt would wait for it to run out.
    await eventually(async () => (lines(out).includes(`started ${id} 2`) ? true : undefined), "the second attempt", 20_000);
    assert.ok(Date.now() - restartedAt < 20_000, "redelivered well before the dead process's lease ran out");
  } finally {
    await s.stop("SIGKILL");
  }
});
