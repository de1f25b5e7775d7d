/**
 * HTTP ingest: events/s accepted (202, durably stored) through `POST /events`, singly (structured mode) and in
 * batches of 100 (batched mode), by a `sluice start` child process with its SQLite store; the load comes from
 * autocannon in this (second) process. Baseline in the same run: a plain Fastify server in its own child process
 * that parses the same JSON bodies and answers 202 (no validation, no storage).
 *
 * Usage: npm run bench -- http   (SLUICE_BENCH_SECONDS=10 by default)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";

const root = new URL("..", import.meta.url).pathname;
const seconds = Number(process.env.SLUICE_BENCH_SECONDS ?? 10);
const connections = Number(process.env.SLUICE_BENCH_CONNECTIONS ?? 32);


function startChild(args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<{ proc: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: root, env: { ...process.env, NODE_NO_WARNINGS: "1", ...env }, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = ready.exec(out);
      if (m?.[1]) resolve({ proc, url: m[1] });
    });
    proc.once("exit", (code) => reject(new Error(`child exited ${code}: ${out}`)));
  });
}

function event(i: number): Record<string, unknown> {
  // No id: the server assigns one per event, so nothing is dropped as a duplicate. About 300 bytes encoded.
  return {
    specversion: "1.0",
    type: "order.created",
    source: "/bench/shop",
    subject: `order-${i}`,
    datacontenttype: "application/json",
    data: { orderId: `ord_${i}`, customer: "bench-customer", total: 123.45, items: [{ sku: "widget", qty: 2 }, { sku: "gadget", qty: 1 }] },
  };
}

async function load(url: string, body: string, contentType: string): Promise<{ rps: number; p99: number; non2xx: number; errors: number }> {
  const r = await autocannon({
    url: `${url}/events`,
    method: "POST",
    headers: { "content-type": contentType },
    body,
    connections,
    duration: seconds,
  });
  return { rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-http-"));
const children: ChildProcess[] = [];
try {
  writeFileSync(join(dir, "sluice.config.mjs"), `export default { name: "bench" };\n`);
  const sluice = await startChild(
    [join(root, "bin/sluice.mjs"), "start", dir, "--port", "0", "--host", "127.0.0.1", "--store", `sqlite:${join(dir, "store.db")}`],
    /sluice ready at (http:\/\/[0-9.:]+)/,
  );
  children.push(sluice.proc);
  const echo = await startChild([join(root, "bench/http-echo-server.mjs")], /echo ready at (http:\/\/[0-9.:]+)/);
  children.push(echo.proc);

  const single = JSON.stringify(event(1));
  const batch = JSON.stringify(Array.from({ length: 100 }, (_, i) => event(i)));
  const rows: string[] = [];
  for (const [label, body, type, perRequest] of [
    ["single (structured)", single, "application/cloudevents+json", 1],
    ["batch of 100", batch, "application/cloudevents-batch+json", 100],
  ] as const) {
    const base = await load(echo.url, body, type);
    const ours = await load(sluice.url, body, type);
    if (ours.non2xx > 0 || ours.errors > 0) console.error(`# ${label}: sluice answered ${ours.non2xx} non-2xx, ${ours.errors} errors`);
    rows.push(
      `| ${label} | ${Math.round(ours.rps * perRequest).toLocaleString("en-US")} | ${ours.p99} | ${Math.round(base.rps * perRequest).toLocaleString("en-US")} | ${base.p99} | ${(ours.rps / base.rps).toFixed(2)} |`,
    );
  }
  console.log(`HTTP ingest, ${connections} connections, ${seconds} s per run, autocannon in a separate process from both servers\n`);
  console.log("| load | Sluice events/s (stored) | Sluice p99 ms | Fastify echo events/s | echo p99 ms | Sluice / echo |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
} finally {
  for (const c of children) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
