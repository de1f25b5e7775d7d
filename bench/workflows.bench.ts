/**
 * Workflows: a three-step workflow of no-op steps against the same three steps built as three functions chained
 * by events (f1 emits → f2 emits → f3), in one run, on SQLite and (when reachable) PostgreSQL. Prints runs/s for a
 * burst of runs and trigger-to-completion p50/p99 of runs one at a time, and peak RSS. The last step of both
 * appends `now - t0` to a file, so both pay the same for being measured.
 *
 * Run: npm run bench -- workflows     (SLUICE_BENCH_RUNS, default 500 for the burst and 200 one at a time)
 */
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, type RunningServer } from "../src/server/server.ts";

const burst = Number(process.env.SLUICE_BENCH_RUNS ?? 500);
const serial = Math.min(200, burst);
const api = JSON.stringify(fileURLToPath(new URL("../src/runtime/function-api.ts", import.meta.url)));

function writeApp(): { dir: string; log: string } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-wf-"));
  const log = join(dir, "done.log");
  writeFileSync(log, "");
  mkdirSync(join(dir, "functions"));
  writeFileSync(join(dir, "sluice.config.ts"), `export default { name: "bench-wf" };\n`);
  const done = `appendFileSync(${JSON.stringify(log)}, event.data.kind + " " + (Date.now() - event.data.t0) + "\\n")`;
  writeFileSync(
    join(dir, "functions", "three.ts"),
    `import { defineWorkflow } from ${api};
import { appendFileSync } from "node:fs";
export default defineWorkflow({ name: "three", on: { type: ["wf.go"] }, async run(event, step) {
  await step.run("one", () => 1);
  await step.run("two", () => 2);
  await step.run("three", () => { ${done}; return 3; });
} });
`,
  );
  for (const [name, on, next] of [["f1", "chain.go", "chain.s2"], ["f2", "chain.s2", "chain.s3"], ["f3", "chain.s3", ""]] as const) {
    writeFileSync(
      join(dir, "functions", `${name}.ts`),
      `import { defineFunction } from ${api};
import { appendFileSync } from "node:fs";
export default defineFunction({ name: "${name}", on: { type: ["${on}"] }, instanceConcurrency: 16, async handler(event, ctx) {
  ${next ? `await ctx.emit({ type: "${next}", source: "bench", data: event.data });` : `${done};`}
} });
`,
    );
  }
  return { dir, log };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? Number.NaN;
const lines = (log: string, kind: string) => readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith(`${kind} `)).map((l) => Number(l.split(" ")[1]));

async function waitFor(log: string, kind: string, n: number, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (lines(log, kind).length < n) {
    if (Date.now() > deadline) throw new Error(`${kind}: ${lines(log, kind).length} of ${n} runs finished`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function publish(server: RunningServer, type: string, kind: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from({ length: Math.min(100, n - i) }, () => ({ specversion: "1.0", id: randomUUID(), source: "bench", type, data: { kind, t0: Date.now() } }));
    const out = await server.broker.publish("default", batch);
    if (out.failedEntryCount > 0) throw new Error(JSON.stringify(out.entries.find((e) => "errorCode" in e)));
  }
}

async function measure(server: RunningServer, log: string, type: string, kind: string) {
  // Warm-up: instances started, rules loaded.
  await publish(server, type, `${kind}-warm`, 20);
  await waitFor(log, `${kind}-warm`, 20);
  const t0 = Date.now();
  await publish(server, type, `${kind}-burst`, burst);
  await waitFor(log, `${kind}-burst`, burst);
  const runsPerSecond = burst / ((Date.now() - t0) / 1000);
  for (let i = 0; i < serial; i++) {
    await publish(server, type, `${kind}-one`, 1);
    await waitFor(log, `${kind}-one`, i + 1);
  }
  const lat = lines(log, `${kind}-one`);
  return { runsPerSecond, p50: pct(lat, 50), p99: pct(lat, 99) };
}

async function pgReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port: 5432 });
    s.setTimeout(1000, () => (s.destroy(), resolve(false)));
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

async function pgDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const { default: pg } = await import("pg");
  const name = `flow_bench_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = "postgres://postgres@127.0.0.1:5432/test";
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return {
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    async drop() {
      const d = new pg.Client({ connectionString: admin });
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await d.end();
    },
  };
}

const rows: Record<string, string>[] = [];
for (const store of ["sqlite", "postgres"] as const) {
  if (store === "postgres" && !(await pgReachable())) {
    console.log("postgres is not reachable at 127.0.0.1:5432: skipped");
    continue;
  }
  const db = store === "postgres" ? await pgDatabase() : undefined;
  const app = writeApp();
  const server = await startServer({ appDir: app.dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "warn", ...(db ? { store: db.url } : {}) }, env: {} });
  try {
    const wf = await measure(server, app.log, "wf.go", "wf");
    const chain = await measure(server, app.log, "chain.go", "chain");
    for (const [name, r] of [["workflow (3 steps)", wf], ["3 chained functions", chain]] as const) {
      rows.push({ store, shape: name, "runs/s": r.runsPerSecond.toFixed(0), "p50 ms": String(r.p50), "p99 ms": String(r.p99) });
    }
    rows.push({ store, shape: "ratio workflow/chain", "runs/s": (wf.runsPerSecond / chain.runsPerSecond).toFixed(2), "p50 ms": (wf.p50 / chain.p50).toFixed(2), "p99 ms": (wf.p99 / chain.p99).toFixed(2) });
  } finally {
    await server.close();
    await db?.drop();
  }
}
const cols = ["store", "shape", "runs/s", "p50 ms", "p99 ms"];
const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? "").length)));
const fmt = (vals: string[]) => vals.map((v, i) => v.padEnd(width[i]!)).join("  ");
console.log(fmt(cols));
for (const r of rows) console.log(fmt(cols.map((c) => r[c] ?? "")));
console.log(`burst ${burst} runs, ${serial} one at a time; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
