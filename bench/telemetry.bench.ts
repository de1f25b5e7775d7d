/**
 * The cost of tracing on the whole path: HTTP ingest (`POST /events`) -> bus -> a function, by `sluice start`
 * child processes with SQLite, in one run: tracing off, on without export (OTEL_TRACES_EXPORTER=none), and
 * exporting over OTLP/HTTP (protobuf) to a local receiver in its own process. Goals: off costs nothing (there is
 * no code path to compare it with but itself; the table shows run-to-run spread), on-no-export < 15 %.
 * Throughput is invocations completed / (load time + time to drain the backlog).
 *
 * Usage: npm run bench -- telemetry   (SLUICE_BENCH_SECONDS=10 by default)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";

const root = new URL("..", import.meta.url).pathname;
const seconds = Number(process.env.SLUICE_BENCH_SECONDS ?? 10);
const connections = Number(process.env.SLUICE_BENCH_CONNECTIONS ?? 16);

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

const receiverSource = `
const http = require("node:http");
let spans = 0, bytes = 0;
const s = http.createServer((req, res) => { req.on("data", (c) => (bytes += c.length)); req.on("end", () => { spans++; res.writeHead(200, { "content-type": "application/x-protobuf" }).end(); }); });
s.listen(0, "127.0.0.1", () => console.log("receiver ready at http://127.0.0.1:" + s.address().port));
`;

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name) && (line[name.length] === "{" || line[name.length] === " ")) sum += Number(line.split(" ").pop());
  return sum;
}

async function run(label: string, dir: string, env: Record<string, string>): Promise<{ label: string; rate: number; p99: number; rssMb: number }> {
  const server = await startChild(
    [join(root, "bin/sluice.mjs"), "start", dir, "--port", "0", "--host", "127.0.0.1", "--store", `sqlite:${join(dir, `${label.replace(/\W+/g, "-")}.db`)}`, "--log-level", "warn"],
    /sluice ready at (http:\/\/[0-9.:]+)/,
    env,
  );
  try {
    const body = JSON.stringify({ specversion: "1.0", type: "order.created", source: "/bench", datacontenttype: "application/json", data: { total: 1 } });
    const started = Date.now();
    const r = await autocannon({ url: `${server.url}/events`, method: "POST", headers: { "content-type": "application/cloudevents+json" }, body, connections, duration: seconds });
    const accepted = (r as unknown as { "2xx": number })["2xx"];
    for (;;) {
      if ((await metric(server.url, "sluice_invocations_total")) >= accepted) break;
      if (Date.now() - started > (seconds + 120) * 1000) throw new Error(`${label}: the backlog did not drain`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const elapsed = (Date.now() - started) / 1000;
    const rssMb = (await metric(server.url, "sluice_process_resident_memory_bytes")) / 1024 / 1024;
    return { label, rate: accepted / elapsed, p99: r.latency.p99, rssMb };
  } finally {
    server.proc.kill("SIGKILL");
  }
}

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-tel-"));
let receiver: ChildProcess | undefined;
try {
  mkdirSync(join(dir, "functions"));
  writeFileSync(join(dir, "sluice.config.mjs"), `export default { name: "bench-telemetry", telemetry: { lineage: false } };\n`);
  writeFileSync(join(dir, "functions", "sink.mjs"), `import { defineFunction } from "sluice";\nexport default defineFunction({ name: "sink", on: { type: ["order.created"] }, handler() {} });\n`);
  const rec = await startChild(["-e", receiverSource], /receiver ready at (http:\/\/[0-9.:]+)/);
  receiver = rec.proc;
  const rows = [];
  rows.push(await run("off", dir, {}));
  rows.push(await run("on, no export", dir, { OTEL_EXPORTER_OTLP_ENDPOINT: rec.url, OTEL_TRACES_EXPORTER: "none" }));
  rows.push(await run("on, exporting (protobuf)", dir, { OTEL_EXPORTER_OTLP_ENDPOINT: rec.url }));
  rows.push(await run("off (again)", dir, {}));
  const base = rows[0]!.rate;
  console.log(`Whole path HTTP ingest -> bus -> function, ${connections} connections, ${seconds} s load per run, SQLite, lineage off\n`);
  console.log("| tracing | events/s end to end | ingest p99 ms | vs off | RSS MB at end |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.label} | ${Math.round(r.rate).toLocaleString("en-US")} | ${r.p99} | ${(r.rate / base).toFixed(3)} | ${r.rssMb.toFixed(0)} |`);
} finally {
  receiver?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
